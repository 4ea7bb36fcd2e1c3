//! The running gateway: opens the store, builds the stack for a
//! configuration ([`crate::stack`]), serves it on the bound listeners and the
//! admin endpoints on theirs, swaps in a new stack on reload, and drains and
//! closes everything at shutdown.

use crate::config::{Config, StoreKind, WorkerMode};
use crate::guards::rate_limit::RateLimits;
use crate::owners::{MemoryStore, OwnerStore, RedbStore, RedisStore, Store, StoreError};
use crate::redis_pool::RedisPool;
use crate::{body, server, stack, telemetry, workers};
use arc_swap::ArcSwap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use telemetry::metrics::Metrics;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the owner store: {}", match .0 { StoreError::Backend(why) => why })]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Traces(#[from] telemetry::trace::TraceError),
    /// A `per_core` worker ended while the gateway was serving (a panic,
    /// logged where it happened); the others were drained and the store
    /// closed before this is returned.
    #[error("worker {0} stopped unexpectedly; the gateway shut down")]
    WorkerStopped(usize),
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
pub async fn open_store(config: &Config, redis: Option<&RedisPool>) -> Result<Store, StoreError> {
    Ok(match &config.store.kind {
        StoreKind::Memory => Store::unshared(Arc::new(MemoryStore::new())),
        StoreKind::Redis(r) => {
            let pool = match redis {
                Some(pool) => pool.clone(),
                None => RedisPool::new(r).map_err(|e| StoreError::Backend(e.to_string()))?,
            };
            // Shared with other replicas: creations take leases in it.
            let store = Arc::new(RedisStore::new(pool, r));
            Store {
                owners: Arc::clone(&store) as Arc<dyn OwnerStore>,
                leases: Some(store),
            }
        }
        StoreKind::Redb { path } => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || RedbStore::open(&path))
                .await
                .map_err(|e| StoreError::Backend(e.to_string()))??;
            Store::unshared(Arc::new(store))
        }
    })
}

/// The gateway's listeners, bound.
pub struct Bound {
    /// Every configured listener (in `per_core` mode, the first worker's).
    pub listeners: Vec<server::Listener>,
    pub admin: Option<TcpListener>,
    /// `per_core` mode: the other workers' listeners, each set the same
    /// addresses as `listeners` bound again with SO_REUSEPORT. The gateway
    /// runs one worker per set, `listeners` included.
    pub other_workers: Vec<Vec<server::Listener>>,
}

impl Bound {
    /// Binds every address the configuration names, with its listen
    /// backlog (the runtime's own bind would queue only 128); in `per_core`
    /// mode, once per worker, with SO_REUSEPORT.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let backlog = config.server.limits.listen_backlog;
        let workers = config.server.per_core_workers();
        let listen = |addr: std::net::SocketAddr, reuse_port: bool| {
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            };
            let named = |e: std::io::Error| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            };
            let s = socket.map_err(named)?;
            if reuse_port {
                set_reuse_port(&s).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr}: SO_REUSEPORT (server.worker_mode = \"per_core\"): {e}"),
                    )
                })?;
            }
            s.set_reuseaddr(true)
                .and_then(|()| s.bind(addr))
                .and_then(|()| s.listen(backlog))
                .map_err(named)
        };
        let mut listeners = Vec::new();
        let mut other_workers: Vec<Vec<server::Listener>> =
            (1..workers.unwrap_or(1)).map(|_| Vec::new()).collect();
        for l in &config.server.listeners {
            let tcp = listen(l.addr, workers.is_some())?;
            // Port 0 is a port of the kernel's choosing: the other workers
            // bind the one it chose.
            let addr = tcp.local_addr().map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", l.addr))
            })?;
            for set in &mut other_workers {
                set.push(server::Listener {
                    tcp: listen(addr, true)?,
                    tls: l.tls.clone(),
                });
            }
            listeners.push(server::Listener {
                tcp,
                tls: l.tls.clone(),
            });
        }
        let admin = match &config.admin {
            None => None,
            Some(a) => Some(listen(a.listen, false)?),
        };
        Ok(Self {
            listeners,
            admin,
            other_workers,
        })
    }

    /// One listener bound by the caller, with the first configured
    /// listener's TLS, and no admin listener.
    pub fn single(tcp: TcpListener, config: &Config) -> Self {
        let tls = config.server.listeners.first().and_then(|l| l.tls.clone());
        Self {
            listeners: vec![server::Listener { tcp, tls }],
            admin: None,
            other_workers: Vec::new(),
        }
    }
}

#[cfg(all(unix, not(target_os = "solaris"), not(target_os = "illumos")))]
fn set_reuse_port(socket: &tokio::net::TcpSocket) -> std::io::Result<()> {
    socket.set_reuseport(true)
}

