//! Configuration: one TOML file, read in two stages.
//!
//! [`raw`] mirrors the file with serde (unknown keys refused), after
//! [`env`] has applied the `ORDERGATE_<SECTION>__<KEY>` overrides to it;
//! [`Config`] holds the validated, typed values the gateway runs on. Sizes
//! and durations may carry units ([`units`]). Every problem is reported as a
//! [`ConfigError`] naming the key and the reason, and stops the start;
//! [`Config::check`] reports all of a file's problems at once.

mod cors;
pub mod env;
mod faults;
mod rate_limits;
mod raw;
pub mod tls;
pub mod units;

pub use cors::CorsConfig;
pub use env::Override;
pub use faults::FaultTypes;
pub use rate_limits::{KeyKind, PathPattern, RuleSpec, Scope};
pub use raw::SECRET_KEYS;

use http::HeaderName;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// Dotted key path (`server.listen`), or the file path for file errors.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// A base URL (`scheme://host[:port]`, no path), kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    text: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

impl BaseUrl {
    pub fn parse(key: &str, s: &str) -> Result<Self, ConfigError> {
        let trimmed = s.trim_end_matches('/');
        let uri: http::Uri = trimmed
            .parse()
            .map_err(|e| ConfigError::new(key, format!("`{s}` is not a URL: {e}")))?;
        let scheme = uri
            .scheme()
            .filter(|s| **s == http::uri::Scheme::HTTP || **s == http::uri::Scheme::HTTPS)
            .ok_or_else(|| {
                ConfigError::new(key, format!("`{s}` must start with http:// or https://"))
            })?
            .clone();
        let authority = uri
            .authority()
            .ok_or_else(|| ConfigError::new(key, format!("`{s}` has no host")))?
            .clone();
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(ConfigError::new(
                key,
                format!("`{s}` must be a base URL without a path or query"),
            ));
        }
        Ok(Self {
            text: format!("{scheme}://{authority}"),
            scheme,
            authority,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
    pub fn scheme(&self) -> &http::uri::Scheme {
        &self.scheme
    }
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    /// The admin listener (metrics, health), when `[admin]` is set.
    pub admin: Option<AdminConfig>,
    pub upstream: UpstreamConfig,
    pub store: StoreConfig,
    pub cookies: CookieConfig,
    pub faults: FaultsConfig,
    pub rate_limits: RateLimitsConfig,
    pub cors: CorsConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub compression: CompressionConfig,
    /// Keys the file sets that are not used (another store kind's): the
    /// file is accepted, and these are logged and printed by `check`.
    pub warnings: Vec<ConfigError>,
    /// Keys set from the environment.
    pub overrides: Vec<Override>,
}

/// `[telemetry]`: what the gateway exports besides its log and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// OpenTelemetry traces over OTLP; off when `None`.
    pub otlp: Option<OtlpConfig>,
}

/// Where and how traces are exported (OTLP over HTTP with protobuf bodies).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The URL spans are POSTed to (`…/v1/traces`).
    pub traces_url: String,
    /// Share of new traces recorded (0 to 1); a client's sampled flag is
    /// followed for traces it started.
    pub sampling_ratio: f64,
    pub service_name: String,
    /// Time one export may take.
    pub timeout: Duration,
}

/// Compression of answers toward clients that accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    pub enabled: bool,
    /// Answers smaller than this go uncompressed (when their size is known).
    pub min_size: u64,
}

/// `compression.min_size_bytes` when unset: below a kilobyte, compression
/// saves less than it costs.
pub const DEFAULT_COMPRESSION_MIN_SIZE: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Filter directives: `info`, `ordergate=debug,warn`.
    pub level: String,
    pub format: LogFormat,
    /// One line per request (target `ordergate::access`).
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: raw::DEFAULT_LOG_LEVEL.to_owned(),
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitsConfig {
    /// How often idle keys are forgotten.
    pub sweep_interval: Duration,
    /// What `scope = "global"` rules do while Redis cannot be used.
    pub on_redis_error: OnRedisError,
    /// Whether a global rule is first checked against this replica's own
    /// count, so that obvious excess is refused without a Redis round trip.
    pub local_precheck: bool,
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone)]
pub struct FaultsConfig {
    pub types: FaultTypes,
    /// Largest upstream error body read to find its message.
    pub max_upstream_body: usize,
}

