//! The serde mirror of the TOML file, and its validation into [`Config`].
//!
//! Validation goes on past a problem, so that `ordergate check` can report
//! every problem of a file at once: each section collects its problems in
//! [`Problems`] and is built only when it has none.

use super::*;
use http::HeaderValue;
use serde::Deserialize;

pub const DEFAULT_STORE_PATH: &str = "data/owners.redb";
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 1024 * 1024;
pub const DEFAULT_MAX_JSON_BODY: usize = 1024 * 1024;
pub const DEFAULT_REQUEST_ID_HEADER: &str = "x-request-id";
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_POOL_IDLE_TIMEOUT_SECS: u64 = 90;
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 1024;
pub const DEFAULT_IDLE_EXPIRY_SECS: u64 = 24 * 60 * 60;
pub const DEFAULT_SWEEP_INTERVAL_SECS: u64 = 60;
pub const DEFAULT_DRAIN_TIMEOUT_SECS: u64 = 30;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's smallest read buffer: a smaller head limit cannot be enforced.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_BODY_IDLE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_UPSTREAM_FAULT_BYTES: usize = 64 * 1024;
pub const DEFAULT_RATE_LIMIT_SWEEP_SECS: u64 = 10;
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = 100_000;
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "ordergate:";
pub const DEFAULT_REDIS_POOL_SIZE: usize = 4;
pub const MAX_REDIS_POOL_SIZE: usize = 64;
pub const DEFAULT_REDIS_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_REDIS_COMMAND_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_REDIS_LEASE_TTL_MS: u64 = 10_000;

// Unknown keys are not refused by serde (`deny_unknown_fields` stops at the
// first); `Raw::parse` collects every one of them instead.

#[derive(Deserialize)]
pub struct Raw {
    server: RawServer,
    upstream: RawUpstream,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    cookies: RawCookies,
    #[serde(default)]
    faults: RawFaults,
    #[serde(default)]
    rate_limits: RawRateLimits,
    #[serde(default)]
    cors: RawCors,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    compression: RawCompression,
}

#[derive(Deserialize, Default)]
struct RawTelemetry {
    otlp: Option<RawOtlp>,
}

