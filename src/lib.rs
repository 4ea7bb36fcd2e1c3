//! ordergate: an HTTP gateway for the legacy orders API.
//!
//! A request's path through the gateway ([`stack`] orders the layers):
//!
//! 1. [`server`] accepts the connection (HTTP/1.1 or HTTP/2) and notes the
//!    client's address;
//! 2. [`telemetry`] gives the request its id (sent upstream, returned, and the
//!    `guid` of any fault);
//! 3. [`limits`] refuses bodies over the size limit (413);
//! 4. [`orders`] applies the orders API: [`shorthand`] resolution, implicit
//!    creation and the one-open-order rule of [`policy`], with associations
//!    kept in an [`owners`] store;
//! 5. [`proxy`] forwards to the upstream over pooled connections and rewrites
//!    its URLs to the public base on the way back.
//!
//! Every error a client sees is rendered by [`faults`].
//!
//! Several replicas scale out on one Redis ([`redis_pool`]): the owner store
//! ([`owners::RedisStore`]), creation leases ([`policy::lease`]) and
//! `scope = "global"` rate limits live there.
//!
//! [`backend`] is an emulation of the legacy orders API for trying the gateway
//! and for tests; the gateway's own modules never use it.

pub mod backend;
pub mod body;
pub mod config;
pub mod cors;
pub mod faults;
pub mod limits;
pub mod orders;
pub mod owners;
pub mod policy;
pub mod proxy;
pub mod rate_limit;
pub mod redis_pool;
pub mod server;
pub mod shorthand;
pub mod stack;
pub mod telemetry;

use config::{Config, StoreKind};
use owners::{MemoryStore, OwnerStore, RedbStore, RedisStore, StoreError};
use redis_pool::RedisPool;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the owner store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The connections to the shared Redis, when the config has one. They open
/// on first use: a Redis that is down at start is a Redis failure like any
/// other, not a reason not to start.
pub fn redis_pool(config: &Config) -> Result<Option<RedisPool>, StoreError> {
    config
        .store
        .redis()
        .map(RedisPool::new)
        .transpose()
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// Opens the configured owner store (on `redis`, for a Redis store).
pub async fn open_store(
    config: &Config,
    redis: Option<&RedisPool>,
) -> Result<Arc<dyn OwnerStore>, StoreError> {
    Ok(match &config.store.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Redis(r) => {
            let pool = match redis {
                Some(pool) => pool.clone(),
                None => RedisPool::new(r).map_err(|e| StoreError::Backend(e.to_string()))?,
            };
            Arc::new(RedisStore::new(pool, r))
        }
        StoreKind::Redb { path } => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || RedbStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))??;
            Arc::new(store)
        }
    })
}

/// Runs the gateway on a bound listener until `shutdown` completes, then
/// drains in-flight requests and closes the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let redis = redis_pool(&config)?;
    let store = open_store(&config, redis.as_ref()).await?;
    let limits = Arc::new(
        policy::rate_limit::RateLimits::new(
            config.rate_limits.rules.clone(),
            config.server.trusted_proxies.clone(),
        )
        .with_redis(redis, &config.rate_limits),
    );
    let service = stack::build(&config, Arc::clone(&store), Arc::clone(&limits));
    let limit_sweeper = tokio::spawn(sweep_rate_limits(
        Arc::clone(&limits),
        config.rate_limits.sweep_interval,
    ));
    let sweeper = tokio::spawn(sweep(
        Arc::clone(&store),
        config.store.idle_expiry,
        config.store.sweep_interval,
    ));
    tracing::info!(listen = %listener.local_addr()?, upstream = config.upstream.url.as_str(), "ordergate is serving");
    server::serve(
        listener,
        service,
        shutdown,
        config.server.drain_timeout,
        config.server.limits,
        config.server.tls.clone(),
    )
    .await;
    sweeper.abort();
    limit_sweeper.abort();
    store.close().await?;
    Ok(())
}

/// Forgets associations left idle past their expiry, now and then.
async fn sweep(
    store: Arc<dyn OwnerStore>,
    idle_expiry: std::time::Duration,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let before = policy::now_ms().saturating_sub(idle_expiry.as_millis() as u64);
        match store.expire(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "idle associations ended"),
            Err(e) => tracing::warn!(error = %e, "cannot expire idle associations"),
        }
    }
}

/// Forgets rate-limit keys whose buckets are full again, now and then.
async fn sweep_rate_limits(
    limits: Arc<policy::rate_limit::RateLimits>,
    every: std::time::Duration,
) {
    if limits.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        limits.sweep();
    }
}
