//! Owner store on Redis (or Valkey), shared by every gateway replica that
//! points at the same server and key prefix.
//!
//! Keys, all under the configured prefix `P`:
//! - `P owner:<uuid>`: hash `{order, touched}`, the owner's open order;
//! - `P order:<id>`: the owner of an order;
//! - `P touched`: sorted set of owners by last use, for expiry;
//! - `P lease:<uuid>`: the creation lease of an owner (`SET NX PX`).
//!
//! Only validated values reach a key: an [`OwnerId`] is a UUID written in its
//! hyphenated form and an [`OrderId`] is ASCII letters, digits, `-_.`. Every
//! change that touches more than one key is one Lua script, so replicas never
//! see half of it. What one replica writes, every other reads at once: the
//! only thing kept locally is whether an order is tracked, for passthrough
//! reads, and Redis itself invalidates it ([`super::tracking`]).
//!
//! When Redis cannot be used, `on_redis_error` decides: fail-closed answers
//! the store error (503 serviceUnavailable); fail-open serves the call from
//! a local in-memory store, logs a warning (at most once every 10 s) and
//! counts it ([`OwnerStore::fail_open_count`]). Associations made locally
//! during an outage are carried over to Redis the next time they are looked
//! up after it, unless Redis meanwhile learned another one for the owner.

use super::OwnerId;
use super::lease::Leases;
use super::memory::MemoryStore;
use super::store::{Association, OrderId, OwnerStore, StoreError};
use super::tracking::{Lookup, TrackedOrders};
use crate::config::{OnRedisError, RedisConfig};
use crate::redis_pool::{RedisError, RedisPool, Throttle};
use async_trait::async_trait;
use redis::Script;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// KEYS: owner key, order key, touched set. ARGV: owner, order, now, prefix.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local owner, order, now, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local prev = redis.call('GET', KEYS[2])
if prev and prev ~= owner then
  redis.call('DEL', prefix .. 'owner:' .. prev)
  redis.call('ZREM', KEYS[3], prev)
end
local old = redis.call('HGET', KEYS[1], 'order')
if old and old ~= order then
  redis.call('DEL', prefix .. 'order:' .. old)
end
redis.call('SET', KEYS[2], owner)
redis.call('HSET', KEYS[1], 'order', order, 'touched', now)
redis.call('ZADD', KEYS[3], now, owner)
return 1
",
    )
});

/// KEYS: owner key, touched set. ARGV: owner, order, now.
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'order') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'touched', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
",
    )
});

/// KEYS: order key, touched set. ARGV: order, prefix. Returns the owner.
static END_ORDER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local owner = redis.call('GET', KEYS[1])
if not owner then return false end
redis.call('DEL', KEYS[1])
local okey = ARGV[2] .. 'owner:' .. owner
if redis.call('HGET', okey, 'order') == ARGV[1] then
  redis.call('DEL', okey)
  redis.call('ZREM', KEYS[2], owner)
end
return owner
",
    )
});

/// KEYS: touched set. ARGV: before, prefix, batch. Ends up to `batch`
/// associations stamped before `before`; returns how many.
static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local owners = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, owner in ipairs(owners) do
  local okey = ARGV[2] .. 'owner:' .. owner
  local order = redis.call('HGET', okey, 'order')
  if order and redis.call('GET', ARGV[2] .. 'order:' .. order) == owner then
    redis.call('DEL', ARGV[2] .. 'order:' .. order)
  end
  redis.call('DEL', okey)
  redis.call('ZREM', KEYS[1], owner)
end
return #owners
",
    )
});

/// KEYS: lease key. ARGV: token, ttl ms. Extends the lease if the token holds it.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// KEYS: lease key. ARGV: token. Deletes the lease if the token holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Associations ended per expiry script run: keeps each run short, as Redis
/// runs one script at a time.
const EXPIRE_BATCH: usize = 500;

pub struct RedisStore {
    pool: RedisPool,
    on_error: OnRedisError,
    lease_ttl: Duration,
    /// Serves calls while Redis is down, with fail-open.
    local: MemoryStore,
    fail_open: AtomicU64,
    degraded: AtomicBool,
    warn: Throttle,
    tracked: TrackedOrders,
}