#[derive(Deserialize)]
struct RawOtlp {
    endpoint: String,
    protocol: Option<String>,
    sampling_ratio: Option<f64>,
    service_name: Option<String>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawServer {
    listen: String,
    tls: Option<RawTls>,
    /// More listeners, each plain or TLS.
    #[serde(default)]
    listeners: Vec<RawListener>,
    public_base_url: String,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    max_request_body_bytes: Option<u64>,
    request_id_header: Option<String>,
    drain_timeout_secs: Option<u64>,
    max_header_bytes: Option<usize>,
    max_headers: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    body_idle_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_connections: Option<usize>,
    workers: Option<usize>,
}

#[derive(Deserialize)]
struct RawListener {
    listen: String,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
struct RawTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    ocsp_path: Option<PathBuf>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_order: Option<bool>,
    hsts_max_age_secs: Option<u64>,
    hsts_include_subdomains: Option<bool>,
}

#[derive(Deserialize)]
struct RawAdmin {
    listen: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct RawUpstream {
    url: String,
    #[serde(default)]
    rewrite_bases: Vec<String>,
    ca_file: Option<PathBuf>,
    http2: Option<bool>,
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    pool_idle_timeout_secs: Option<u64>,
    pool_max_idle_per_host: Option<usize>,
    max_connections: Option<usize>,
    max_json_body_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawStore {
    kind: Option<String>,
    path: Option<PathBuf>,
    url: Option<String>,
    key_prefix: Option<String>,
    pool_size: Option<usize>,
    connect_timeout_ms: Option<u64>,
    command_timeout_ms: Option<u64>,
    lease_ttl_ms: Option<u64>,
    on_redis_error: Option<String>,
    idle_expiry_secs: Option<u64>,
    sweep_interval_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawCookies {
    http_only: Option<bool>,
    secure: Option<bool>,
    same_site: Option<String>,
    max_age_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawFaults {
    #[serde(default)]
    types: std::collections::BTreeMap<String, String>,
    max_upstream_body_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawRateLimits {
    sweep_interval_secs: Option<u64>,
    on_redis_error: Option<String>,
    local_precheck: Option<bool>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    name: String,
    #[serde(default)]
    methods: Vec<String>,
    paths: Vec<String>,
    key: String,
    rate: u32,
    per_secs: u64,
    burst: Option<u32>,
    max_keys: Option<usize>,
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawCors {
    #[serde(default)]
    allowed_origins: Vec<String>,
    allow_headers: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawCompression {
    enabled: Option<bool>,
    min_size_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
struct RawLog {
    format: Option<String>,
    access_log: Option<bool>,
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    /// The value, or `None` with the problem noted.
    fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError::new(key, reason));
    }
}

fn positive(key: &str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError::new(key, "must be greater than 0")),
        n => Ok(n),
    }
}

fn millis(key: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    positive(key, v, default).map(Duration::from_millis)
}

fn secs(key: &str, v: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    positive(key, v, default).map(Duration::from_secs)
}

fn on_redis_error(
    key: &str,
    v: Option<&str>,
    default: OnRedisError,
) -> Result<OnRedisError, ConfigError> {
    match v {
        None => Ok(default),
        Some("fail_closed") => Ok(OnRedisError::FailClosed),
        Some("fail_open") => Ok(OnRedisError::FailOpen),
        Some(other) => Err(ConfigError::new(
            key,
            format!("`{other}` is not \"fail_closed\" or \"fail_open\""),
        )),
    }
}

/// Checks a Redis URL without connecting: the scheme this build speaks and
/// what the client library accepts.
fn redis_url(key: &str, url: &str) -> Result<String, ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("redis" | "redis+unix" | "unix")) {
        return Err(ConfigError::new(
            key,
            "must start with redis:// (or redis+unix:// for a socket); TLS (rediss://) is not supported",
        ));
    }
    // The message of a URL error never repeats the URL, which may hold a password.
    redis::Client::open(url)
        .map_err(|e| ConfigError::new(key, format!("not a usable Redis URL: {e}")))?;
    Ok(url.to_owned())
}

/// A key prefix is written into every key: printable ASCII without spaces.
fn key_prefix(key: &str, prefix: Option<String>) -> Result<String, ConfigError> {
    let prefix = prefix.unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned());
    if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            key,
            format!("`{prefix}` must be 1 to 64 printable ASCII characters without spaces"),
        ));
    }
    Ok(prefix)
}

/// The `[store]` keys of `kind = "redis"`.
fn redis(p: &mut Problems, st: &mut RawStore) -> Option<RedisConfig> {
    let url = match st.url.take() {
        None => {
            p.add("store.url", "required with kind = \"redis\"");
            None
        }
        Some(url) => p.take(redis_url("store.url", &url)),
    };
    let pool_size = p.take(
        positive(
            "store.pool_size",
            st.pool_size.map(|v| v as u64),
            DEFAULT_REDIS_POOL_SIZE as u64,
        )
        .and_then(|n| {
            if n as usize > MAX_REDIS_POOL_SIZE {
                Err(ConfigError::new(
                    "store.pool_size",
                    format!("must be at most {MAX_REDIS_POOL_SIZE}"),
                ))
            } else {
                Ok(n as usize)
            }
        }),
    );
    let key_prefix = p.take(key_prefix("store.key_prefix", st.key_prefix.take()));
    let connect_timeout = p.take(millis(
        "store.connect_timeout_ms",
        st.connect_timeout_ms,
        DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
    ));
    let command_timeout = p.take(millis(
        "store.command_timeout_ms",
        st.command_timeout_ms,
        DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
    ));
    let lease_ttl = p.take(millis(
        "store.lease_ttl_ms",
        st.lease_ttl_ms,
        DEFAULT_REDIS_LEASE_TTL_MS,
    ));
    let on_error = p.take(on_redis_error(
        "store.on_redis_error",
        st.on_redis_error.as_deref(),
        OnRedisError::FailClosed,
    ));
    Some(RedisConfig {
        url: url?,
        key_prefix: key_prefix?,
        pool_size: pool_size?,
        connect_timeout: connect_timeout?,
        command_timeout: command_timeout?,
        lease_ttl: lease_ttl?,
        on_error: on_error?,
    })
}

fn address(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse::<SocketAddr>()
        .map_err(|e| ConfigError::new(key, format!("`{s}` is not an address:port: {e}")))
}