#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// When set, every admin route needs `Authorization: Bearer <token>`
    /// (or Basic with it as the password, for browsers).
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminConfig {
    /// Without the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// One address the gateway serves on, plain or TLS.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// Its certificate and key reload; its cipher suites need a restart.
    pub tls: Option<tls::ListenerTls>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `server.listen` (with `[server.tls]`) first, then `server.listeners`.
    pub listeners: Vec<ListenerConfig>,
    pub public_base_url: BaseUrl,
    /// Peers whose `X-Forwarded-*` headers are believed and extended.
    pub trusted_proxies: Vec<IpAddr>,
    /// Largest request body accepted (413 above it).
    pub max_request_body: u64,
    /// Header carrying the request id, taken from the client or generated.
    pub request_id_header: HeaderName,
    /// Worker threads; 1 serves everything on one thread. `None`: the
    /// `TOKIO_WORKER_THREADS` environment variable (`shared` mode), else
    /// one per CPU.
    pub workers: Option<usize>,
    /// How the worker threads share the listeners and the stack.
    pub worker_mode: WorkerMode,
    /// Time given to in-flight requests at shutdown.
    pub drain_timeout: Duration,
    pub limits: ServerLimits,
}

/// How the gateway's threads serve (`server.worker_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerMode {
    /// One multi-thread runtime: every thread takes connections from the
    /// same listeners and serves them with the same stack.
    #[default]
    Shared,
    /// A worker per thread, like nginx's worker processes: each has its own
    /// current-thread runtime, its own listening sockets (SO_REUSEPORT: the
    /// kernel spreads new connections across the workers) and its own stack
    /// and upstream pool; nothing of a connection crosses threads.
    PerCore,
}

impl WorkerMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::PerCore => "per_core",
        }
    }
}

impl ServerConfig {
    /// In `per_core` mode, how many workers: `workers`, else one per CPU
    /// this process may run on. `None` in `shared` mode.
    pub fn per_core_workers(&self) -> Option<usize> {
        (self.worker_mode == WorkerMode::PerCore).then(|| {
            self.workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            })
        })
    }
}

/// What one client may ask of the server.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest request head (request line and headers), in bytes: 431 above.
    pub max_header_bytes: usize,
    /// Most header fields in one request: 431 above.
    pub max_headers: usize,
    /// Time a client has to send a request's headers before the connection
    /// is closed.
    pub header_read_timeout: Duration,
    /// Longest pause allowed while a request body streams in: 408 after it.
    pub body_idle_timeout: Duration,
    /// A client connection with nothing read or written for this long is
    /// closed (gracefully: a request in progress finishes first).
    pub idle_timeout: Duration,
    /// Most client connections open at once; past it, a new connection is
    /// answered 503 (or closed) at once.
    pub max_connections: usize,
    /// Connections the kernel queues before they are accepted.
    pub listen_backlog: u32,
    pub handshake: Handshake,
    pub http2: Http2Limits,
}

/// Deadlines of a connection's start, each counted from its accept and each
/// within `header_read_timeout` (which also bounds the first request head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Until the first byte arrives.
    pub first_byte: Duration,
    /// Until the TLS handshake is done (TLS listeners).
    pub tls: Duration,
    /// Until enough has arrived to tell HTTP/1 from HTTP/2.
    pub protocol: Duration,
    /// Until an HTTP/2 client's preface and SETTINGS frame have arrived.
    pub http2: Duration,
}