impl RedisStore {
    /// Needs a Tokio runtime (the tracking connection is kept by a task).
    pub fn new(pool: RedisPool, config: &RedisConfig) -> Self {
        let (resp3, timeouts) = pool.resp3();
        let tracked = TrackedOrders::start(resp3, pool.prefix(), config.order_cache, timeouts);
        Self {
            tracked,
            pool,
            on_error: config.on_error,
            lease_ttl: config.lease_ttl,
            local: MemoryStore::new(),
            fail_open: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            warn: Throttle::new(Duration::from_secs(10)),
        }
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}{kind}:{id}", self.pool.prefix())
    }

    fn owner_key(&self, owner: OwnerId) -> String {
        self.key("owner", owner)
    }

    fn order_key(&self, order: &OrderId) -> String {
        self.key("order", order)
    }

    fn lease_key(&self, owner: OwnerId) -> String {
        self.key("lease", owner)
    }

    fn touched_key(&self) -> String {
        format!("{}touched", self.pool.prefix())
    }

    /// Notes a call that reached Redis, logging the end of an outage.
    fn ok<T>(&self, value: T) -> T {
        if self.degraded.load(Ordering::Relaxed) && self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again: the owner store is shared again");
        }
        value
    }

    /// A Redis failure: the store error with fail-closed; with fail-open,
    /// counted, logged now and then, and `Ok` for the caller to go local.
    fn degrade(&self, op: &'static str, e: RedisError) -> Result<(), StoreError> {
        self.degraded.store(true, Ordering::Relaxed);
        match self.on_error {
            OnRedisError::FailClosed => {
                if self.warn.ready() {
                    tracing::warn!(error = %e, op, "Redis unavailable: owner store calls fail (fail_closed)");
                }
                Err(StoreError::Backend(e.to_string()))
            }
            OnRedisError::FailOpen => {
                self.fail_open.fetch_add(1, Ordering::Relaxed);
                if self.warn.ready() {
                    tracing::warn!(error = %e, op, "Redis unavailable: owner store falls back to this replica's memory (fail_open)");
                }
                Ok(())
            }
        }
    }

    /// Drops what the local fallback holds for `owner` once Redis decides.
    fn forget_local_owner(&self, owner: OwnerId) {
        if self.local.is_empty() {
            return;
        }
        let mut maps = self.local.lock();
        if let Some(a) = maps.get(owner) {
            maps.end_order(&a.order);
        }
    }

    async fn redis_get(&self, owner: OwnerId) -> Result<Option<Association>, RedisError> {
        let (order, touched): (Option<String>, Option<u64>) = self
            .pool
            .query(
                redis::cmd("HMGET")
                    .arg(self.owner_key(owner))
                    .arg("order")
                    .arg("touched"),
            )
            .await?;
        // Anything that is not an order id the gateway could have written is
        // not an association.
        Ok(match (order.as_deref().and_then(OrderId::parse), touched) {
            (Some(order), Some(touched_ms)) => Some(Association { order, touched_ms }),
            _ => None,
        })
    }

    async fn redis_put(
        &self,
        owner: OwnerId,
        order: &OrderId,
        now_ms: u64,
    ) -> Result<(), RedisError> {
        let result = self
            .pool
            .script::<i64>(
                PUT.key(self.owner_key(owner))
                    .key(self.order_key(order))
                    .key(self.touched_key())
                    .arg(owner.to_string())
                    .arg(order.as_str())
                    .arg(now_ms)
                    .arg(self.pool.prefix()),
            )
            .await;
        // Whatever became of the write, what was kept may be stale now.
        self.tracked.forget(order);
        result.map(drop)
    }

    /// An association made locally during an outage, written to Redis now
    /// that it answers (Redis had none for the owner).
    async fn carry_over(&self, owner: OwnerId) -> Result<Option<Association>, StoreError> {
        let Some(a) = self.local.lock().get(owner) else {
            return Ok(None);
        };
        match self.redis_put(owner, &a.order, a.touched_ms).await {
            Ok(()) => {
                self.local.lock().end_order(&a.order);
                tracing::info!(order = %a.order, "association made during a Redis outage carried over to Redis");
                Ok(Some(a))
            }
            Err(e) => {
                self.degrade("put", e)?;
                Ok(Some(a))
            }
        }
    }
}

fn token(token: u128) -> String {
    format!("{token:032x}")
}

#[async_trait]
impl OwnerStore for RedisStore {
    async fn get(&self, owner: OwnerId) -> Result<Option<Association>, StoreError> {
        match self.redis_get(owner).await {
            Ok(Some(a)) => {
                self.ok(());
                self.forget_local_owner(owner);
                Ok(Some(a))
            }
            Ok(None) => {
                self.ok(());
                self.carry_over(owner).await
            }
            Err(e) => {
                self.degrade("get", e)?;
                self.local.get(owner).await
            }
        }
    }

    async fn put(&self, owner: OwnerId, order: &OrderId, now_ms: u64) -> Result<(), StoreError> {
        match self.redis_put(owner, order, now_ms).await {
            Ok(()) => {
                self.ok(());
                self.forget_local_owner(owner);
                if !self.local.is_empty() {
                    self.local.lock().end_order(order);
                }
                Ok(())
            }
            Err(e) => {
                self.degrade("put", e)?;
                self.local.put(owner, order, now_ms).await
            }
        }
    }

