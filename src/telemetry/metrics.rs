//! Prometheus metrics, served on the admin listener.
//!
//! One [`Metrics`] lives as long as the process (a reload keeps it): the
//! telemetry layer counts requests by route group and status and times them,
//! the upstream client times its exchanges and counts failures by kind, and
//! the policy phases count rate-limited requests, implicit creations and 409s.
//! The number of open orders is read from the store when scraped, and so
//! are the process's CPU time, resident memory and open file descriptors
//! (from `/proc/self` on Linux; absent elsewhere). The accept loops count
//! open client connections, the upstream pool its open connections, the
//! upstream side its tunnels (upgraded connections) open and opened.
//! `ordergate_build_info{version,commit}` is always 1.
//!
//! For the status page it also keeps answers and errors by route group and
//! latency buckets it can compute percentiles of ([`super::latency`]).

use super::latency::{LatencyBuckets, Snapshot};
use crate::route::{PathError, Route};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The part of the orders API a request was for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RouteGroup {
    /// `/order…`
    shorthand,
    /// `/orders`
    orders,
    /// `/orders/<id>…`
    order,
    /// A path the gateway refused (dot segments, encoded separators).
    invalid,
    /// Anything else.
    other,
}

impl RouteGroup {
    pub const ALL: [Self; 5] = [
        Self::shorthand,
        Self::orders,
        Self::order,
        Self::invalid,
        Self::other,
    ];