fn header_list(key: &str, names: &[String]) -> Result<HeaderValue, ConfigError> {
    for n in names {
        HeaderName::try_from(n.as_str())
            .map_err(|_| ConfigError::new(key, format!("`{n}` is not a header name")))?;
    }
    HeaderValue::from_str(&names.join(", "))
        .map_err(|_| ConfigError::new(key, "not a valid header list"))
}

/// `rate_limits.rules[0].key` from serde_ignored's path.
fn ignored_key(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_key(parent)),
        Path::Map { parent, key } => match ignored_key(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_key(parent),
    }
}

impl Raw {
    /// Reads the TOML text and validates it. Every unknown key is a problem,
    /// and so is the first syntax or type error (which stops the reading);
    /// validation reports every problem it finds.
    pub fn check(text: &str) -> Result<Config, Vec<ConfigError>> {
        let (raw, mut problems) = Self::parse(text);
        let validated = raw.map(Raw::validate);
        match validated {
            Some(Ok(config)) if problems.is_empty() => Ok(config),
            Some(Err(more)) => {
                problems.extend(more);
                Err(problems)
            }
            _ => Err(problems),
        }
    }

    /// The file's values, if it can be read, and the problems found.
    fn parse(text: &str) -> (Option<Self>, Vec<ConfigError>) {
        let de = match toml::de::Deserializer::parse(text) {
            Ok(de) => de,
            Err(e) => {
                let problem = ConfigError::new("(file)", format!("invalid TOML: {}", e.message()));
                return (None, vec![problem]);
            }
        };
        let mut unknown = Vec::new();
        let mut note = |path: serde_ignored::Path| {
            unknown.push(ConfigError::new(ignored_key(&path), "unknown field"));
        };
        let ignoring = serde_ignored::Deserializer::new(de, &mut note);
        let parsed = serde_path_to_error::deserialize(ignoring).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "(file)".to_owned()
            } else {
                path
            };
            let inner = e.into_inner();
            let reason = inner.message().to_owned();
            // serde reports a missing field one level up; name it fully.
            let key = match missing_field(&reason) {
                Some(field) if key == "(file)" => field,
                Some(field) => format!("{key}.{field}"),
                None => key,
            };
            ConfigError::new(key, reason)
        });
        match parsed {
            Ok(raw) => (Some(raw), unknown),
            Err(e) => {
                unknown.push(e);
                (None, unknown)
            }
        }
    }

    fn validate(self) -> Result<Config, Vec<ConfigError>> {
        let mut p = Problems::default();
        let server = server(&mut p, self.server);
        let admin = self.admin.and_then(|a| {
            let listen = p.take(address("admin.listen", &a.listen));
            let token = match a.token {
                Some(t) if t.trim().len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                    p.add(
                        "admin.token",
                        "must be at least 16 visible ASCII characters, no spaces",
                    );
                    None
                }
                t => t,
            };
            Some(AdminConfig {
                listen: listen?,
                token,
            })
        });
        let upstream = upstream(&mut p, self.upstream);
        let store = store(&mut p, self.store);
        let cookies = cookies(&mut p, self.cookies);
        let faults = faults(&mut p, self.faults);
        let rate_limits = rate_limits(&mut p, self.rate_limits);
        let cors = cors(&mut p, self.cors);
        let log = log(&mut p, self.log);
        let telemetry = telemetry(&mut p, self.telemetry);
        let compression = CompressionConfig {
            enabled: self.compression.enabled.unwrap_or(true),
            min_size: self
                .compression
                .min_size_bytes
                .unwrap_or(DEFAULT_COMPRESSION_MIN_SIZE),
        };
        if let (Some(st), Some(rl)) = (&store, &rate_limits)
            && st.redis().is_none()
        {
            let global = rl
                .rules
                .iter()
                .position(|r| r.scope == super::Scope::Global);
            if let Some(i) = global {
                p.add(
                    format!("rate_limits.rules[{i}].scope"),
                    "\"global\" needs the shared store: store.kind = \"redis\"",
                );
            }
        }
        if let (Some(s), Some(a)) = (&server, &admin)
            && s.listeners
                .iter()
                .any(|l| l.addr == a.listen && a.listen.port() != 0)
        {
            p.add("admin.listen", "is also a gateway listener");
        }
        match (
            server,
            upstream,
            store,
            cookies,
            faults,
            rate_limits,
            cors,
            log,
            telemetry,
        ) {
            (
                Some(server),
                Some(upstream),
                Some(store),
                Some(cookies),
                Some(faults),
                Some(rate_limits),
                Some(cors),
                Some(log),
                Some(telemetry),
            ) if p.0.is_empty() => Ok(Config {
                server,
                admin,
                upstream,
                store,
                cookies,
                faults,
                rate_limits,
                cors,
                log,
                telemetry,
                compression,
            }),
            _ => Err(p.0),
        }
    }
}