#[cfg(not(all(unix, not(target_os = "solaris"), not(target_os = "illumos"))))]
fn set_reuse_port(_: &tokio::net::TcpSocket) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "not available on this system",
    ))
}

/// The service the listeners serve: the current stack, swapped on reload.
/// A clone (one per connection) keeps the stack it last used and calls it
/// as long as it is the current one, instead of cloning the stack for each
/// request; a reload is seen at the next request.
struct Current {
    stacks: Arc<ArcSwap<stack::Gateway>>,
    held: Option<(Arc<stack::Gateway>, stack::Gateway)>,
}

impl Current {
    fn new(stacks: &Arc<ArcSwap<stack::Gateway>>) -> Self {
        Self {
            stacks: Arc::clone(stacks),
            held: None,
        }
    }
}

impl Clone for Current {
    fn clone(&self) -> Self {
        Self::new(&self.stacks)
    }
}

impl tower::Service<http::Request<crate::server::RequestBody>> for Current {
    type Response = http::Response<body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        <stack::Gateway as tower::Service<http::Request<crate::server::RequestBody>>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        let current = self.stacks.load();
        let stack = match &mut self.held {
            Some((used, stack)) if Arc::ptr_eq(used, &current) => stack,
            held => {
                let current = arc_swap::Guard::into_inner(current);
                let stack = stack::Gateway::clone(&current);
                &mut held.insert((current, stack)).1
            }
        };
        tower::Service::<http::Request<crate::server::RequestBody>>::poll_ready(stack, cx)
    }

    fn call(&mut self, req: http::Request<crate::server::RequestBody>) -> Self::Future {
        match &mut self.held {
            Some((_, stack)) => stack.call(req),
            // Not readied first: the current stack, as `poll_ready` would.
            None => stack::Gateway::clone(&self.stacks.load()).call(req),
        }
    }
}

/// The rate limits for `config`: those of `previous` (and their counts)
/// when its `[rate_limits]` and trusted proxies are the same. One instance
/// serves every stack of the process.
fn rate_limits(
    config: &Config,
    metrics: &Metrics,
    redis: Option<&RedisPool>,
    previous: Option<(&Config, &Arc<RateLimits>)>,
) -> Arc<RateLimits> {
    match previous {
        Some((old, limits))
            if old.rate_limits == config.rate_limits
                && old.server.trusted_proxies == config.server.trusted_proxies =>
        {
            Arc::clone(limits)
        }
        // Global rules count on the Redis the process started with: the
        // store's, which a reload does not change.
        _ => Arc::new(
            RateLimits::new(config.rate_limits.rules.clone())
                .with_redis(redis.cloned(), &config.rate_limits)
                .counting_fail_opens_in(metrics.rate_limit_fail_opens()),
        ),
    }
}

