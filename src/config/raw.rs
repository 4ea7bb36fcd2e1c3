//! The serde mirror of the TOML file, and its validation into [`Config`].
//!
//! Reading goes on past a problem, so that `ordergate check` can report
//! every problem of a file at once. The file is first read as a TOML table
//! (environment overrides are applied to it, see [`super::env`]); then each
//! section, and each element of `server.listeners` and
//! `rate_limits.rules`, is deserialized on its own. A key of the wrong type,
//! or an unknown key, is noted and taken out, and the section read again, so
//! one such problem hides nothing else. Validation then reports every
//! problem of the sections that could be read: each collects its problems in
//! [`Problems`] and is built only when it has none.

use super::units::{Millis, Secs, Size};
use super::*;
use http::HeaderValue;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

pub const DEFAULT_STORE_PATH: &str = "data/owners.redb";
pub const DEFAULT_MAX_REQUEST_BODY: u64 = 1024 * 1024;
pub const DEFAULT_MAX_JSON_BODY: usize = 1024 * 1024;
pub const DEFAULT_REQUEST_ID_HEADER: &str = "x-request-id";
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_POOL_IDLE_TIMEOUT_SECS: u64 = 90;
/// Time each of the upstream's addresses gets to take a connection.
pub const DEFAULT_CONNECT_ATTEMPT_TIMEOUT_MS: u64 = 1_000;
/// Idle time before TCP keepalive probes on upstream connections.
pub const DEFAULT_TCP_KEEPALIVE_SECS: u64 = 60;
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
/// Connections the kernel queues before they are accepted (its own cap,
/// `net.core.somaxconn`, may lower it).
pub const DEFAULT_LISTEN_BACKLOG: u32 = 1024;
pub const MAX_LISTEN_BACKLOG: u32 = 65_535;
pub const DEFAULT_FIRST_BYTE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_PROTOCOL_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_HTTP2_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT_MS: u64 = 10_000;
/// nginx's `http2_max_concurrent_streams`.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// hyper's own defaults for the two reset limits.
pub const DEFAULT_HTTP2_MAX_PENDING_RESETS: usize = 20;
pub const DEFAULT_HTTP2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
pub const DEFAULT_MAX_UPSTREAM_FAULT_BYTES: usize = 64 * 1024;
pub const DEFAULT_RATE_LIMIT_SWEEP_SECS: u64 = 10;
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = 100_000;
pub const DEFAULT_REDIS_KEY_PREFIX: &str = "ordergate:";
pub const DEFAULT_REDIS_POOL_SIZE: usize = 4;
pub const MAX_REDIS_POOL_SIZE: usize = 64;
pub const DEFAULT_REDIS_ORDER_CACHE: usize = 65_536;
pub const MAX_REDIS_ORDER_CACHE: usize = 10_000_000;
pub const DEFAULT_REDIS_CONNECT_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_REDIS_COMMAND_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_REDIS_LEASE_TTL_MS: u64 = 10_000;
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Keys whose values are secrets: never printed, and a problem with one
/// never repeats its value.
pub const SECRET_KEYS: &[&str] = &["store.url", "store.password", "admin.token"];

/// The sections of the file, each `None` when it could not be read (its
/// problems are noted).
pub struct Raw {
    server: Option<RawServer>,
    upstream: Option<RawUpstream>,
    /// Absent `[admin]`: `Some(None)`.
    admin: Option<Option<RawAdmin>>,
    store: Option<RawStore>,
    cookies: Option<RawCookies>,
    faults: Option<RawFaults>,
    rate_limits: Option<RawRateLimits>,
    cors: Option<RawCors>,
    log: Option<RawLog>,
    telemetry: Option<RawTelemetry>,
    compression: Option<RawCompression>,
}

pub const SECTIONS: &[&str] = &[
    "server",
    "upstream",
    "admin",
    "store",
    "cookies",
    "faults",
    "rate_limits",
    "cors",
    "log",
    "telemetry",
    "compression",
];