fn listener(
    p: &mut Problems,
    key: &str,
    listen: &str,
    tls: Option<&RawTls>,
) -> Option<ListenerConfig> {
    let addr = p.take(address(&format!("{key}listen"), listen));
    let tls = match tls {
        None => Some(None),
        Some(t) => p.take(listener_tls(key, t)).map(Some),
    };
    Some(ListenerConfig {
        addr: addr?,
        tls: tls?,
    })
}

fn listener_tls(key: &str, t: &RawTls) -> Result<super::tls::ListenerTls, ConfigError> {
    use super::tls::{Hsts, ListenerTls, TlsSettings};
    if t.hsts_max_age_secs.is_none() && t.hsts_include_subdomains.is_some() {
        return Err(ConfigError::new(
            format!("{key}tls.hsts_include_subdomains"),
            "needs hsts_max_age_secs",
        ));
    }
    let settings = TlsSettings {
        cert_path: t.cert_path.clone(),
        key_path: t.key_path.clone(),
        ocsp_path: t.ocsp_path.clone(),
        cipher_suites: t.cipher_suites.clone(),
        prefer_server_cipher_order: t.prefer_server_cipher_order.unwrap_or(true),
        hsts: t.hsts_max_age_secs.map(|secs| Hsts {
            max_age: Duration::from_secs(secs),
            include_subdomains: t.hsts_include_subdomains.unwrap_or(false),
        }),
    };
    ListenerTls::load(settings)
        .map_err(|e| ConfigError::new(format!("{key}tls.{}", e.field()), e.to_string()))
}

fn server(p: &mut Problems, s: RawServer) -> Option<ServerConfig> {
    let mut listeners = vec![listener(p, "server.", &s.listen, s.tls.as_ref())];
    for (i, l) in s.listeners.iter().enumerate() {
        listeners.push(listener(
            p,
            &format!("server.listeners[{i}]."),
            &l.listen,
            l.tls.as_ref(),
        ));
    }
    let listeners: Option<Vec<ListenerConfig>> = listeners.into_iter().collect();
    if let Some(ls) = &listeners {
        for (i, l) in ls.iter().enumerate().skip(1) {
            if l.addr.port() != 0 && ls[..i].iter().any(|o| o.addr == l.addr) {
                p.add(
                    format!("server.listeners[{}].listen", i - 1),
                    format!("`{}` is already a listener", l.addr),
                );
            }
        }
    }
    let public_base_url = p.take(BaseUrl::parse("server.public_base_url", &s.public_base_url));
    let trusted_proxies: Vec<IpAddr> = s
        .trusted_proxies
        .iter()
        .filter_map(|t| {
            p.take(t.parse::<IpAddr>().map_err(|_| {
                ConfigError::new(
                    "server.trusted_proxies",
                    format!("`{t}` is not an IP address"),
                )
            }))
        })
        .collect();
    let request_id_header = s
        .request_id_header
        .as_deref()
        .unwrap_or(DEFAULT_REQUEST_ID_HEADER);
    let request_id_header = p.take(HeaderName::try_from(request_id_header).map_err(|_| {
        ConfigError::new(
            "server.request_id_header",
            format!("`{request_id_header}` is not a header name"),
        )
    }));
    let max_request_body = p.take(positive(
        "server.max_request_body_bytes",
        s.max_request_body_bytes,
        DEFAULT_MAX_REQUEST_BODY,
    ));
    let max_header_bytes = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
    if max_header_bytes < MIN_MAX_HEADER_BYTES {
        p.add(
            "server.max_header_bytes",
            format!("must be at least {MIN_MAX_HEADER_BYTES}"),
        );
    }
    let max_headers = p.take(positive(
        "server.max_headers",
        s.max_headers.map(|v| v as u64),
        DEFAULT_MAX_HEADERS as u64,
    ));
    let header_read_timeout = p.take(millis(
        "server.header_read_timeout_ms",
        s.header_read_timeout_ms,
        DEFAULT_HEADER_READ_TIMEOUT_MS,
    ));
    let body_idle_timeout = p.take(millis(
        "server.body_idle_timeout_ms",
        s.body_idle_timeout_ms,
        DEFAULT_BODY_IDLE_TIMEOUT_MS,
    ));
    let idle_timeout = p.take(millis(
        "server.idle_timeout_ms",
        s.idle_timeout_ms,
        DEFAULT_IDLE_TIMEOUT_MS,
    ));
    let max_connections = p.take(positive(
        "server.max_connections",
        s.max_connections.map(|v| v as u64),
        DEFAULT_MAX_CONNECTIONS as u64,
    ));
    if s.workers == Some(0) {
        p.add("server.workers", "must be greater than 0");
    }
    Some(ServerConfig {
        listeners: listeners?,
        public_base_url: public_base_url?,
        trusted_proxies,
        max_request_body: max_request_body?,
        request_id_header: request_id_header?,
        workers: s.workers,
        drain_timeout: Duration::from_secs(
            s.drain_timeout_secs.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECS),
        ),
        limits: ServerLimits {
            max_header_bytes,
            max_headers: max_headers? as usize,
            header_read_timeout: header_read_timeout?,
            body_idle_timeout: body_idle_timeout?,
            idle_timeout: idle_timeout?,
            max_connections: max_connections? as usize,
        },
    })
}

