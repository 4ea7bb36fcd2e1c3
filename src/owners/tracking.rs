//! Which orders are tracked, as this replica last read them from Redis, kept
//! true by Redis's client-side caching (`CLIENT TRACKING`, Redis 6 or later).
//!
//! A passthrough read of `/orders/<id>` asks whether the order is tracked;
//! without this, every such request would wait for a Redis round trip. The
//! answers are read on one connection of their own that speaks RESP3 with
//! tracking on: Redis remembers which `order:` keys that connection read and
//! pushes an invalidation on the same connection when any replica changes
//! one. The invalidation is applied as it is read, before any later reply on
//! that connection, and a read that raced with an invalidation keeps nothing
//! (the epoch). While the connection is down, nothing is kept and every
//! lookup goes to Redis; a new connection starts with nothing kept.
//!
//! What is kept only decides whether the gateway reads an order's answer for
//! status changes. The decisions that must be right across replicas at once
//! (the owner's open order, creation, 409) read Redis every time.

use super::OwnerId;
use super::store::OrderId;
use crate::redis_pool::Throttle;
use foldhash::fast::RandomState;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What a lookup found.
pub(super) enum Lookup {
    /// The owner of the order (or none), as Redis last said.
    Kept(Option<OwnerId>),
    /// Not kept: read it on `conn`, then [`TrackedOrders::keep`] it with
    /// `epoch`.
    Read {
        conn: MultiplexedConnection,
        epoch: u64,
        generation: u64,
    },
    /// No tracking connection: read it on the shared pool.
    Off,
}

/// This replica's copy of the `order:` keys it read, with the task that
/// keeps its tracking connection open. Stops the task when dropped.
pub(super) struct TrackedOrders {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// `<prefix>order:`, what an invalidated key starts with.
    key_prefix: Box<str>,
    capacity: usize,
    /// The tracking connection went away.
    lost: Notify,
}

#[derive(Default)]
struct State {
    /// The tracking connection, while it is up.
    conn: Option<MultiplexedConnection>,
    /// Which connection `conn` is: a late disconnection of an older one
    /// changes nothing.
    generation: u64,
    /// Moves on every invalidation: a read that started before it keeps
    /// nothing.
    epoch: u64,
    owners: HashMap<Box<str>, Option<OwnerId>, RandomState>,
}

impl State {
    fn forget_all(&mut self) {
        self.epoch += 1;
        self.owners.clear();
    }
}

impl TrackedOrders {
    /// Keeps up to `capacity` orders, read on tracking connections of
    /// `client` (RESP3), each bounded by the timeouts. A capacity of 0 keeps
    /// nothing and opens no connection. Needs a Tokio runtime.
    pub(super) fn start(
        client: redis::Client,
        key_prefix: &str,
        capacity: usize,
        timeouts: (Duration, Duration),
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            key_prefix: format!("{key_prefix}order:").into(),
            capacity,
            lost: Notify::new(),
        });
        let task = (capacity > 0).then(|| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { shared.keep_connected(client, timeouts).await })
        });
        Self { shared, task }
    }

    pub(super) fn lookup(&self, order: &OrderId) -> Lookup {
        let state = self.shared.lock();
        match (&state.conn, state.owners.get(order.as_str())) {
            (Some(_), Some(owner)) => Lookup::Kept(*owner),
            (Some(conn), None) => Lookup::Read {
                conn: conn.clone(),
                epoch: state.epoch,
                generation: state.generation,
            },
            (None, _) => Lookup::Off,
        }
    }

    /// Keeps what a read on the tracking connection found, unless an
    /// invalidation came in meanwhile.
    pub(super) fn keep(&self, order: &OrderId, epoch: u64, owner: Option<OwnerId>) {
        let mut state = self.shared.lock();
        if state.conn.is_none() || state.epoch != epoch {
            return;
        }
        if state.owners.len() >= self.shared.capacity {
            state.owners.clear();
        }
        state.owners.insert(order.as_str().into(), owner);
    }

    /// Gives up the tracking connection `generation` after a read on it
    /// failed: nothing is kept until a new one is open.
    pub(super) fn failed(&self, generation: u64) {
        self.shared.lost(generation);
    }

    /// Forgets `order` after this replica changed its key (Redis's own
    /// invalidation may still be on its way).
    pub(super) fn forget(&self, order: &OrderId) {
        let mut state = self.shared.lock();
        state.epoch += 1;
        state.owners.remove(order.as_str());
    }
}

impl Drop for TrackedOrders {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays whole whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a tracking connection, and a new one whenever it is lost, with
    /// a growing pause after failures.
    async fn keep_connected(
        self: Arc<Self>,
        client: redis::Client,
        timeouts: (Duration, Duration),
    ) {
        const FIRST_PAUSE: Duration = Duration::from_millis(100);
        const LONGEST_PAUSE: Duration = Duration::from_secs(5);
        let warn = Throttle::new(Duration::from_secs(60));
        let mut pause = FIRST_PAUSE;
        let mut generation = 0;
        loop {
            generation += 1;
            match self.connect(&client, generation, timeouts).await {
                Ok(conn) => {
                    {
                        let mut state = self.lock();
                        state.forget_all();
                        state.conn = Some(conn);
                        state.generation = generation;
                    }
                    tracing::debug!("Redis tracking connection open: tracked orders are kept");
                    pause = FIRST_PAUSE;
                    self.lost.notified().await;
                }
                Err(e) => {
                    if warn.ready() {
                        tracing::warn!(error = %e, "no Redis tracking connection (needs Redis 6 or later): every passthrough read asks Redis whether the order is tracked");
                    }
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn connect(
        self: &Arc<Self>,
        client: &redis::Client,
        generation: u64,
        (connect_timeout, command_timeout): (Duration, Duration),
    ) -> redis::RedisResult<MultiplexedConnection> {
        let shared = Arc::downgrade(self);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(command_timeout))
            .set_push_sender(move |push: PushInfo| {
                if let Some(shared) = shared.upgrade() {
                    shared.pushed(push, generation);
                }
                Ok::<(), ()>(())
            });
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .query_async::<()>(&mut conn)
            .await?;
        Ok(conn)
    }

    /// The tracking connection `generation` is gone (if it is still the
    /// current one): forget everything and open a new one.
    fn lost(&self, generation: u64) {
        let mut state = self.lock();
        if state.generation == generation && state.conn.take().is_some() {
            state.forget_all();
            drop(state);
            self.lost.notify_one();
        }
    }

    /// A push from the tracking connection `generation`, applied as it is
    /// read, before any reply that follows it.
    fn pushed(&self, push: PushInfo, generation: u64) {
        match push.kind {
            PushKind::Invalidate => {
                let mut state = self.lock();
                state.epoch += 1;
                match push.data.first() {
                    Some(Value::Array(keys)) => {
                        for key in keys {
                            if let Value::BulkString(key) = key
                                && let Some(order) = key
                                    .strip_prefix(self.key_prefix.as_bytes())
                                    .and_then(|id| std::str::from_utf8(id).ok())
                            {
                                state.owners.remove(order);
                            }
                        }
                    }
                    // Redis forgot what this connection read (a flush, or
                    // its tracking table was full): so does the replica.
                    _ => state.owners.clear(),
                }
            }
            PushKind::Disconnection => self.lost(generation),
            _ => {}
        }
    }
}
