//! The serde mirror of the TOML file, and its validation into [`Config`].

use super::*;
use http::HeaderValue;
use serde::Deserialize;

pub const DEFAULT_STORE_PATH: &str = "data/owners.redb";
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 1024 * 1024;
pub const DEFAULT_MAX_JSON_BODY: usize = 1024 * 1024;
pub const DEFAULT_REQUEST_ID_HEADER: &str = "x-request-id";
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 30_000;
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
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_MAX_UPSTREAM_FAULT_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    server: RawServer,
    upstream: RawUpstream,
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    access_log: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allowed_origins: Vec<String>,
    allow_headers: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age_secs: Option<u64>,
}

fn header_list(key: &str, names: &[String]) -> Result<HeaderValue, ConfigError> {
    for n in names {
        HeaderName::try_from(n.as_str())
            .map_err(|_| ConfigError::new(key, format!("`{n}` is not a header name")))?;
    }
    HeaderValue::from_str(&names.join(", "))
        .map_err(|_| ConfigError::new(key, "not a valid header list"))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    sweep_interval_secs: Option<u64>,
    on_redis_error: Option<String>,
    local_precheck: Option<bool>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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

pub const DEFAULT_RATE_LIMIT_SWEEP_SECS: u64 = 10;
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = 100_000;
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "ordergate:";
pub const DEFAULT_REDIS_POOL_SIZE: usize = 4;
pub const MAX_REDIS_POOL_SIZE: usize = 64;
pub const DEFAULT_REDIS_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_REDIS_COMMAND_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_REDIS_LEASE_TTL_MS: u64 = 10_000;

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

fn rule(i: usize, r: RawRule) -> Result<crate::policy::rate_limit::RuleSpec, ConfigError> {
    use crate::policy::rate_limit::{KeyKind, PathPattern, RuleSpec, Scope};
    use std::num::NonZeroU32;
    let key = |field: &str| format!("rate_limits.rules[{i}].{field}");
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(ConfigError::new(
            key("name"),
            format!("`{}` must be letters, digits, - _ .", r.name),
        ));
    }
    let methods = r
        .methods
        .iter()
        .map(|m| {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                ConfigError::new(key("methods"), format!("`{m}` is not an HTTP method"))
            })
        })
        .collect::<Result<_, _>>()?;
    if r.paths.is_empty() {
        return Err(ConfigError::new(key("paths"), "needs at least one pattern"));
    }
    let paths = r
        .paths
        .iter()
        .map(|p| {
            PathPattern::parse(p).ok_or_else(|| {
                ConfigError::new(
                    key("paths"),
                    format!("`{p}` is not a pattern: `/exact`, `/prefix/*` or `*`"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let kind = match r.key.as_str() {
        "owner" => KeyKind::Owner,
        "client_ip" => KeyKind::ClientIp,
        "principal" => KeyKind::Principal,
        other => match other.strip_prefix("header:").map(HeaderName::try_from) {
            Some(Ok(name)) => KeyKind::Header(name),
            _ => {
                return Err(ConfigError::new(
                    key("key"),
                    format!(
                        "`{other}` is not \"owner\", \"client_ip\", \"principal\" or \"header:<name>\""
                    ),
                ));
            }
        },
    };
    let rate = NonZeroU32::new(r.rate)
        .ok_or_else(|| ConfigError::new(key("rate"), "must be greater than 0"))?;
    if r.per_secs == 0 {
        return Err(ConfigError::new(key("per_secs"), "must be greater than 0"));
    }
    let burst = NonZeroU32::new(r.burst.unwrap_or(r.rate))
        .ok_or_else(|| ConfigError::new(key("burst"), "must be greater than 0"))?;
    let max_keys = r.max_keys.unwrap_or(DEFAULT_RATE_LIMIT_MAX_KEYS);
    if max_keys == 0 {
        return Err(ConfigError::new(key("max_keys"), "must be greater than 0"));
    }
    let scope = match r.scope.as_deref() {
        None | Some("local") => Scope::Local,
        Some("global") => Scope::Global,
        Some(other) => {
            return Err(ConfigError::new(
                key("scope"),
                format!("`{other}` is not \"local\" or \"global\""),
            ));
        }
    };
    Ok(RuleSpec {
        name: r.name,
        methods,
        paths,
        key: kind,
        rate,
        per: Duration::from_secs(r.per_secs),
        burst,
        max_keys,
        scope,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    #[serde(default)]
    types: std::collections::BTreeMap<String, String>,
    max_upstream_body_bytes: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
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
    max_connections: Option<usize>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_path: PathBuf,
    key_path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    #[serde(default)]
    rewrite_bases: Vec<String>,
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    pool_idle_timeout_secs: Option<u64>,
    pool_max_idle_per_host: Option<usize>,
    max_json_body_bytes: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
struct RawCookies {
    http_only: Option<bool>,
    secure: Option<bool>,
    same_site: Option<String>,
    max_age_secs: Option<u64>,
}

fn positive(key: &str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError::new(key, "must be greater than 0")),
        n => Ok(n),
    }
}

impl Raw {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| ConfigError::new("(file)", format!("invalid TOML: {}", e.message())))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
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
        })
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        let s = self.server;
        let listen = s.listen.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new(
                "server.listen",
                format!("`{}` is not an address:port: {e}", s.listen),
            )
        })?;
        let public_base_url = BaseUrl::parse("server.public_base_url", &s.public_base_url)?;
        let trusted_proxies = s
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<IpAddr>().map_err(|_| {
                    ConfigError::new(
                        "server.trusted_proxies",
                        format!("`{p}` is not an IP address"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let request_id_header = s
            .request_id_header
            .as_deref()
            .unwrap_or(DEFAULT_REQUEST_ID_HEADER);
        let request_id_header = HeaderName::try_from(request_id_header).map_err(|_| {
            ConfigError::new(
                "server.request_id_header",
                format!("`{request_id_header}` is not a header name"),
            )
        })?;
        let server = ServerConfig {
            listen,
            public_base_url,
            trusted_proxies,
            max_request_body: positive(
                "server.max_request_body_bytes",
                s.max_request_body_bytes,
                DEFAULT_MAX_REQUEST_BODY,
            )?,
            request_id_header,
            drain_timeout: Duration::from_secs(
                s.drain_timeout_secs.unwrap_or(DEFAULT_DRAIN_TIMEOUT_SECS),
            ),
            tls: match &s.tls {
                None => None,
                Some(t) => Some(
                    crate::server::tls::server_config(&t.cert_path, &t.key_path).map_err(|e| {
                        let key = match e {
                            crate::server::tls::TlsError::Cert(_) => "server.tls.cert_path",
                            crate::server::tls::TlsError::Key(_) => "server.tls.key_path",
                        };
                        ConfigError::new(key, e.to_string())
                    })?,
                ),
            },
            limits: ServerLimits {
                max_header_bytes: {
                    let v = s.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
                    if v < MIN_MAX_HEADER_BYTES {
                        return Err(ConfigError::new(
                            "server.max_header_bytes",
                            format!("must be at least {MIN_MAX_HEADER_BYTES}"),
                        ));
                    }
                    v
                },
                max_headers: positive(
                    "server.max_headers",
                    s.max_headers.map(|v| v as u64),
                    DEFAULT_MAX_HEADERS as u64,
                )? as usize,
                header_read_timeout: Duration::from_millis(positive(
                    "server.header_read_timeout_ms",
                    s.header_read_timeout_ms,
                    DEFAULT_HEADER_READ_TIMEOUT_MS,
                )?),
                body_idle_timeout: Duration::from_millis(positive(
                    "server.body_idle_timeout_ms",
                    s.body_idle_timeout_ms,
                    DEFAULT_BODY_IDLE_TIMEOUT_MS,
                )?),
                max_connections: positive(
                    "server.max_connections",
                    s.max_connections.map(|v| v as u64),
                    DEFAULT_MAX_CONNECTIONS as u64,
                )? as usize,
            },
        };

        let u = self.upstream;
        let url = BaseUrl::parse("upstream.url", &u.url)?;
        if *url.scheme() != http::uri::Scheme::HTTP {
            return Err(ConfigError::new(
                "upstream.url",
                "only http:// upstreams are supported",
            ));
        }
        let rewrite_bases = u
            .rewrite_bases
            .iter()
            .map(|b| BaseUrl::parse("upstream.rewrite_bases", b))
            .collect::<Result<_, _>>()?;
        let upstream = UpstreamConfig {
            url,
            rewrite_bases,
            connect_timeout: Duration::from_millis(positive(
                "upstream.connect_timeout_ms",
                u.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
            )?),
            response_timeout: Duration::from_millis(positive(
                "upstream.response_timeout_ms",
                u.response_timeout_ms,
                DEFAULT_RESPONSE_TIMEOUT_MS,
            )?),
            pool_idle_timeout: Duration::from_secs(
                u.pool_idle_timeout_secs
                    .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT_SECS),
            ),
            pool_max_idle_per_host: u
                .pool_max_idle_per_host
                .unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
            max_json_body: positive(
                "upstream.max_json_body_bytes",
                u.max_json_body_bytes.map(|v| v as u64),
                DEFAULT_MAX_JSON_BODY as u64,
            )? as usize,
        };

        let st = self.store;
        let kind_name = st.kind.as_deref().unwrap_or("redb");
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
            if let Some((key, _)) = redis_only.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(*key, "only used with kind = \"redis\""));
            }
        }
        let kind = match kind_name {
            "memory" => {
                if st.path.is_some() {
                    return Err(ConfigError::new(
                        "store.path",
                        "only used with kind = \"redb\"",
                    ));
                }
                StoreKind::Memory
            }
            "redb" => {
                let path = st.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
                if path.as_os_str().is_empty() {
                    return Err(ConfigError::new("store.path", "must not be empty"));
                }
                StoreKind::Redb { path }
            }
            "redis" => {
                if st.path.is_some() {
                    return Err(ConfigError::new(
                        "store.path",
                        "only used with kind = \"redb\"",
                    ));
                }
                let url = st.url.ok_or_else(|| {
                    ConfigError::new("store.url", "required with kind = \"redis\"")
                })?;
                let pool_size = positive(
                    "store.pool_size",
                    st.pool_size.map(|v| v as u64),
                    DEFAULT_REDIS_POOL_SIZE as u64,
                )? as usize;
                if pool_size > MAX_REDIS_POOL_SIZE {
                    return Err(ConfigError::new(
                        "store.pool_size",
                        format!("must be at most {MAX_REDIS_POOL_SIZE}"),
                    ));
                }
                StoreKind::Redis(RedisConfig {
                    url: redis_url("store.url", &url)?,
                    key_prefix: key_prefix("store.key_prefix", st.key_prefix)?,
                    pool_size,
                    connect_timeout: Duration::from_millis(positive(
                        "store.connect_timeout_ms",
                        st.connect_timeout_ms,
                        DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
                    )?),
                    command_timeout: Duration::from_millis(positive(
                        "store.command_timeout_ms",
                        st.command_timeout_ms,
                        DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
                    )?),
                    lease_ttl: Duration::from_millis(positive(
                        "store.lease_ttl_ms",
                        st.lease_ttl_ms,
                        DEFAULT_REDIS_LEASE_TTL_MS,
                    )?),
                    on_error: on_redis_error(
                        "store.on_redis_error",
                        st.on_redis_error.as_deref(),
                        OnRedisError::FailClosed,
                    )?,
                })
            }
            other => {
                return Err(ConfigError::new(
                    "store.kind",
                    format!(
                        "`{other}` is not a store kind; expected \"redb\", \"memory\" or \"redis\""
                    ),
                ));
            }
        };
        let store = StoreConfig {
            kind,
            idle_expiry: Duration::from_secs(positive(
                "store.idle_expiry_secs",
                st.idle_expiry_secs,
                DEFAULT_IDLE_EXPIRY_SECS,
            )?),
            sweep_interval: Duration::from_secs(positive(
                "store.sweep_interval_secs",
                st.sweep_interval_secs,
                DEFAULT_SWEEP_INTERVAL_SECS,
            )?),
        };

        let c = self.cookies;
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
                return Err(ConfigError::new(
                    "cookies.same_site",
                    format!("`{other}` is not one of \"lax\", \"strict\", \"none\", \"omit\""),
                ));
            }
        };
        let secure = c.secure.unwrap_or(false);
        if same_site == Some(SameSite::None) && !secure {
            return Err(ConfigError::new(
                "cookies.same_site",
                "\"none\" requires cookies.secure = true",
            ));
        }
        let cookies = CookieConfig {
            http_only: c.http_only.unwrap_or(true),
            secure,
            same_site,
            max_age: c.max_age_secs.map(Duration::from_secs),
        };

        let f = self.faults;
        let mut overrides = Vec::new();
        for (status, name) in f.types {
            let key = format!("faults.types.{status}");
            let code = status
                .parse::<u16>()
                .ok()
                .filter(|c| (400..=599).contains(c))
                .ok_or_else(|| ConfigError::new(&key, "must be an error status, 400 to 599"))?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(
                    &key,
                    format!("`{name}` is not a fault type name (letters, digits, _)"),
                ));
            }
            overrides.push((code, name));
        }
        let faults = FaultsConfig {
            types: crate::faults::FaultTypes::with(overrides),
            max_upstream_body: positive(
                "faults.max_upstream_body_bytes",
                f.max_upstream_body_bytes.map(|v| v as u64),
                DEFAULT_MAX_UPSTREAM_FAULT_BYTES as u64,
            )? as usize,
        };

        let rl = self.rate_limits;
        let rate_limits = RateLimitsConfig {
            sweep_interval: Duration::from_secs(positive(
                "rate_limits.sweep_interval_secs",
                rl.sweep_interval_secs,
                DEFAULT_RATE_LIMIT_SWEEP_SECS,
            )?),
            on_redis_error: on_redis_error(
                "rate_limits.on_redis_error",
                rl.on_redis_error.as_deref(),
                OnRedisError::FailOpen,
            )?,
            local_precheck: rl.local_precheck.unwrap_or(true),
            rules: rl
                .rules
                .into_iter()
                .enumerate()
                .map(|(i, r)| rule(i, r))
                .collect::<Result<_, _>>()?,
        };
        if store.redis().is_none() {
            let global = rate_limits
                .rules
                .iter()
                .position(|r| r.scope == crate::policy::rate_limit::Scope::Global);
            if let Some(i) = global {
                return Err(ConfigError::new(
                    format!("rate_limits.rules[{i}].scope"),
                    "\"global\" needs the shared store: store.kind = \"redis\"",
                ));
            }
        }

        let c = self.cors;
        let mut cors = crate::cors::CorsConfig::default();
        for origin in &c.allowed_origins {
            let base = BaseUrl::parse("cors.allowed_origins", origin)?;
            let value = HeaderValue::from_str(base.as_str()).map_err(|_| {
                ConfigError::new(
                    "cors.allowed_origins",
                    format!("`{origin}` is not an origin"),
                )
            })?;
            cors.allowed_origins.push(value);
        }
        if let Some(h) = &c.allow_headers {
            cors.allow_headers = Some(header_list("cors.allow_headers", h)?);
        }
        if let Some(h) = &c.expose_headers {
            cors.expose_headers = header_list("cors.expose_headers", h)?;
        }
        if let Some(age) = c.max_age_secs {
            cors.max_age_secs = age;
        }

        let log = LogConfig {
            format: match self.log.format.as_deref().unwrap_or("text") {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::new(
                        "log.format",
                        format!("`{other}` is not \"text\" or \"json\""),
                    ));
                }
            },
            access_log: self.log.access_log.unwrap_or(true),
        };

        Ok(Config {
            server,
            upstream,
            store,
            cookies,
            faults,
            rate_limits,
            cors,
            log,
        })
    }
}

/// Pulls the field name out of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_owned)
}