fn upstream(p: &mut Problems, u: RawUpstream) -> Option<UpstreamConfig> {
    let url = p.take(BaseUrl::parse("upstream.url", &u.url));
    let https = url
        .as_ref()
        .is_some_and(|u| *u.scheme() == http::uri::Scheme::HTTPS);
    if u.ca_file.is_some() && url.is_some() && !https {
        p.add(
            "upstream.ca_file",
            "only used with an https:// upstream.url",
        );
    }
    let http2 = u.http2.unwrap_or(false);
    let tls = p.take(
        if https {
            super::tls::client_config(u.ca_file.as_deref())
        } else {
            super::tls::unused_config()
        }
        .map_err(|e| ConfigError::new("upstream.ca_file", e)),
    );
    let rewrite_bases: Vec<BaseUrl> = u
        .rewrite_bases
        .iter()
        .filter_map(|b| p.take(BaseUrl::parse("upstream.rewrite_bases", b)))
        .collect();
    let connect_timeout = p.take(millis(
        "upstream.connect_timeout_ms",
        u.connect_timeout_ms,
        DEFAULT_CONNECT_TIMEOUT_MS,
    ));
    let response_timeout = p.take(millis(
        "upstream.response_timeout_ms",
        u.response_timeout_ms,
        DEFAULT_RESPONSE_TIMEOUT_MS,
    ));
    let request_timeout = p.take(millis(
        "upstream.request_timeout_ms",
        u.request_timeout_ms,
        DEFAULT_REQUEST_TIMEOUT_MS,
    ));
    if let (Some(resp), Some(req)) = (response_timeout, request_timeout)
        && req < resp
    {
        p.add(
            "upstream.request_timeout_ms",
            "must not be shorter than upstream.response_timeout_ms",
        );
    }
    let max_json_body = p.take(positive(
        "upstream.max_json_body_bytes",
        u.max_json_body_bytes.map(|v| v as u64),
        DEFAULT_MAX_JSON_BODY as u64,
    ));
    if u.max_connections == Some(0) {
        p.add("upstream.max_connections", "must be greater than 0");
    }
    Some(UpstreamConfig {
        url: url?,
        rewrite_bases,
        tls: tls?,
        http2,
        connect_timeout: connect_timeout?,
        response_timeout: response_timeout?,
        request_timeout: request_timeout?,
        pool_idle_timeout: Duration::from_secs(
            u.pool_idle_timeout_secs
                .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT_SECS),
        ),
        pool_max_idle_per_host: u
            .pool_max_idle_per_host
            .unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
        max_connections: u.max_connections,
        max_json_body: max_json_body? as usize,
    })
}