    async fn touch(
        &self,
        owner: OwnerId,
        order: &OrderId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let result = self
            .pool
            .script::<i64>(
                TOUCH
                    .key(self.owner_key(owner))
                    .key(self.touched_key())
                    .arg(owner.to_string())
                    .arg(order.as_str())
                    .arg(now_ms),
            )
            .await;
        match result {
            Ok(n) => Ok(self.ok(n == 1)),
            Err(e) => {
                self.degrade("touch", e)?;
                self.local.touch(owner, order, now_ms).await
            }
        }
    }

    async fn owner_of(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        let get = || redis::cmd("GET").arg(self.order_key(order)).to_owned();
        let result = match self.tracked.lookup(order) {
            Lookup::Kept(owner) => Ok(owner),
            Lookup::Read {
                conn,
                epoch,
                generation,
            } => match self.pool.query_on::<Option<String>>(conn, &get()).await {
                Ok(owner) => {
                    let owner = owner.as_deref().and_then(OwnerId::parse);
                    self.tracked.keep(order, epoch, owner);
                    Ok(owner)
                }
                // The tracking connection broke: the pool's connections
                // reconnect by themselves, and a new tracking one opens.
                Err(_) => {
                    self.tracked.failed(generation);
                    self.pool
                        .query::<Option<String>>(&get())
                        .await
                        .map(|o| o.as_deref().and_then(OwnerId::parse))
                }
            },
            Lookup::Off => self
                .pool
                .query::<Option<String>>(&get())
                .await
                .map(|o| o.as_deref().and_then(OwnerId::parse)),
        };
        match result {
            Ok(Some(owner)) => Ok(Some(self.ok(owner))),
            Ok(None) => {
                self.ok(());
                self.local.owner_of(order).await
            }
            Err(e) => {
                self.degrade("owner_of", e)?;
                self.local.owner_of(order).await
            }
        }
    }

    async fn end_order(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        let result = self
            .pool
            .script::<Option<String>>(
                END_ORDER
                    .key(self.order_key(order))
                    .key(self.touched_key())
                    .arg(order.as_str())
                    .arg(self.pool.prefix()),
            )
            .await;
        self.tracked.forget(order);
        match result {
            Ok(owner) => {
                self.ok(());
                let local = self.local.end_order(order).await?;
                Ok(owner.as_deref().and_then(OwnerId::parse).or(local))
            }
            Err(e) => {
                self.degrade("end_order", e)?;
                self.local.end_order(order).await
            }
        }
    }

    async fn expire(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut total = self.local.expire(before_ms).await?;
        loop {
            let result = self
                .pool
                .script::<usize>(
                    EXPIRE
                        .key(self.touched_key())
                        .arg(before_ms)
                        .arg(self.pool.prefix())
                        .arg(EXPIRE_BATCH),
                )
                .await;
            match result {
                Ok(n) => {
                    self.ok(());
                    total += n;
                    if n < EXPIRE_BATCH {
                        return Ok(total);
                    }
                }
                Err(e) => {
                    self.degrade("expire", e)?;
                    return Ok(total);
                }
            }
        }
    }

    /// The associations in Redis (`ZCARD` of the touched set), plus any held
    /// locally since an outage. Without Redis there is no count: this is a
    /// scrape, not a request served locally.
    async fn count(&self) -> Result<Option<u64>, StoreError> {
        let n = self
            .pool
            .query::<u64>(redis::cmd("ZCARD").arg(self.touched_key()))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(Some(self.ok(n) + self.local.len() as u64))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool
            .ping()
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))
    }

    fn fail_open_count(&self) -> u64 {
        self.fail_open.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Leases for RedisStore {
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    async fn try_lease(&self, owner: OwnerId, tok: u128) -> Result<bool, StoreError> {
        let result = self
            .pool
            .query::<Option<String>>(
                redis::cmd("SET")
                    .arg(self.lease_key(owner))
                    .arg(token(tok))
                    .arg("NX")
                    .arg("PX")
                    .arg(self.lease_ttl.as_millis() as u64),
            )
            .await;
        match result {
            Ok(set) => Ok(self.ok(set.is_some())),
            Err(e) => {
                // Fail-open: this replica's creation lock is all there is.
                self.degrade("lease", e)?;
                Ok(true)
            }
        }
    }

    async fn renew_lease(&self, owner: OwnerId, tok: u128) -> Result<bool, StoreError> {
        let result = self
            .pool
            .script::<i64>(
                RENEW
                    .key(self.lease_key(owner))
                    .arg(token(tok))
                    .arg(self.lease_ttl.as_millis() as u64),
            )
            .await;
        match result {
            Ok(n) => Ok(self.ok(n == 1)),
            Err(e) => {
                self.degrade("lease", e)?;
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, owner: OwnerId, tok: u128) -> Result<(), StoreError> {
        let result = self
            .pool
            .script::<i64>(RELEASE.key(self.lease_key(owner)).arg(token(tok)))
            .await;
        match result {
            Ok(_) => {
                self.ok(());
                Ok(())
            }
            // An unreleased lease expires by itself.
            Err(e) => self.degrade("lease", e),
        }
    }
}