/// HTTP/2 keep-alive pings, and the limits on streams and resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Limits {
    /// A ping is sent after this long without a frame from the client...
    pub keep_alive_interval: Duration,
    /// ...and the connection closed if its answer takes longer than this.
    pub keep_alive_timeout: Duration,
    pub max_concurrent_streams: u32,
    /// Streams the client opened and reset before the gateway saw them.
    pub max_pending_reset_streams: usize,
    /// Streams the gateway resets for the client's protocol errors.
    pub max_local_error_reset_streams: usize,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: BaseUrl,
    /// Other internal base URLs the upstream writes into its answers; all are
    /// rewritten to the public base URL, like `url` itself.
    pub rewrite_bases: Vec<BaseUrl>,
    /// Client TLS, used when the upstream is `https://`.
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    /// HTTP/2 to the upstream: negotiated by ALPN over TLS, prior knowledge
    /// (h2c) over plain TCP.
    pub http2: bool,
    /// Time to connect, every address of the upstream's tried.
    pub connect_timeout: Duration,
    /// Time each address gets (within `connect_timeout`), so that one that
    /// does not answer leaves time for the next.
    pub connect_attempt_timeout: Duration,
    /// Idle time before TCP keepalive probes on upstream connections;
    /// `None`: no probes.
    pub tcp_keepalive: Option<Duration>,
    /// Time allowed for the upstream to answer with headers.
    pub response_timeout: Duration,
    /// Time allowed for the whole upstream exchange, body included.
    pub request_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Most requests in flight to the upstream at once (so most connections
    /// open to it); more wait for a free one. `None`: no cap.
    pub max_connections: Option<usize>,
    /// Cap on the JSON bodies the gateway must read (order status, actions).
    pub max_json_body: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redb {
        path: PathBuf,
    },
    /// Shared by every replica that points at the same Redis and prefix.
    Redis(RedisConfig),
}

/// What a function that depends on Redis does while Redis cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Refuse with 503 serviceUnavailable.
    FailClosed,
    /// Carry on with this replica's local state, with a warning and a count.
    FailOpen,
}

/// The Redis (or Valkey) server the replicas share.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` (`rediss://` for TLS),
    /// checked at load time.
    pub url: String,
    /// With `rediss://`: the PEM of the CA certificates to trust instead of
    /// the built-in webpki roots (`store.ca_file`, read at load time).
    pub ca_pem: Option<Vec<u8>>,
    /// The password to authenticate with, in place of the URL's (so that
    /// it can come from the environment while the URL stays in the file).
    pub password: Option<String>,
    /// Every key the gateway writes starts with it.
    pub key_prefix: String,
    /// Multiplexed connections kept open; each carries many commands at once.
    pub pool_size: usize,
    /// Orders whose tracked-or-not this replica keeps between Redis reads,
    /// kept true by Redis's invalidations; 0 keeps none.
    pub order_cache: usize,
    pub connect_timeout: Duration,
    /// Time one command (or script) has to answer.
    pub command_timeout: Duration,
    /// Life of the per-owner creation lease; the holder renews it while it
    /// works, so it only bounds how long a replica that died blocks an owner.
    pub lease_ttl: Duration,
    /// What the owner store does while Redis is unreachable.
    pub on_error: OnRedisError,
}

impl std::fmt::Debug for RedisConfig {
    /// Without the URL (it may carry a password) or the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("key_prefix", &self.key_prefix)
            .field("pool_size", &self.pool_size)
            .field("order_cache", &self.order_cache)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// An association unused for this long is forgotten.
    pub idle_expiry: Duration,
    pub sweep_interval: Duration,
}