fn store(p: &mut Problems, mut st: RawStore) -> Option<StoreConfig> {
    let kind_name = st.kind.clone().unwrap_or_else(|| "redb".to_owned());
    if kind_name != "redis" {
        let redis_only = [
            ("store.url", st.url.is_some()),
            ("store.key_prefix", st.key_prefix.is_some()),
            ("store.pool_size", st.pool_size.is_some()),
            ("store.connect_timeout_ms", st.connect_timeout_ms.is_some()),
            ("store.command_timeout_ms", st.command_timeout_ms.is_some()),
            ("store.lease_ttl_ms", st.lease_ttl_ms.is_some()),
            ("store.on_redis_error", st.on_redis_error.is_some()),
        ];
        for (key, _) in redis_only.iter().filter(|(_, set)| *set) {
            p.add(*key, "only used with kind = \"redis\"");
        }
    }
    let kind = match kind_name.as_str() {
        "redis" => {
            if st.path.is_some() {
                p.add("store.path", "only used with kind = \"redb\"");
            }
            redis(p, &mut st).map(StoreKind::Redis)
        }
        "memory" => {
            if st.path.is_some() {
                p.add("store.path", "only used with kind = \"redb\"");
            }
            Some(StoreKind::Memory)
        }
        "redb" => {
            let path = st.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
            if path.as_os_str().is_empty() {
                p.add("store.path", "must not be empty");
                None
            } else if path.is_dir() {
                p.add(
                    "store.path",
                    format!("{} is a directory, not a file", path.display()),
                );
                None
            } else {
                Some(StoreKind::Redb { path })
            }
        }
        other => {
            p.add(
                "store.kind",
                format!(
                    "`{other}` is not a store kind; expected \"redb\", \"memory\" or \"redis\""
                ),
            );
            None
        }
    };
    let idle_expiry = p.take(secs(
        "store.idle_expiry_secs",
        st.idle_expiry_secs,
        DEFAULT_IDLE_EXPIRY_SECS,
    ));
    let sweep_interval = p.take(secs(
        "store.sweep_interval_secs",
        st.sweep_interval_secs,
        DEFAULT_SWEEP_INTERVAL_SECS,
    ));
    Some(StoreConfig {
        kind: kind?,
        idle_expiry: idle_expiry?,
        sweep_interval: sweep_interval?,
    })
}

fn cookies(p: &mut Problems, c: RawCookies) -> Option<CookieConfig> {
    let same_site = match c
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lax") => Some(SameSite::Lax),
        Some("strict") => Some(SameSite::Strict),
        Some("none") => Some(SameSite::None),
        Some("omit") => None,
        Some(other) => {
            p.add(
                "cookies.same_site",
                format!("`{other}` is not one of \"lax\", \"strict\", \"none\", \"omit\""),
            );
            return None;
        }
    };
    let secure = c.secure.unwrap_or(false);
    if same_site == Some(SameSite::None) && !secure {
        p.add(
            "cookies.same_site",
            "\"none\" requires cookies.secure = true",
        );
        return None;
    }
    Some(CookieConfig {
        http_only: c.http_only.unwrap_or(true),
        secure,
        same_site,
        max_age: c.max_age_secs.map(Duration::from_secs),
    })
}

fn faults(p: &mut Problems, f: RawFaults) -> Option<FaultsConfig> {
    let mut overrides = Vec::new();
    for (status, name) in f.types {
        let key = format!("faults.types.{status}");
        match status
            .parse::<u16>()
            .ok()
            .filter(|c| (400..=599).contains(c))
        {
            None => p.add(&key, "must be an error status, 400 to 599"),
            Some(_)
                if name.is_empty()
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                p.add(
                    &key,
                    format!("`{name}` is not a fault type name (letters, digits, _)"),
                )
            }
            Some(code) => overrides.push((code, name)),
        }
    }
    let max_upstream_body = p.take(positive(
        "faults.max_upstream_body_bytes",
        f.max_upstream_body_bytes.map(|v| v as u64),
        DEFAULT_MAX_UPSTREAM_FAULT_BYTES as u64,
    ));
    Some(FaultsConfig {
        types: super::FaultTypes::with(overrides),
        max_upstream_body: max_upstream_body? as usize,
    })
}