/// `[telemetry]`; `[telemetry.otlp]` switches trace export on.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp: Option<RawOtlp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: String,
    protocol: Option<String>,
    sampling_ratio: Option<f64>,
    service_name: Option<String>,
    timeout_ms: Option<Millis>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls: Option<RawTls>,
    /// More listeners, each plain or TLS; each read on its own.
    #[serde(default)]
    listeners: Vec<toml::Value>,
    public_base_url: String,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    max_request_body_bytes: Option<Size>,
    request_id_header: Option<String>,
    drain_timeout_secs: Option<Secs>,
    max_header_bytes: Option<Size>,
    max_headers: Option<usize>,
    header_read_timeout_ms: Option<Millis>,
    body_idle_timeout_ms: Option<Millis>,
    idle_timeout_ms: Option<Millis>,
    max_connections: Option<usize>,
    workers: Option<usize>,
    worker_mode: Option<String>,
    listen_backlog: Option<u32>,
    first_byte_timeout_ms: Option<Millis>,
    tls_handshake_timeout_ms: Option<Millis>,
    protocol_timeout_ms: Option<Millis>,
    http2_handshake_timeout_ms: Option<Millis>,
    http2_keep_alive_interval_ms: Option<Millis>,
    http2_keep_alive_timeout_ms: Option<Millis>,
    http2_max_concurrent_streams: Option<u32>,
    http2_max_pending_reset_streams: Option<usize>,
    http2_max_local_error_reset_streams: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    listen: String,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    ocsp_path: Option<PathBuf>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_order: Option<bool>,
    hsts_max_age_secs: Option<Secs>,
    hsts_include_subdomains: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: String,
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: String,
    #[serde(default)]
    rewrite_bases: Vec<String>,
    ca_file: Option<PathBuf>,
    http2: Option<bool>,
    connect_timeout_ms: Option<Millis>,
    connect_attempt_timeout_ms: Option<Millis>,
    tcp_keepalive_secs: Option<Secs>,
    response_timeout_ms: Option<Millis>,
    request_timeout_ms: Option<Millis>,
    pool_idle_timeout_secs: Option<Secs>,
    pool_max_idle_per_host: Option<usize>,
    max_connections: Option<usize>,
    max_json_body_bytes: Option<Size>,
}

/// `[store]`: the keys of every kind, and the kind's own.
struct RawStore {
    kind: RawStoreKind,
    common: RawStoreCommon,
}

/// `store.kind`, read by serde: its message lists the kinds.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum StoreKindName {
    Redb,
    Memory,
    Redis,
}