/// What every stack of the process shares.
#[derive(Clone)]
struct Parts {
    store: Store,
    metrics: Arc<Metrics>,
    traces: Option<telemetry::trace::Traces>,
    /// `per_core` mode: the cap of `upstream.max_connections`, one for all
    /// the workers' stacks.
    upstream_slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl Parts {
    /// A cap for `config`'s `upstream.max_connections`, shared by the
    /// workers' stacks (`per_core` mode only: in `shared` mode the one stack
    /// has its own).
    fn upstream_slots(config: &Config) -> Option<Arc<tokio::sync::Semaphore>> {
        let per_core = config.server.worker_mode == WorkerMode::PerCore;
        let max = config.upstream.max_connections.filter(|_| per_core)?;
        Some(Arc::new(tokio::sync::Semaphore::new(max)))
    }
}

/// Where a stack serves: the caller's runtime (`shared` mode), or a worker's
/// (`per_core`), entered while its stacks are built so that their tasks
/// (the upstream pool's sweeper) run on it.
struct Slot {
    current: Arc<ArcSwap<stack::Gateway>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl Slot {
    fn new(
        runtime: Option<tokio::runtime::Handle>,
        config: &Config,
        parts: &Parts,
        limits: &Arc<RateLimits>,
    ) -> Self {
        let gateway = Self::build(runtime.as_ref(), config, parts, limits);
        Self {
            current: Arc::new(ArcSwap::from_pointee(gateway)),
            runtime,
        }
    }

    fn build(
        runtime: Option<&tokio::runtime::Handle>,
        config: &Config,
        parts: &Parts,
        limits: &Arc<RateLimits>,
    ) -> stack::Gateway {
        let _entered = runtime.map(tokio::runtime::Handle::enter);
        stack::build(
            config,
            parts.store.clone(),
            Arc::clone(limits),
            Arc::clone(&parts.metrics),
            parts.traces.as_ref(),
            parts.upstream_slots.clone(),
        )
    }

    /// A new stack for new requests.
    fn replace(&self, config: &Config, parts: &Parts, limits: &Arc<RateLimits>) {
        let gateway = Self::build(self.runtime.as_ref(), config, parts, limits);
        self.current.store(Arc::new(gateway));
    }
}

/// Runs the gateway on the bound listeners until `shutdown` completes, then
/// drains in-flight requests and closes the store. Each configuration from
/// `reloads` replaces the running one for new requests; what cannot change
/// without a restart (listeners, TLS, connection limits, the store) is kept
/// and a warning says so.
///
/// In `per_core` mode (`server.worker_mode`), each set of listeners in
/// `bound` is served by a worker thread of its own, with its own runtime
/// and stack ([`crate::workers`]); the admin endpoints, reloads and the
/// sweepers stay on the caller's runtime.
pub async fn run(
    config: Config,
    bound: Bound,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Config>,
) -> Result<(), StartError> {
    let redis = redis_pool(&config)?;
    let store = open_store(&config, redis.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());
    // Started once: `[telemetry.otlp]` changes apply at the next start.
    let traces = match &config.telemetry.otlp {
        Some(otlp) => Some(telemetry::trace::Traces::start(otlp).await?),
        None => None,
    };
    let parts = Parts {
        store: store.clone(),
        metrics: Arc::clone(&metrics),
        traces: traces.clone(),
        upstream_slots: Parts::upstream_slots(&config),
    };
    let first_limits = rate_limits(&config, &metrics, redis.as_ref(), None);
    let Bound {
        listeners,
        admin,
        other_workers,
    } = bound;
    let per_core = config.server.worker_mode == WorkerMode::PerCore;
    let listening: Vec<String> = listeners
        .iter()
        .filter_map(|l| {
            let addr = l.tcp.local_addr().ok()?;
            Some(if l.tls.is_some() {
                format!("https://{addr}")
            } else {
                addr.to_string()
            })
        })
        .collect();
    let running_tls: Vec<_> = listeners.iter().map(|l| l.tls.clone()).collect();
    // `shared`: one stack for the caller's runtime. `per_core`: a runtime
    // and a stack per worker, each built inside its runtime.
    let (slots, mut workers, listeners) = if per_core {
        let sets = std::iter::once(listeners).chain(other_workers).collect();
        let workers = workers::Workers::prepare(sets)?;
        let slots = workers
            .runtimes()
            .map(|runtime| Slot::new(Some(runtime), &config, &parts, &first_limits))
            .collect();
        (slots, Some(workers), Vec::new())
    } else {
        let slot = Slot::new(None, &config, &parts, &first_limits);
        (vec![slot], None, listeners)
    };
    let slots = Arc::new(slots);
    let mut limit_sweeper = Background(tokio::spawn(sweep_rate_limits(
        Arc::clone(&first_limits),
        config.rate_limits.sweep_interval,
    )));
    let sweeper = Background(tokio::spawn(sweep(
        Arc::clone(&store.owners),
        config.store.idle_expiry,
        config.store.sweep_interval,
    )));
    let (stop_admin, admin_stop) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    let admin_settings = Arc::new(ArcSwap::from_pointee(telemetry::admin::AdminSettings::new(
        &config,
    )));
    let admin = admin.map(|listener| {
        let admin = telemetry::admin::Admin {
            metrics: Arc::clone(&metrics),
            store: Arc::clone(&store.owners),
            draining: Arc::clone(&draining),
            settings: Arc::clone(&admin_settings),
        };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(listen = %addr, "admin endpoints are serving");
        }
        tokio::spawn(telemetry::admin::serve(listener, admin, admin_stop))
    });
    let options = |slots, accepted| server::Options {
        drain: config.server.drain_timeout,
        limits: config.server.limits,
        fault_body: {
            let types = config.faults.types.clone();
            Arc::new(move |status, guid, message| {
                crate::faults::body_bytes(types.name(status), guid, message, status, "")
            })
        },
        request_id_header: config.server.request_id_header.clone(),
        refused: {
            let metrics = Arc::clone(&metrics);
            Arc::new(move |reason| metrics.connection_refused(reason))
        },
        open: metrics.client_connections(),
        slots,
        accepted,
    };
    if let Some(workers) = &mut workers {
        // One cap for the whole process: every worker takes its connection
        // slots from the same semaphore.
        let cap = server::Options::slots(&config.server.limits);
        workers.start(|i| {
            let current = Current::new(&slots[i].current);
            let accepted = metrics.worker_connections(i);
            (current, options(Arc::clone(&cap), Some(accepted)))
        })?;
        tracing::info!(
            workers = workers.len(),
            "per-core workers are serving, each on its own listening sockets"
        );
    }
    tracing::info!(listen = %listening.join(","), upstream = config.upstream.url.as_str(), "ordergate is serving");
    crate::systemd::ready();