impl StoreConfig {
    /// The shared Redis, when the store is on one.
    pub fn redis(&self) -> Option<&RedisConfig> {
        match &self.kind {
            StoreKind::Redis(r) => Some(r),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct CookieConfig {
    pub http_only: bool,
    pub secure: bool,
    pub same_site: Option<SameSite>,
    pub max_age: Option<Duration>,
}

impl Config {
    /// Reads and validates the file at `path`; the first problem, if any.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::check_file(path).map_err(first)
    }

    /// Validates TOML text; the first problem, if any.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::check(text).map_err(first)
    }

    /// Reads and validates the file at `path` with this process's
    /// `ORDERGATE_*` overrides, with every problem found. Relative paths in
    /// the file are relative to its folder.
    pub fn check_file(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError::new(
                path.display().to_string(),
                format!("cannot read the config file: {}", io_reason(&e)),
            )]
        })?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        Self::check_with(&text, dir, env::from_process())
    }

    /// Validates TOML text, with every problem found; no overrides, and
    /// relative paths relative to the working directory.
    pub fn check(text: &str) -> Result<Self, Vec<ConfigError>> {
        Self::check_with(text, None, Vec::new())
    }

    /// Validates TOML text with the given `ORDERGATE_*` variables applied,
    /// and relative paths resolved against `base_dir`.
    pub fn check_with(
        text: &str,
        base_dir: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Self, Vec<ConfigError>> {
        raw::Raw::check(text, raw::Source { base_dir, env })
    }

    /// The settings that differ in `new` but that a running gateway keeps
    /// until it restarts: its listeners, TLS cipher suites, connection
    /// handling, runtime, store and admin listener. (Certificates, keys, OCSP
    /// responses and HSTS reload.)
    pub fn restart_needed_for(&self, new: &Config) -> Vec<&'static str> {
        let listeners = |c: &Config| -> Vec<_> {
            c.server
                .listeners
                .iter()
                .map(|l| (l.addr, l.tls.is_some()))
                .collect()
        };
        let suites = |c: &Config| -> Vec<_> {
            c.server
                .listeners
                .iter()
                .map(|l| l.tls.as_ref().map(|t| t.fixed_at_start()))
                .collect()
        };
        let (old, now) = (&self.server.limits, &new.server.limits);
        [
            (
                "server.listen, server.listeners",
                listeners(self) != listeners(new),
            ),
            (
                "tls.cipher_suites, tls.prefer_server_cipher_order",
                suites(self) != suites(new),
            ),
            (
                "server.header_read_timeout_ms",
                old.header_read_timeout != now.header_read_timeout,
            ),
            (
                "server.idle_timeout_ms",
                old.idle_timeout != now.idle_timeout,
            ),
            (
                "server.max_connections",
                old.max_connections != now.max_connections,
            ),
            (
                "server.drain_timeout_secs",
                self.server.drain_timeout != new.server.drain_timeout,
            ),
            ("server.workers", self.server.workers != new.server.workers),
            (
                "server.worker_mode",
                self.server.worker_mode != new.server.worker_mode,
            ),
            (
                "server.listen_backlog",
                old.listen_backlog != now.listen_backlog,
            ),
            (
                "server.first_byte_timeout_ms, tls_handshake_timeout_ms, protocol_timeout_ms, http2_handshake_timeout_ms",
                old.handshake != now.handshake,
            ),
            ("server.http2_*", old.http2 != now.http2),
            ("telemetry.otlp", self.telemetry != new.telemetry),
            ("store", self.store.kind != new.store.kind),
            (
                "admin.listen",
                self.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen),
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

/// Log filter directives (`info`, `ordergate=debug,warn`), checked: what
/// `[log] level`, `RUST_LOG` and `PUT /log/level` take.
pub fn parse_log_level(directives: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let directives = directives.trim();
    if directives.is_empty() {
        return Err("no level given: e.g. \"info\" or \"ordergate=debug,warn\"".to_owned());
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("`{directives}` is not a level or filter: {e}"))
}

/// An I/O error in words, without the OS error code.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

fn first(mut problems: Vec<ConfigError>) -> ConfigError {
    if problems.is_empty() {
        ConfigError::new("(file)", "invalid")
    } else {
        problems.swap_remove(0)
    }
}

#[cfg(test)]
mod tests;