    /// The group of a request's route, as the request facts have it.
    pub fn of(route: &Result<Route, PathError>) -> Self {
        match route {
            Ok(Route::Shorthand { .. }) => Self::shorthand,
            Ok(Route::Orders) => Self::orders,
            Ok(Route::Order { .. }) => Self::order,
            Ok(Route::Other) => Self::other,
            Err(_) => Self::invalid,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: RouteGroup,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: RouteGroup,
}

/// How an exchange with the upstream failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum UpstreamFailure {
    connect,
    timeout,
    protocol,
    bad_answer,
}

impl UpstreamFailure {
    const ALL: [Self; 4] = [
        Self::connect,
        Self::timeout,
        Self::protocol,
        Self::bad_answer,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: UpstreamFailure,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Function {
    store,
    rate_limits,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: Function,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// The version and commit of this build (see build.rs).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("BUILD_GIT_COMMIT");

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
}

pub use crate::server::Refusal;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: Refusal,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

/// One open tunnel on the gauge while it lives.
pub struct OpenTunnel(Gauge);

impl Drop for OpenTunnel {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The latency histogram of each route group, by `RouteGroup as usize`
    /// (handles into one registered family, looked up once).
    latency: [Histogram; 5],
    upstream_latency: Histogram,
    upstream_errors: Family<KindLabels, Counter>,
    rate_limited: Family<RuleLabels, Counter>,
    implicit_creations: Counter,
    conflicts: Counter,
    open_orders: Gauge,
    redis_fail_opens: Family<FunctionLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    worker_connections: Family<WorkerLabels, Counter>,
    /// Counted by the rate limits of every configuration in turn.
    rate_limit_fail_opens: Arc<AtomicU64>,
    client_connections: Gauge,
    upstream_connections: Gauge,
    tunnels: Gauge,
    tunnels_opened: Counter,
    process: Process,
    /// For the status page: answers and errors by route group, and latency
    /// buckets that it can compute percentiles of.
    by_route: [RouteCounters; 5],
    /// Each route group's `200` series of `requests`, a handle into the
    /// family kept once it has counted one: most answers count there
    /// without the family's lock and label lookup.
    ok: [std::sync::OnceLock<Counter>; 5],
    gateway_buckets: LatencyBuckets,
    upstream_buckets: LatencyBuckets,
    started: Instant,
}

/// The process's own figures, read at a scrape.
struct Process {
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    resident_bytes: Gauge,
    open_fds: Gauge,
}

impl Process {
    fn register(registry: &mut Registry) -> Self {
        let p = Self {
            cpu_seconds: Counter::default(),
            resident_bytes: Gauge::default(),
            open_fds: Gauge::default(),
        };
        registry.register(
            "process_cpu_seconds",
            "CPU time used by the process, user and system",
            p.cpu_seconds.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            p.resident_bytes.clone(),
        );
        registry.register(
            "process_open_fds",
            "Open file descriptors of the process (sockets included)",
            p.open_fds.clone(),
        );
        p
    }

    /// Reads `/proc/self`; figures it cannot read are left as they were.
    fn read(&self) {
        // The kernel reports CPU time in USER_HZ ticks, 100 a second on
        // every Linux architecture (it is part of the ABI, unlike HZ).
        const TICKS_PER_SEC: f64 = 100.0;
        const PAGE: i64 = 4096;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the command name, which may hold spaces and ")".
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the whole line; the
            // rest starts at field 3.
            if let (Some(u), Some(s)) = (fields.get(11), fields.get(12))
                && let (Ok(u), Ok(s)) = (u.parse::<u64>(), s.parse::<u64>())
            {
                let total = (u + s) as f64 / TICKS_PER_SEC;
                let now = self.cpu_seconds.get();
                if total > now {
                    self.cpu_seconds.inc_by(total - now);
                }
            }
        }
        if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
            && let Some(Ok(pages)) = statm.split_whitespace().nth(1).map(str::parse::<i64>)
        {
            self.resident_bytes.set(pages.saturating_mul(PAGE));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor, open while it is read, is one.
            let n = dir.count().saturating_sub(1);
            self.open_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[derive(Default)]
struct RouteCounters {
    total: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
}

/// Answers of one route group so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteCounts {
    pub total: u64,
    /// 4xx answers.
    pub client_errors: u64,
    /// 5xx answers.
    pub server_errors: u64,
}

/// What the owner store tells at a scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreReading {
    /// Associations held, when the store can tell.
    pub open_orders: Option<u64>,
    /// Operations served locally because Redis failed (fail-open), so far.
    pub fail_opens: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ordergate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route group and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route group",
            latency.clone(),
        );
        let latency =
            RouteGroup::ALL.map(|route| latency.get_or_create(&RouteLabels { route }).clone());
        let upstream_latency = latency_histogram();
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to the answer's headers",
            upstream_latency.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream exchanges that failed, by kind",
            upstream_errors.clone(),
        );
        let rate_limited = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused with 429, by rule",
            rate_limited.clone(),
        );
        let implicit_creations = Counter::default();
        registry.register(
            "implicit_creations",
            "Orders created implicitly through the /order shorthand",
            implicit_creations.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "open_order_conflicts",
            "Creations refused with 409 because the owner has an open order",
            conflicts.clone(),
        );
        let open_orders = Gauge::default();
        registry.register(
            "open_orders",
            "Owner to open order associations held by the store",
            open_orders.clone(),
        );
        let redis_fail_opens = Family::<FunctionLabels, Counter>::default();
        registry.register(
            "redis_fail_open",
            "Operations served by this replica alone because Redis failed (fail-open), by function",
            redis_fail_opens.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: VERSION,
                commit: COMMIT,
            })
            .set(1);
        registry.register(
            "build_info",
            "The version and git commit of this build (always 1)",
            build,
        );
        let client_connections = Gauge::default();
        registry.register(
            "client_connections",
            "Client connections open on the gateway's listeners",
            client_connections.clone(),
        );
        let upstream_connections = Gauge::default();
        registry.register(
            "upstream_pool_connections",
            "Connections open to the upstream (HTTP/1.1 pool; https and HTTP/2 upstreams are not counted)",
            upstream_connections.clone(),
        );
        let tunnels = Gauge::default();
        registry.register(
            "tunnels",
            "Upgraded connections (WebSocket and other HTTP/1.1 upgrades) open between a client and the upstream",
            tunnels.clone(),
        );
        let tunnels_opened = Counter::default();
        registry.register(
            "tunnels_opened",
            "Upgraded connections opened between a client and the upstream",
            tunnels_opened.clone(),
        );
        let process = Process::register(&mut registry);
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections answered or closed before a request of theirs reached the gateway's stack, by reason",
            refusals.clone(),
        );
        let worker_connections = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "worker_connections",
            "Client connections accepted, by worker (server.worker_mode = \"per_core\" only)",
            worker_connections.clone(),
        );
        Self {
            registry,
            worker_connections,
            client_connections,
            upstream_connections,
            tunnels,
            tunnels_opened,
            process,
            refusals,
            redis_fail_opens,
            rate_limit_fail_opens: Arc::default(),
            requests,
            latency,
            upstream_latency,
            upstream_errors,
            rate_limited,
            implicit_creations,
            conflicts,
            open_orders,
            by_route: Default::default(),
            ok: Default::default(),
            gateway_buckets: LatencyBuckets::default(),
            upstream_buckets: LatencyBuckets::default(),
            started: Instant::now(),
        }
    }

    pub fn request(&self, route: RouteGroup, status: u16, latency: Duration) {
        let series = || {
            self.requests
                .get_or_create(&RequestLabels { route, status })
        };
        if status == 200 {
            self.ok[route as usize]
                .get_or_init(|| series().clone())
                .inc();
        } else {
            series().inc();
        }
        self.latency[route as usize].observe(latency.as_secs_f64());
        let counters = &self.by_route[route as usize];
        counters.total.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => counters.client_errors.fetch_add(1, Ordering::Relaxed),
            500..=599 => counters.server_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        self.gateway_buckets.observe(latency);
    }

    /// One upstream exchange: its time to headers, and its failure if any.
    /// Times an upstream exchange, or counts its failure by kind.
    pub fn upstream_answered(&self, latency: Duration, failure: Option<UpstreamFailure>) {
        let Some(kind) = failure else {
            self.upstream_latency.observe(latency.as_secs_f64());
            self.upstream_buckets.observe(latency);
            return;
        };
        self.upstream_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    pub fn rate_limited(&self, rule: &str) {
        self.rate_limited
            .get_or_create(&RuleLabels {
                rule: rule.to_owned(),
            })
            .inc();
    }

    pub fn connection_refused(&self, reason: Refusal) {
        self.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }

    pub fn implicit_creation(&self) {
        self.implicit_creations.inc();
    }

    pub fn conflict(&self) {
        self.conflicts.inc();
    }

    /// The counter the rate limits count their fail-open requests in.
    pub fn rate_limit_fail_opens(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.rate_limit_fail_opens)
    }

    /// The gauge the accept loops keep the open client connections in.
    pub fn client_connections(&self) -> Gauge {
        self.client_connections.clone()
    }

    /// The counter of the connections worker `worker` accepts.
    pub fn worker_connections(&self, worker: usize) -> Counter {
        let worker = u32::try_from(worker).unwrap_or(u32::MAX);
        self.worker_connections
            .get_or_create(&WorkerLabels { worker })
            .clone()
    }

    /// The gauge the upstream pool keeps its open connections in.
    pub fn upstream_connections(&self) -> Gauge {
        self.upstream_connections.clone()
    }

    /// Counts a tunnel opened; it stays on the open tunnels gauge while the
    /// returned value lives.
    pub fn tunnel_opened(&self) -> OpenTunnel {
        self.tunnels_opened.inc();
        self.tunnels.inc();
        OpenTunnel(self.tunnels.clone())
    }

    pub fn route_counts(&self, route: RouteGroup) -> RouteCounts {
        let c = &self.by_route[route as usize];
        RouteCounts {
            total: c.total.load(Ordering::Relaxed),
            client_errors: c.client_errors.load(Ordering::Relaxed),
            server_errors: c.server_errors.load(Ordering::Relaxed),
        }
    }

    /// The gateway's and the upstream's latency buckets.
    pub fn latency_snapshots(&self) -> (Snapshot, Snapshot) {
        (
            self.gateway_buckets.snapshot(),
            self.upstream_buckets.snapshot(),
        )
    }

    pub fn rate_limited_count(&self, rule: &str) -> u64 {
        self.rate_limited
            .get(&RuleLabels {
                rule: rule.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    pub fn implicit_creation_count(&self) -> u64 {
        self.implicit_creations.get()
    }

    pub fn conflict_count(&self) -> u64 {
        self.conflicts.get()
    }

    pub fn rate_limit_fail_open_count(&self) -> u64 {
        self.rate_limit_fail_opens.load(Ordering::Relaxed)
    }

    /// Upstream failures by kind.
    pub fn upstream_error_counts(&self) -> std::collections::BTreeMap<String, u64> {
        UpstreamFailure::ALL
            .iter()
            .map(|&kind| {
                let n = self
                    .upstream_errors
                    .get(&KindLabels { kind })
                    .map_or(0, |c| c.get());
                (format!("{kind:?}"), n)
            })
            .collect()
    }

    /// Time since the process's metrics began.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The text exposition, with what the store tells.
    pub fn render(&self, store: StoreReading) -> String {
        self.process.read();
        if let Some(n) = store.open_orders {
            self.open_orders.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (function, total) in [
            (Function::store, store.fail_opens),
            (
                Function::rate_limits,
                self.rate_limit_fail_opens.load(Ordering::Relaxed),
            ),
        ] {
            // Both totals only grow: bring the counter up to them.
            let counter = self
                .redis_fail_opens
                .get_or_create(&FunctionLabels { function });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_groups() {
        for (path, group) in [
            ("/order", RouteGroup::shorthand),
            ("/order/action", RouteGroup::shorthand),
            ("/orders", RouteGroup::orders),
            ("/orders/abc", RouteGroup::order),
            ("/orders/abc/action", RouteGroup::order),
            ("/status", RouteGroup::other),
            ("/orders/%2e%2e/x", RouteGroup::invalid),
            ("/order/../x", RouteGroup::invalid),
        ] {
            assert_eq!(
                RouteGroup::of(&crate::route::classify(path)),
                group,
                "{path}"
            );
        }
        for (i, group) in RouteGroup::ALL.iter().enumerate() {
            assert_eq!(*group as usize, i);
        }
    }

    #[test]
    fn renders_what_was_counted() {
        let m = Metrics::new();
        m.request(RouteGroup::shorthand, 200, Duration::from_millis(3));
        m.request(RouteGroup::shorthand, 404, Duration::from_millis(3));
        m.request(RouteGroup::shorthand, 200, Duration::from_millis(3));
        m.upstream_answered(Duration::ZERO, Some(UpstreamFailure::timeout));
        m.rate_limited("per-owner");
        m.conflict();
        let _open = m.tunnel_opened();
        drop(m.tunnel_opened());
        m.connection_refused(Refusal::over_capacity);
        m.rate_limit_fail_opens().fetch_add(2, Ordering::Relaxed);
        let text = m.render(StoreReading {
            open_orders: Some(7),
            fail_opens: 3,
        });
        for line in [
            "ordergate_requests_total{route=\"shorthand\",status=\"200\"} 2",
            "ordergate_requests_total{route=\"shorthand\",status=\"404\"} 1",
            "ordergate_upstream_errors_total{kind=\"timeout\"} 1",
            "ordergate_rate_limited_total{rule=\"per-owner\"} 1",
            "ordergate_open_order_conflicts_total 1",
            "ordergate_connections_refused_total{reason=\"over_capacity\"} 1",
            "ordergate_implicit_creations_total 0",
            "ordergate_open_orders 7",
            "ordergate_redis_fail_open_total{function=\"store\"} 3",
            "ordergate_redis_fail_open_total{function=\"rate_limits\"} 2",
            "ordergate_request_duration_seconds_count{route=\"shorthand\"} 3",
            "ordergate_tunnels 1",
            "ordergate_tunnels_opened_total 2",
            "ordergate_client_connections 0",
            &format!("ordergate_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}} 1"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Read from /proc: a running process has used memory and holds files.
        let figure = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        assert!(figure("ordergate_process_resident_memory_bytes") > 1_000_000.0);
        assert!(figure("ordergate_process_open_fds") >= 3.0);
        assert!(figure("ordergate_process_cpu_seconds_total") >= 0.0);
    }
}