    let reloader = {
        let slots = Arc::clone(&slots);
        let mut parts = parts.clone();
        let metrics = Arc::clone(&metrics);
        let redis = redis.clone();
        let mut running = config.clone();
        let mut limits = first_limits;
        async move {
            while let Some(new) = reloads.recv().await {
                crate::systemd::reloading();
                warn_unreloadable(&running, &new);
                rotate_certificates(&running_tls, &running, &new);
                let next = rate_limits(&new, &metrics, redis.as_ref(), Some((&running, &limits)));
                // A new cap, as a new stack in `shared` mode has.
                parts.upstream_slots = Parts::upstream_slots(&new);
                for slot in slots.iter() {
                    slot.replace(&new, &parts, &next);
                }
                admin_settings.store(Arc::new(telemetry::admin::AdminSettings::new(&new)));
                if !Arc::ptr_eq(&limits, &next) {
                    limits = next;
                    limit_sweeper.replace(tokio::spawn(sweep_rate_limits(
                        Arc::clone(&limits),
                        new.rate_limits.sweep_interval,
                    )));
                }
                running = new;
                tracing::info!(
                    upstream = running.upstream.url.as_str(),
                    "configuration reloaded"
                );
                crate::systemd::ready();
            }
            std::future::pending::<()>().await;
        }
    };
    let asked = async {
        tokio::select! {
            () = shutdown => {}
            () = reloader => {}
        }
    };
    let begin_drain = || {
        draining.store(true, Ordering::Relaxed);
        crate::systemd::stopping();
    };
    let mut stopped_worker = None;
    match &mut workers {
        None => {
            let current = Current::new(&slots[0].current);
            let shutdown = async {
                asked.await;
                begin_drain();
            };
            let cap = server::Options::slots(&config.server.limits);
            server::serve(listeners, current, shutdown, options(cap, None)).await;
        }
        Some(workers) => {
            stopped_worker = tokio::select! {
                () = asked => None,
                worker = workers.stopped() => Some(worker),
            };
            begin_drain();
            let failed = workers.drain(config.server.drain_timeout).await;
            stopped_worker = stopped_worker.or(failed);
        }
    }
    let _ = stop_admin.send(true);
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    drop(sweeper);
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    store.owners.close().await?;
    // The workers' runtimes ran until now: tasks of theirs that the store
    // and the traces use (a Redis connection's) lived to the end.
    if let Some(workers) = workers
        && !workers.finish().await
    {
        tracing::warn!("a worker's runtime did not end in time");
    }
    match stopped_worker {
        Some(worker) => Err(StartError::WorkerStopped(worker)),
        None => Ok(()),
    }
}

/// A background task, stopped when dropped.
struct Background(JoinHandle<()>);

impl Background {
    fn replace(&mut self, task: JoinHandle<()>) {
        self.0.abort();
        self.0 = task;
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Puts the certificates, keys, OCSP responses and HSTS of `new` into the
/// running TLS listeners, for new handshakes; a listener whose address
/// changed is left alone (a restart applies it, and a warning says so).
fn rotate_certificates(
    tls: &[Option<crate::config::tls::ListenerTls>],
    old: &Config,
    new: &Config,
) {
    let pairs = old.server.listeners.iter().zip(&new.server.listeners);
    for (i, (tls, (was, now))) in tls.iter().zip(pairs).enumerate() {
        if was.addr != now.addr {
            continue;
        }
        if let (Some(tls), Some(next)) = (tls, &now.tls)
            && tls.take_reloadable(next)
        {
            tracing::info!(listener = i, cert = %next.settings.cert_path.display(), "new certificate or OCSP response for new handshakes");
        }
    }
}

/// Applies the new `[log]`, and warns about changes a reload does not apply.
fn warn_unreloadable(running: &Config, new: &Config) {
    let mut keys = running.restart_needed_for(new);
    keys.extend(crate::telemetry::log::reload(&running.log, &new.log));
    if !keys.is_empty() {
        tracing::warn!(keys = %keys.join(", "), "changed settings that apply after a restart");
    }
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
        let before = crate::clock::now_ms().saturating_sub(idle_expiry.as_millis() as u64);
        match store.expire(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "idle associations ended"),
            Err(e) => tracing::warn!(error = %e, "cannot expire idle associations"),
        }
    }
}

/// Forgets rate-limit keys whose buckets are full again, now and then.
async fn sweep_rate_limits(limits: Arc<RateLimits>, every: std::time::Duration) {
    if limits.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        limits.sweep();
    }
}
