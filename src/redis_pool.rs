//! The connections to the Redis (or Valkey) server that gateway replicas
//! share: the owner store and the global rate limits both use it.
//!
//! A few multiplexed connections from the `redis` crate's
//! `ConnectionManager`, used in turn: each carries any number of concurrent
//! commands, connects on first use (the gateway starts while Redis is down)
//! and reconnects by itself after a failure. Every call is bounded by the
//! configured timeouts, so a Redis that hangs costs a request at most
//! `connect_timeout + command_timeout`, never a hung request. A `rediss://`
//! URL speaks TLS (rustls), trusting `store.ca_file` or the webpki roots.

use crate::config::RedisConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, ScriptInvocation};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("Redis did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Cheap to clone: every clone uses the same connections.
#[derive(Clone)]
pub struct RedisPool {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Vec<ConnectionManager>,
    /// The same server over RESP3, for connections that take pushes.
    resp3: redis::Client,
    timeouts: (Duration, Duration),
    next: AtomicUsize,
    /// Bound on one call: a (re)connection, then the command.
    deadline: Duration,
    prefix: Arc<str>,
}

impl RedisPool {
    /// Prepares the connections without opening them. Needs a Tokio runtime.
    pub fn new(config: &RedisConfig) -> Result<Self, RedisError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        let client = |info: redis::ConnectionInfo| match &config.ca_pem {
            // rediss:// with its own CA; otherwise the webpki roots.
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
            None => redis::Client::open(info),
        };
        let resp3 = {
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            client(info.clone().set_redis_settings(settings))?
        };
        let client = client(info)?;
        // One quick retry inside the manager; the next call after a failure
        // starts a new attempt, so recovery needs no restart and a call never
        // waits out a long backoff.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(100));
        let conns = (0..config.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), manager.clone()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                conns,
                resp3,
                timeouts: (config.connect_timeout, config.command_timeout),
                next: AtomicUsize::new(0),
                deadline: config.connect_timeout + config.command_timeout,
                prefix: Arc::from(config.key_prefix.as_str()),
            }),
        })
    }

    /// The prefix of every key the gateway writes.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// A client of the same server that speaks RESP3 (pushes), and the
    /// (connect, command) timeouts its connections should have.
    pub(crate) fn resp3(&self) -> (redis::Client, (Duration, Duration)) {
        (self.inner.resp3.clone(), self.inner.timeouts)
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.conns.len();
        self.inner.conns[i].clone()
    }

    /// Runs `call` on a connection of the pool within the deadline. A call
    /// refused because the connection's last (re)connection attempt failed
    /// was never sent: it is tried once more, which waits for the fresh
    /// attempt that the failure started, so the first call after Redis
    /// returns succeeds rather than reporting the old failure.
    async fn bounded<C, T, F, Fut>(&self, conn: C, call: F) -> Result<T, RedisError>
    where
        C: Clone,
        F: Fn(C) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            match call(conn.clone()).await {
                Err(e) if e.is_connection_refusal() => call(conn).await,
                other => other,
            }
        };
        match tokio::time::timeout(self.inner.deadline, attempt).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisError::Timeout(self.inner.deadline)),
        }
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, RedisError> {
        self.bounded(
            self.conn(),
            |mut c| async move { cmd.query_async(&mut c).await },
        )
        .await
    }

    /// Runs one command on a connection of the caller's, within the same
    /// deadline as the pool's.
    pub(crate) async fn query_on<T: FromRedisValue>(
        &self,
        conn: redis::aio::MultiplexedConnection,
        cmd: &redis::Cmd,
    ) -> Result<T, RedisError> {
        self.bounded(conn, |mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs a Lua script (by its hash, loading it first when Redis lacks it).
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisError> {
        self.bounded(self.conn(), |mut c| async move {
            invocation.invoke_async(&mut c).await
        })
        .await
    }

    /// Whether Redis answers: `PING` on every connection of the pool.
    pub async fn ping(&self) -> Result<(), RedisError> {
        for conn in &self.inner.conns {
            self.bounded(conn.clone(), |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await?;
        }
        Ok(())
    }
}

/// Rate-limits a warning that would otherwise repeat for every request
/// while Redis is down: true at most once per `every`.
pub(crate) struct Throttle {
    last_ms: std::sync::atomic::AtomicU64,
    every_ms: u64,
}

impl Throttle {
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            every_ms: every.as_millis() as u64,
        }
    }

    pub(crate) fn ready(&self) -> bool {
        let now = crate::clock::now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