fn rate_limits(p: &mut Problems, rl: RawRateLimits) -> Option<RateLimitsConfig> {
    let sweep_interval = p.take(secs(
        "rate_limits.sweep_interval_secs",
        rl.sweep_interval_secs,
        DEFAULT_RATE_LIMIT_SWEEP_SECS,
    ));
    let mut names = std::collections::HashSet::new();
    for (i, r) in rl.rules.iter().enumerate() {
        if !names.insert(r.name.as_str()) {
            p.add(
                format!("rate_limits.rules[{i}].name"),
                format!("`{}` names another rule too", r.name),
            );
        }
    }
    let on_redis_error = p.take(on_redis_error(
        "rate_limits.on_redis_error",
        rl.on_redis_error.as_deref(),
        OnRedisError::FailOpen,
    ));
    let count = rl.rules.len();
    let rules: Vec<_> = rl
        .rules
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| rule(p, i, r))
        .collect();
    Some(RateLimitsConfig {
        sweep_interval: sweep_interval?,
        on_redis_error: on_redis_error?,
        local_precheck: rl.local_precheck.unwrap_or(true),
        rules: Some(rules).filter(|r| r.len() == count)?,
    })
}

/// Why a path pattern can never match a request path, if it cannot.
fn never_matches(pattern: &str) -> Option<&'static str> {
    if pattern.contains(['?', '#']) {
        Some("request paths never contain `?` or `#` (the query is not matched)")
    } else if pattern.contains(char::is_whitespace) {
        Some("request paths never contain whitespace")
    } else if pattern.contains("//") {
        Some("request paths with an empty segment are refused")
    } else if pattern.split('/').any(|s| s == "." || s == "..") {
        Some("request paths with `.` or `..` segments are refused")
    } else {
        None
    }
}

fn rule(p: &mut Problems, i: usize, r: RawRule) -> Option<super::RuleSpec> {
    use super::{KeyKind, PathPattern, RuleSpec, Scope};
    use std::num::NonZeroU32;
    let key = |field: &str| format!("rate_limits.rules[{i}].{field}");
    let before = p.0.len();
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        p.add(
            key("name"),
            format!("`{}` must be letters, digits, - _ .", r.name),
        );
    }
    let methods: Vec<http::Method> = r
        .methods
        .iter()
        .filter_map(|m| {
            p.take(
                http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ConfigError::new(key("methods"), format!("`{m}` is not an HTTP method"))
                }),
            )
        })
        .collect();
    if r.paths.is_empty() {
        p.add(key("paths"), "needs at least one pattern");
    }
    let paths: Vec<PathPattern> = r
        .paths
        .iter()
        .filter_map(|pat| match (PathPattern::parse(pat), never_matches(pat)) {
            (None, _) => {
                p.add(
                    key("paths"),
                    format!("`{pat}` is not a pattern: `/exact`, `/prefix/*` or `*`"),
                );
                None
            }
            (Some(_), Some(why)) => {
                p.add(key("paths"), format!("`{pat}` can never match: {why}"));
                None
            }
            (Some(pattern), None) => Some(pattern),
        })
        .collect();
    let kind = match r.key.as_str() {
        "owner" => Some(KeyKind::Owner),
        "client_ip" => Some(KeyKind::ClientIp),
        "principal" => Some(KeyKind::Principal),
        other => match other.strip_prefix("header:").map(HeaderName::try_from) {
            Some(Ok(name)) => Some(KeyKind::Header(name)),
            _ => {
                p.add(
                    key("key"),
                    format!(
                        "`{other}` is not \"owner\", \"client_ip\", \"principal\" or \"header:<name>\""
                    ),
                );
                None
            }
        },
    };
    let rate = NonZeroU32::new(r.rate);
    if rate.is_none() {
        p.add(key("rate"), "must be greater than 0");
    }
    if r.per_secs == 0 {
        p.add(key("per_secs"), "must be greater than 0");
    }
    let burst = NonZeroU32::new(r.burst.unwrap_or(r.rate));
    if burst.is_none() && r.burst.is_some() {
        p.add(key("burst"), "must be greater than 0");
    }
    let max_keys = r.max_keys.unwrap_or(DEFAULT_RATE_LIMIT_MAX_KEYS);
    if max_keys == 0 {
        p.add(key("max_keys"), "must be greater than 0");
    }
    let scope = match r.scope.as_deref() {
        None | Some("local") => Some(Scope::Local),
        Some("global") => Some(Scope::Global),
        Some(other) => {
            p.add(
                key("scope"),
                format!("`{other}` is not \"local\" or \"global\""),
            );
            None
        }
    };
    if p.0.len() != before {
        return None;
    }
    Some(RuleSpec {
        name: r.name,
        methods,
        paths,
        key: kind?,
        rate: rate?,
        per: Duration::from_secs(r.per_secs),
        burst: burst?,
        max_keys,
        scope: scope?,
    })
}