/// One struct per store kind, holding only that kind's keys.
enum RawStoreKind {
    Redb(RawRedb),
    Memory(RawMemory),
    Redis(RawRedis),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStoreCommon {
    idle_expiry_secs: Option<Secs>,
    sweep_interval_secs: Option<Secs>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedb {
    path: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMemory {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<String>,
    ca_file: Option<PathBuf>,
    password: Option<String>,
    key_prefix: Option<String>,
    pool_size: Option<usize>,
    order_cache_entries: Option<usize>,
    connect_timeout_ms: Option<Millis>,
    command_timeout_ms: Option<Millis>,
    lease_ttl_ms: Option<Millis>,
    on_redis_error: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCookies {
    http_only: Option<bool>,
    secure: Option<bool>,
    same_site: Option<String>,
    max_age_secs: Option<Secs>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    #[serde(default)]
    types: std::collections::BTreeMap<String, String>,
    max_upstream_body_bytes: Option<Size>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    sweep_interval_secs: Option<Secs>,
    on_redis_error: Option<String>,
    local_precheck: Option<bool>,
    /// Each read on its own.
    #[serde(default)]
    rules: Vec<toml::Value>,
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
    per_secs: Secs,
    burst: Option<u32>,
    max_keys: Option<usize>,
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default)]
    allowed_origins: Vec<String>,
    allow_headers: Option<Vec<String>>,
    expose_headers: Option<Vec<String>>,
    max_age_secs: Option<Secs>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCompression {
    enabled: Option<bool>,
    min_size_bytes: Option<Size>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
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

/// The field names of a struct, as serde sees them (so that the lists of
/// each store kind's keys cannot drift from the structs).
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::value::Error;
    struct Grab<'a>(&'a std::cell::Cell<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Grab<'_> {
        type Error = Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            self.0.set(fields);
            Err(serde::de::Error::custom("fields taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let cell = std::cell::Cell::new(&[][..]);
    let _ = T::deserialize(Grab(&cell));
    cell.get()
}

/// Reads `value` as a `T`, naming problems from `key` down. A value of the
/// wrong type, an unknown key or a table missing a key is noted and taken
/// out, and the rest read again; `None` when the value cannot be read at all.
fn read<T: DeserializeOwned>(p: &mut Problems, key: &str, mut value: toml::Value) -> Option<T> {
    let full = |path: &[Segment]| -> String {
        let mut k = key.to_owned();
        for s in path {
            match s {
                Segment::Map { key } => {
                    if !k.is_empty() {
                        k.push('.');
                    }
                    k.push_str(key);
                }
                Segment::Seq { index } => k.push_str(&format!("[{index}]")),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        k
    };
    let mut noted: Vec<String> = Vec::new();
    // Each round takes one value out: bounded by the size of the section.
    for _ in 0..1024 {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let path: Vec<Segment> = e.path().iter().cloned().collect();
        let message = e.into_inner().message().to_owned();
        // A missing field is reported one level up: name the field itself.
        let (path, problem_key, reason) =
            if let Some(field) = quoted_after(&message, "unknown field `") {
                let mut at = path.clone();
                if !matches!(at.last(), Some(Segment::Map { key }) if *key == field) {
                    at.push(Segment::Map { key: field });
                }
                let k = full(&at);
                (at, k, "unknown field".to_owned())
            } else if let Some(field) = quoted_after(&message, "missing field `") {
                let mut at = path.clone();
                at.push(Segment::Map { key: field });
                let k = full(&at);
                // A table missing a key cannot be read: take the table out.
                (path, k, message)
            } else {
                let k = full(&path);
                let reason = if SECRET_KEYS.contains(&k.as_str()) {
                    // serde's message may quote the value.
                    "must be a string".to_owned()
                } else {
                    message
                };
                (path, k, reason)
            };
        // A key taken out for its type is then missing: said once.
        let said = |n: &String| problem_key == *n || problem_key.starts_with(&format!("{n}."));
        if !noted.iter().any(said) {
            p.add(&problem_key, reason);
            noted.push(problem_key);
        }
        if !remove(&mut value, &path) {
            return None;
        }
    }
    None
}

/// The name quoted after `prefix` in serde's message.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_owned)
}

/// Takes out the value at `path`; false when there is none (the root
/// included).
fn remove(v: &mut toml::Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = v;
    for s in parents {
        let next = match (at, s) {
            (toml::Value::Table(t), Segment::Map { key }) => t.get_mut(key),
            (toml::Value::Array(a), Segment::Seq { index }) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    match (at, last) {
        (toml::Value::Table(t), Segment::Map { key }) => t.remove(key).is_some(),
        (toml::Value::Array(a), Segment::Seq { index }) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
    }
}

/// Reads `[store]`: the kind (redb when absent), the keys every kind has,
/// and the kind's own keys. Keys of other kinds are ignored with a warning,
/// so that switching `kind` needs no other edit.
fn read_store(
    p: &mut Problems,
    warnings: &mut Vec<ConfigError>,
    v: toml::Value,
) -> Option<RawStore> {
    let toml::Value::Table(mut t) = v else {
        p.add("store", "must be a table");
        return None;
    };
    let kind = match t.remove("kind") {
        None => Some(StoreKindName::Redb),
        Some(k) => read::<StoreKindName>(p, "store.kind", k),
    };
    let mut common = toml::Table::new();
    for f in field_names::<RawStoreCommon>() {
        if let Some(v) = t.remove(*f) {
            common.insert((*f).to_owned(), v);
        }
    }
    let common = read::<RawStoreCommon>(p, "store", toml::Value::Table(common));
    let kind = kind?;
    let kinds = [
        (StoreKindName::Redb, "redb", field_names::<RawRedb>()),
        (StoreKindName::Memory, "memory", field_names::<RawMemory>()),
        (StoreKindName::Redis, "redis", field_names::<RawRedis>()),
    ];
    let own = kinds
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map_or(&[][..], |(_, _, f)| *f);
    let (name, _) = kinds
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map_or(("", ()), |(_, n, _)| (*n, ()));
    for (other, other_name, fields) in &kinds {
        if *other == kind {
            continue;
        }
        for f in *fields {
            if !own.contains(f) && t.remove(*f).is_some() {
                warnings.push(ConfigError::new(
                    format!("store.{f}"),
                    format!("ignored: used with kind = \"{other_name}\", not \"{name}\""),
                ));
            }
        }
    }
    let rest = toml::Value::Table(t);
    let kind = match kind {
        StoreKindName::Redb => RawStoreKind::Redb(read(p, "store", rest)?),
        StoreKindName::Memory => RawStoreKind::Memory(read(p, "store", rest)?),
        StoreKindName::Redis => RawStoreKind::Redis(read(p, "store", rest)?),
    };
    Some(RawStore {
        kind,
        common: common?,
    })
}

/// A section that may be absent (then its defaults).
fn section<T: DeserializeOwned + Default>(
    p: &mut Problems,
    doc: &mut toml::Table,
    name: &str,
) -> Option<T> {
    match doc.remove(name) {
        None => Some(T::default()),
        Some(v) => read(p, name, v),
    }
}

/// A section that must be there.
fn required<T: DeserializeOwned>(p: &mut Problems, doc: &mut toml::Table, name: &str) -> Option<T> {
    match doc.remove(name) {
        None => {
            p.add(name, format!("missing field `{name}`"));
            None
        }
        Some(v) => read(p, name, v),
    }
}

/// What a file says beside its values: where it is, and the environment.
pub struct Source<'a> {
    /// The folder relative paths in the file are resolved against.
    pub base_dir: Option<&'a Path>,
    /// `ORDERGATE_*` variables, applied over the file.
    pub env: Vec<(String, String)>,
}

fn positive(key: &str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match v.unwrap_or(default) {
        0 => Err(ConfigError::new(key, "must be greater than 0")),
        n => Ok(n),
    }
}

fn size(key: &str, v: Option<Size>, default: u64) -> Result<u64, ConfigError> {
    positive(key, v.map(|s| s.0), default)
}

/// A duration that must not be zero.
fn nonzero(key: &str, v: Option<Duration>, default: Duration) -> Result<Duration, ConfigError> {
    match v.unwrap_or(default) {
        d if d.is_zero() => Err(ConfigError::new(key, "must be greater than 0")),
        d => Ok(d),
    }
}

fn millis(key: &str, v: Option<Millis>, default: u64) -> Result<Duration, ConfigError> {
    nonzero(key, v.map(|d| d.get()), Duration::from_millis(default))
}

fn secs(key: &str, v: Option<Secs>, default: u64) -> Result<Duration, ConfigError> {
    nonzero(key, v.map(|d| d.get()), Duration::from_secs(default))
}

/// A duration sent to clients in whole seconds.
fn whole_secs(key: &str, v: Option<Secs>) -> Result<Option<Duration>, ConfigError> {
    match v.map(|d| d.get()) {
        Some(d) if d.subsec_nanos() != 0 => {
            Err(ConfigError::new(key, "must be a whole number of seconds"))
        }
        d => Ok(d),
    }
}

fn worker_mode(v: Option<&str>) -> Result<WorkerMode, ConfigError> {
    match v {
        None | Some("shared") => Ok(WorkerMode::Shared),
        Some("per_core") => Ok(WorkerMode::PerCore),
        Some(other) => Err(ConfigError::new(
            "server.worker_mode",
            format!("`{other}` is not \"shared\" or \"per_core\""),
        )),
    }
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
    if !matches!(scheme, Some("redis" | "rediss" | "redis+unix" | "unix")) {
        return Err(ConfigError::new(
            key,
            "must start with redis://, rediss:// (TLS) or redis+unix:// (a socket)",
        ));
    }
    // `#insecure` would turn certificate checks off; this build has no such mode.
    if url.contains('#') {
        return Err(ConfigError::new(
            key,
            "must not have a #fragment (certificates are always checked; see store.ca_file)",
        ));
    }
    // The message of a URL error never repeats the URL, which may hold a password.
    redis::Client::open(url)
        .map_err(|e| ConfigError::new(key, format!("not a usable Redis URL: {e}")))?;
    Ok(url.to_owned())
}

/// A file the configuration names: a relative path is relative to the
/// config file's folder (`base_dir`), not to wherever the gateway was
/// started, so the same file works from any working directory and a reload
/// reads the same files. Without a folder (text not read from a file), and
/// for absolute or empty paths, the path stays as written.
fn resolve(base_dir: Option<&Path>, path: &Path) -> PathBuf {
    match base_dir {
        Some(dir) if path.is_relative() && !path.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// The PEM of the CA certificates in `path`, checked to hold at least one.
fn ca_pem(key: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(key, format!("bad PEM in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            key,
            format!("no certificate in {}", path.display()),
        ));
    }
    Ok(pem)
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
fn redis(p: &mut Problems, st: RawRedis, base_dir: Option<&Path>) -> Option<RedisConfig> {
    let url = match st.url {
        None => {
            p.add("store.url", "required with kind = \"redis\"");
            None
        }
        Some(url) => p.take(redis_url("store.url", &url)),
    };
    let ca_pem = match (&st.ca_file, &url) {
        (None, _) => Some(None),
        (Some(_), Some(url)) if !url.starts_with("rediss://") => {
            p.add("store.ca_file", "needs a rediss:// store.url");
            None
        }
        (Some(path), _) => p.take(ca_pem("store.ca_file", &resolve(base_dir, path)).map(Some)),
    };
    if st.password.as_deref() == Some("") {
        p.add(
            "store.password",
            "must not be empty (leave it out for none)",
        );
    }
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
    let order_cache = match st.order_cache_entries.unwrap_or(DEFAULT_REDIS_ORDER_CACHE) {
        n if n > MAX_REDIS_ORDER_CACHE => {
            p.add(
                "store.order_cache_entries",
                format!("must be at most {MAX_REDIS_ORDER_CACHE} (0 turns it off)"),
            );
            None
        }
        n => Some(n),
    };
    let key_prefix = p.take(key_prefix("store.key_prefix", st.key_prefix));
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
        ca_pem: ca_pem?,
        password: st.password.filter(|p| !p.is_empty()),
        key_prefix: key_prefix?,
        pool_size: pool_size?,
        order_cache: order_cache?,
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

/// What reading a file found beside its problems.
pub struct Read {
    pub warnings: Vec<ConfigError>,
    pub overrides: Vec<Override>,
}

impl Raw {
    /// Reads the TOML text, applies the environment and validates the
    /// result, with every problem found.
    pub fn check(text: &str, source: Source<'_>) -> Result<Config, Vec<ConfigError>> {
        let mut p = Problems::default();
        let mut read = Read {
            warnings: Vec::new(),
            overrides: Vec::new(),
        };
        let raw = Self::parse(&mut p, &mut read, text, &source.env);
        let overrides = read.overrides.clone();
        let config = raw.and_then(|raw| raw.validate(&mut p, source.base_dir, read));
        match config {
            Some(config) if p.0.is_empty() => Ok(config),
            _ => {
                // Problems with an overridden key say where its value came from.
                super::env::attribute(&mut p.0, &overrides);
                Err(p.0)
            }
        }
    }

    /// The file's sections, each read on its own.
    fn parse(
        p: &mut Problems,
        read: &mut Read,
        text: &str,
        env: &[(String, String)],
    ) -> Option<Self> {
        let mut doc: toml::Table = match text.parse() {
            Ok(doc) => doc,
            Err(e) => {
                let e: toml::de::Error = e;
                p.add("(file)", format!("invalid TOML: {}", e.message()));
                return None;
            }
        };
        read.overrides = super::env::apply(&mut doc, env, &mut |key, reason| p.add(key, reason));
        let server = required(p, &mut doc, "server");
        let upstream = required(p, &mut doc, "upstream");
        let admin = match doc.remove("admin") {
            None => Some(None),
            Some(v) => read_admin(p, v),
        };
        let store = match doc.remove("store") {
            None => Some(RawStore {
                kind: RawStoreKind::Redb(RawRedb::default()),
                common: RawStoreCommon::default(),
            }),
            Some(v) => read_store(p, &mut read.warnings, v),
        };
        let cookies = section(p, &mut doc, "cookies");
        let faults = section(p, &mut doc, "faults");
        let rate_limits = section(p, &mut doc, "rate_limits");
        let cors = section(p, &mut doc, "cors");
        let log = section(p, &mut doc, "log");
        let telemetry = section(p, &mut doc, "telemetry");
        let compression = section(p, &mut doc, "compression");
        for key in doc.keys() {
            debug_assert!(!SECTIONS.contains(&key.as_str()));
            p.add(key, "unknown field");
        }
        Some(Self {
            server,
            upstream,
            admin,
            store,
            cookies,
            faults,
            rate_limits,
            cors,
            log,
            telemetry,
            compression,
        })
    }

    fn validate(self, p: &mut Problems, base_dir: Option<&Path>, read: Read) -> Option<Config> {
        let server = self.server.and_then(|s| server(p, s, base_dir));
        let admin = self.admin.map(|a| a.and_then(|a| admin(p, a)));
        let upstream = self.upstream.and_then(|u| upstream(p, u, base_dir));
        let store = self.store.and_then(|s| store(p, s, base_dir));
        let cookies = self.cookies.and_then(|c| cookies(p, c));
        let faults = self.faults.and_then(|f| faults(p, f));
        let rate_limits = self.rate_limits.and_then(|r| rate_limits(p, r));
        let cors = self.cors.and_then(|c| cors(p, c));
        let log = self.log.and_then(|l| log(p, l));
        let telemetry = self.telemetry.and_then(|t| telemetry(p, t));
        let compression = self.compression.and_then(|c| compression(p, c));
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
        if let (Some(s), Some(Some(a))) = (&server, &admin)
            && s.listeners
                .iter()
                .any(|l| l.addr == a.listen && a.listen.port() != 0)
        {
            p.add("admin.listen", "is also a gateway listener");
        }
        if !p.0.is_empty() {
            return None;
        }
        Some(Config {
            server: server?,
            admin: admin?,
            upstream: upstream?,
            store: store?,
            cookies: cookies?,
            faults: faults?,
            rate_limits: rate_limits?,
            cors: cors?,
            log: log?,
            telemetry: telemetry?,
            compression: compression?,
            warnings: read.warnings,
            overrides: read.overrides,
        })
    }
}

fn compression(p: &mut Problems, c: RawCompression) -> Option<CompressionConfig> {
    let min_size = c
        .min_size_bytes
        .map_or(DEFAULT_COMPRESSION_MIN_SIZE, |s| s.0);
    if min_size > u64::from(u16::MAX) {
        p.add("compression.min_size_bytes", "must be at most 65535");
        return None;
    }
    Some(CompressionConfig {
        enabled: c.enabled.unwrap_or(true),
        min_size,
    })
}

fn read_admin(p: &mut Problems, v: toml::Value) -> Option<Option<RawAdmin>> {
    read::<RawAdmin>(p, "admin", v).map(Some)
}

fn admin(p: &mut Problems, a: RawAdmin) -> Option<AdminConfig> {
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
}

fn listener(
    p: &mut Problems,
    key: &str,
    listen: &str,
    tls: Option<&RawTls>,
    base_dir: Option<&Path>,
) -> Option<ListenerConfig> {
    let addr = p.take(address(&format!("{key}listen"), listen));
    let tls = match tls {
        None => Some(None),
        Some(t) => p.take(listener_tls(key, t, base_dir)).map(Some),
    };
    Some(ListenerConfig {
        addr: addr?,
        tls: tls?,
    })
}

fn listener_tls(
    key: &str,
    t: &RawTls,
    base_dir: Option<&Path>,
) -> Result<super::tls::ListenerTls, ConfigError> {
    use super::tls::{Hsts, ListenerTls, TlsSettings};
    if t.hsts_max_age_secs.is_none() && t.hsts_include_subdomains.is_some() {
        return Err(ConfigError::new(
            format!("{key}tls.hsts_include_subdomains"),
            "needs hsts_max_age_secs",
        ));
    }
    let settings = TlsSettings {
        cert_path: resolve(base_dir, &t.cert_path),
        key_path: resolve(base_dir, &t.key_path),
        ocsp_path: t.ocsp_path.as_deref().map(|o| resolve(base_dir, o)),
        cipher_suites: t.cipher_suites.clone(),
        prefer_server_cipher_order: t.prefer_server_cipher_order.unwrap_or(true),
        hsts: whole_secs(&format!("{key}tls.hsts_max_age_secs"), t.hsts_max_age_secs)?.map(
            |max_age| Hsts {
                max_age,
                include_subdomains: t.hsts_include_subdomains.unwrap_or(false),
            },
        ),
    };
    ListenerTls::load(settings)
        .map_err(|e| ConfigError::new(format!("{key}tls.{}", e.field()), e.to_string()))
}

fn server(p: &mut Problems, s: RawServer, base_dir: Option<&Path>) -> Option<ServerConfig> {
    let handshake = handshake(p, &s);
    let http2 = http2(p, &s);
    let mut listeners = vec![listener(p, "server.", &s.listen, s.tls.as_ref(), base_dir)];
    for (i, l) in s.listeners.into_iter().enumerate() {
        let key = format!("server.listeners[{i}]");
        listeners
            .push(read::<RawListener>(p, &key, l).and_then(|l| {
                listener(p, &format!("{key}."), &l.listen, l.tls.as_ref(), base_dir)
            }));
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
    let max_request_body = p.take(size(
        "server.max_request_body_bytes",
        s.max_request_body_bytes,
        DEFAULT_MAX_REQUEST_BODY,
    ));
    let max_header_bytes = s
        .max_header_bytes
        .map_or(DEFAULT_MAX_HEADER_BYTES, |b| b.0 as usize);
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
    let worker_mode = p.take(worker_mode(s.worker_mode.as_deref()));
    let listen_backlog = p.take(
        positive(
            "server.listen_backlog",
            s.listen_backlog.map(u64::from),
            u64::from(DEFAULT_LISTEN_BACKLOG),
        )
        .and_then(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_LISTEN_BACKLOG)
                .ok_or_else(|| {
                    ConfigError::new(
                        "server.listen_backlog",
                        format!("must be at most {MAX_LISTEN_BACKLOG}"),
                    )
                })
        }),
    );
    Some(ServerConfig {
        listeners: listeners?,
        public_base_url: public_base_url?,
        trusted_proxies,
        max_request_body: max_request_body?,
        request_id_header: request_id_header?,
        workers: s.workers,
        worker_mode: worker_mode?,
        drain_timeout: s
            .drain_timeout_secs
            .map_or(Duration::from_secs(DEFAULT_DRAIN_TIMEOUT_SECS), |d| d.get()),
        limits: ServerLimits {
            max_header_bytes,
            max_headers: max_headers? as usize,
            header_read_timeout: header_read_timeout?,
            body_idle_timeout: body_idle_timeout?,
            idle_timeout: idle_timeout?,
            max_connections: max_connections? as usize,
            listen_backlog: listen_backlog?,
            handshake: handshake?,
            http2: http2?,
        },
    })
}

/// The deadlines of a connection's start.
fn handshake(p: &mut Problems, s: &RawServer) -> Option<Handshake> {
    let first_byte = p.take(millis(
        "server.first_byte_timeout_ms",
        s.first_byte_timeout_ms,
        DEFAULT_FIRST_BYTE_TIMEOUT_MS,
    ));
    let tls = p.take(millis(
        "server.tls_handshake_timeout_ms",
        s.tls_handshake_timeout_ms,
        DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
    ));
    let protocol = p.take(millis(
        "server.protocol_timeout_ms",
        s.protocol_timeout_ms,
        DEFAULT_PROTOCOL_TIMEOUT_MS,
    ));
    let http2 = p.take(millis(
        "server.http2_handshake_timeout_ms",
        s.http2_handshake_timeout_ms,
        DEFAULT_HTTP2_HANDSHAKE_TIMEOUT_MS,
    ));
    Some(Handshake {
        first_byte: first_byte?,
        tls: tls?,
        protocol: protocol?,
        http2: http2?,
    })
}

/// HTTP/2 keep-alive and the limits on streams and resets.
fn http2(p: &mut Problems, s: &RawServer) -> Option<Http2Limits> {
    let keep_alive_interval = p.take(millis(
        "server.http2_keep_alive_interval_ms",
        s.http2_keep_alive_interval_ms,
        DEFAULT_HTTP2_KEEP_ALIVE_INTERVAL_MS,
    ));
    let keep_alive_timeout = p.take(millis(
        "server.http2_keep_alive_timeout_ms",
        s.http2_keep_alive_timeout_ms,
        DEFAULT_HTTP2_KEEP_ALIVE_TIMEOUT_MS,
    ));
    let max_concurrent_streams = p.take(positive(
        "server.http2_max_concurrent_streams",
        s.http2_max_concurrent_streams.map(u64::from),
        u64::from(DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS),
    ));
    let max_pending_reset_streams = p.take(positive(
        "server.http2_max_pending_reset_streams",
        s.http2_max_pending_reset_streams.map(|v| v as u64),
        DEFAULT_HTTP2_MAX_PENDING_RESETS as u64,
    ));
    let max_local_error_reset_streams = p.take(positive(
        "server.http2_max_local_error_reset_streams",
        s.http2_max_local_error_reset_streams.map(|v| v as u64),
        DEFAULT_HTTP2_MAX_LOCAL_ERROR_RESETS as u64,
    ));
    Some(Http2Limits {
        keep_alive_interval: keep_alive_interval?,
        keep_alive_timeout: keep_alive_timeout?,
        // Read as a u32 from the file: it fits.
        max_concurrent_streams: u32::try_from(max_concurrent_streams?).unwrap_or(u32::MAX),
        max_pending_reset_streams: max_pending_reset_streams? as usize,
        max_local_error_reset_streams: max_local_error_reset_streams? as usize,
    })
}

fn upstream(p: &mut Problems, u: RawUpstream, base_dir: Option<&Path>) -> Option<UpstreamConfig> {
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
    let ca_file = u.ca_file.as_deref().map(|f| resolve(base_dir, f));
    let tls = p.take(
        if https {
            super::tls::client_config(ca_file.as_deref())
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
    let connect_attempt_timeout = p.take(millis(
        "upstream.connect_attempt_timeout_ms",
        u.connect_attempt_timeout_ms,
        DEFAULT_CONNECT_ATTEMPT_TIMEOUT_MS,
    ));
    // 0 turns the probes off.
    let tcp_keepalive = u
        .tcp_keepalive_secs
        .map_or(Some(Duration::from_secs(DEFAULT_TCP_KEEPALIVE_SECS)), |d| {
            Some(d.get()).filter(|d| !d.is_zero())
        });
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
    let max_json_body = p.take(size(
        "upstream.max_json_body_bytes",
        u.max_json_body_bytes,
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
        connect_attempt_timeout: connect_attempt_timeout?,
        tcp_keepalive,
        response_timeout: response_timeout?,
        request_timeout: request_timeout?,
        pool_idle_timeout: u
            .pool_idle_timeout_secs
            .map_or(Duration::from_secs(DEFAULT_POOL_IDLE_TIMEOUT_SECS), |d| {
                d.get()
            }),
        pool_max_idle_per_host: u
            .pool_max_idle_per_host
            .unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
        max_connections: u.max_connections,
        max_json_body: max_json_body? as usize,
    })
}

fn store(p: &mut Problems, st: RawStore, base_dir: Option<&Path>) -> Option<StoreConfig> {
    let kind = match st.kind {
        RawStoreKind::Redis(r) => redis(p, r, base_dir).map(StoreKind::Redis),
        RawStoreKind::Memory(RawMemory {}) => Some(StoreKind::Memory),
        RawStoreKind::Redb(r) => {
            let path = r.path.unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
            let path = resolve(base_dir, &path);
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
    };
    let idle_expiry = p.take(secs(
        "store.idle_expiry_secs",
        st.common.idle_expiry_secs,
        DEFAULT_IDLE_EXPIRY_SECS,
    ));
    let sweep_interval = p.take(secs(
        "store.sweep_interval_secs",
        st.common.sweep_interval_secs,
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
    let max_age = p.take(whole_secs("cookies.max_age_secs", c.max_age_secs))?;
    Some(CookieConfig {
        http_only: c.http_only.unwrap_or(true),
        secure,
        same_site,
        max_age,
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
    let max_upstream_body = p.take(size(
        "faults.max_upstream_body_bytes",
        f.max_upstream_body_bytes,
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
    let count = rl.rules.len();
    let read: Vec<(usize, RawRule)> = rl
        .rules
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, read(p, &format!("rate_limits.rules[{i}]"), r)?)))
        .collect();
    let mut names = std::collections::HashSet::new();
    for (i, r) in &read {
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
    let rules: Vec<_> = read
        .into_iter()
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
    let per = r.per_secs.get();
    if per.is_zero() {
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
        per,
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
    if let Some(age) = p
        .take(whole_secs("cors.max_age_secs", c.max_age_secs))
        .flatten()
    {
        cors.max_age_secs = age.as_secs();
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
    let level = l.level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    if let Err(e) = parse_log_level(&level) {
        p.add("log.level", e);
        return None;
    }
    Some(LogConfig {
        level: level.trim().to_owned(),
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