fn cors(p: &mut Problems, c: RawCors) -> Option<super::CorsConfig> {
    let before = p.0.len();
    let mut cors = super::CorsConfig::default();
    for origin in &c.allowed_origins {
        let value = BaseUrl::parse("cors.allowed_origins", origin).and_then(|base| {
            HeaderValue::from_str(base.as_str()).map_err(|_| {
                ConfigError::new(
                    "cors.allowed_origins",
                    format!("`{origin}` is not an origin"),
                )
            })
        });
        if let Some(v) = p.take(value) {
            cors.allowed_origins.push(v);
        }
    }
    if let Some(h) = &c.allow_headers {
        cors.allow_headers = p.take(header_list("cors.allow_headers", h));
    }
    if let Some(h) = &c.expose_headers
        && let Some(v) = p.take(header_list("cors.expose_headers", h))
    {
        cors.expose_headers = v;
    }
    if let Some(age) = c.max_age_secs {
        cors.max_age_secs = age;
    }
    (p.0.len() == before).then_some(cors)
}

fn log(p: &mut Problems, l: RawLog) -> Option<LogConfig> {
    let format = match l.format.as_deref().unwrap_or("text") {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.add(
                "log.format",
                format!("`{other}` is not \"text\" or \"json\""),
            );
            return None;
        }
    };
    Some(LogConfig {
        format,
        access_log: l.access_log.unwrap_or(true),
    })
}

pub const DEFAULT_OTLP_SERVICE_NAME: &str = "ordergate";
pub const DEFAULT_OTLP_TIMEOUT_MS: u64 = 10_000;

fn telemetry(p: &mut Problems, t: RawTelemetry) -> Option<TelemetryConfig> {
    let Some(o) = t.otlp else {
        return Some(TelemetryConfig::default());
    };
    let before = p.0.len();
    match o.protocol.as_deref().unwrap_or("http/protobuf") {
        "http/protobuf" => {}
        "grpc" => p.add(
            "telemetry.otlp.protocol",
            "\"grpc\" is not built in (it would bring a gRPC stack): use \"http/protobuf\", which every OpenTelemetry collector accepts (port 4318)",
        ),
        other => p.add(
            "telemetry.otlp.protocol",
            format!("`{other}` is not \"http/protobuf\""),
        ),
    }
    // A base URL gets the traces path, as OTEL_EXPORTER_OTLP_ENDPOINT does;
    // a URL with a path is used as it is.
    let traces_url = match o.endpoint.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("https") => {
            p.add(
                "telemetry.otlp.endpoint",
                "https:// is not built into the exporter: send to a collector or agent on http:// (local or on a private network)",
            );
            String::new()
        }
        Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {
            if matches!(uri.path(), "" | "/") {
                format!("{}/v1/traces", o.endpoint.trim_end_matches('/'))
            } else {
                o.endpoint.clone()
            }
        }
        _ => {
            p.add(
                "telemetry.otlp.endpoint",
                format!("`{}` is not an http:// URL", o.endpoint),
            );
            String::new()
        }
    };
    let sampling_ratio = o.sampling_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sampling_ratio) {
        p.add("telemetry.otlp.sampling_ratio", "must be between 0 and 1");
    }
    let service_name = o
        .service_name
        .unwrap_or_else(|| DEFAULT_OTLP_SERVICE_NAME.to_owned());
    if service_name.trim().is_empty() {
        p.add("telemetry.otlp.service_name", "must not be empty");
    }
    let timeout = p.take(millis(
        "telemetry.otlp.timeout_ms",
        o.timeout_ms,
        DEFAULT_OTLP_TIMEOUT_MS,
    ));
    (p.0.len() == before).then_some(())?;
    Some(TelemetryConfig {
        otlp: Some(OtlpConfig {
            traces_url,
            sampling_ratio,
            service_name,
            timeout: timeout?,
        }),
    })
}

/// Pulls the field name out of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_owned)
}
