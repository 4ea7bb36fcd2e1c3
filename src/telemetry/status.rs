//! The status page of the admin listener: `GET /` is one self-contained
//! HTML page (inline CSS and JS, no outside resource) that reads
//! `GET /status.json` every second and charts it.
//!
//! `/status.json` holds counters that only grow (requests and errors by route
//! group, latency buckets, creations, 409s, 429s by rule) and readings of the
//! moment (open orders, store and Redis health, upstream connections); the
//! page computes rates and windowed percentiles from two consecutive
//! readings. It carries a summary of the running configuration with no
//! secret: no Redis URL, no admin token, no userinfo of a URL.

use super::metrics::{Metrics, RouteGroup};
use crate::config::{BaseUrl, Config, LogFormat, OnRedisError, StoreKind};
use crate::owners::OwnerStore;
use serde_json::{Value, json};
use std::time::Duration;

/// The page, embedded at build time.
pub const PAGE: &str = include_str!("status.html");

/// How long a health probe of the store may take before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a configuration tells the status page; rebuilt on reload.
#[derive(Debug, Clone)]
pub struct StatusView {
    /// The configuration summary, without secrets.
    pub config: Value,
    /// Rate-limit rule names, for their 429 counts.
    pub rules: Vec<String>,
    pub store_kind: &'static str,
    pub redis: bool,
}

impl StatusView {
    pub fn new(config: &Config) -> Self {
        Self {
            config: summary(config),
            rules: config
                .rate_limits
                .rules
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            store_kind: store_kind(&config.store.kind),
            redis: config.store.redis().is_some(),
        }
    }
}

fn store_kind(kind: &StoreKind) -> &'static str {
    match kind {
        StoreKind::Memory => "memory",
        StoreKind::Redb { .. } => "redb",
        StoreKind::Redis(_) => "redis",
    }
}

/// A URL's scheme, host and port: never a user or password.
fn public_url(url: &BaseUrl) -> String {
    let a = url.authority();
    match a.port_u16() {
        Some(port) => format!("{}://{}:{port}", url.scheme(), a.host()),
        None => format!("{}://{}", url.scheme(), a.host()),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The running configuration as the status page shows it.
pub fn summary(c: &Config) -> Value {
    let listeners: Vec<Value> = c
        .server
        .listeners
        .iter()
        .map(|l| {
            json!({
                "listen": l.addr.to_string(),
                "tls": l.tls.as_ref().map(|t| json!({
                    "cert_path": t.settings.cert_path.display().to_string(),
                    "ocsp_stapling": t.settings.ocsp_path.is_some(),
                    "cipher_suites": t.settings.cipher_suites,
                    "prefer_server_cipher_order": t.settings.prefer_server_cipher_order,
                    "hsts_max_age_secs": t.settings.hsts.map(|h| h.max_age.as_secs()),
                })),
            })
        })
        .collect();
    let store = match &c.store.kind {
        StoreKind::Memory => json!({ "kind": "memory" }),
        StoreKind::Redb { path } => json!({ "kind": "redb", "path": path.display().to_string() }),
        StoreKind::Redis(r) => json!({
            "kind": "redis",
            "key_prefix": r.key_prefix,
            "pool_size": r.pool_size,
            "command_timeout_ms": millis(r.command_timeout),
            "on_error": on_error(r.on_error),
        }),
    };
    let rules: Vec<Value> = c
        .rate_limits
        .rules
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "key": format!("{:?}", r.key).to_lowercase(),
                "rate": r.rate.get(),
                "per_secs": r.per.as_secs_f64(),
                "burst": r.burst.get(),
                "scope": format!("{:?}", r.scope).to_lowercase(),
            })
        })
        .collect();
    let u = &c.upstream;
    json!({
        "listeners": listeners,
        "public_base_url": public_url(&c.server.public_base_url),
        "trusted_proxies": c.server.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "max_request_body_bytes": c.server.max_request_body,
        "max_connections": c.server.limits.max_connections,
        "upstream": {
            "url": public_url(&u.url),
            "http2": u.http2,
            "connect_timeout_ms": millis(u.connect_timeout),
            "response_timeout_ms": millis(u.response_timeout),
            "request_timeout_ms": millis(u.request_timeout),
            "max_connections": u.max_connections,
        },
        "store": store,
        "idle_expiry_secs": c.store.idle_expiry.as_secs(),
        "rate_limits": rules,
        "cors_origins": c.cors.allowed_origins.iter().filter_map(|o| o.to_str().ok()).collect::<Vec<_>>(),
        "log": {
            "level": c.log.level,
            "format": match c.log.format { LogFormat::Text => "text", LogFormat::Json => "json" },
            "access_log": c.log.access_log,
        },
        "admin": c.admin.as_ref().map(|a| json!({
            "listen": a.listen.to_string(),
            "token": if a.token.is_some() { "set" } else { "not set" },
        })),
    })
}

fn on_error(o: OnRedisError) -> &'static str {
    match o {
        OnRedisError::FailClosed => "fail_closed",
        OnRedisError::FailOpen => "fail_open",
    }
}

/// The body of `/status.json`.
pub async fn reading(metrics: &Metrics, store: &dyn OwnerStore, view: &StatusView) -> Value {
    let healthy = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    let open_orders = match tokio::time::timeout(PROBE_TIMEOUT, store.count()).await {
        Ok(Ok(n)) => n,
        _ => None,
    };
    let mut requests = serde_json::Map::new();
    let mut total = 0;
    for route in RouteGroup::ALL {
        let c = metrics.route_counts(route);
        total += c.total;
        requests.insert(
            format!("{route:?}"),
            json!({ "total": c.total, "client_errors": c.client_errors, "server_errors": c.server_errors }),
        );
    }
    let latency = |s: super::latency::Snapshot| {
        json!({
            "count": s.total(),
            "p50": s.quantile_ms(0.5),
            "p90": s.quantile_ms(0.9),
            "p99": s.quantile_ms(0.99),
            "buckets": s.sparse(),
        })
    };
    let (gateway, upstream) = metrics.latency_snapshots();
    let rate_limited: serde_json::Map<String, Value> = view
        .rules
        .iter()
        .map(|r| (r.clone(), json!(metrics.rate_limited_count(r))))
        .collect();
    json!({
        "version": super::metrics::VERSION,
        "commit": super::metrics::COMMIT,
        "uptime_secs": metrics.uptime().as_secs_f64(),
        "requests_total": total,
        "requests": requests,
        "latency_ms": { "gateway": latency(gateway), "upstream": latency(upstream) },
        "orders": {
            "open": open_orders,
            "implicit_creations": metrics.implicit_creation_count(),
            "conflicts": metrics.conflict_count(),
        },
        "rate_limited": rate_limited,
        "upstream": {
            "errors": metrics.upstream_error_counts(),
            "connections": metrics.upstream_connections().get(),
        },
        "store": { "kind": view.store_kind, "healthy": healthy },
        "redis": view.redis.then(|| json!({
            "healthy": healthy,
            "fail_opens": store.fail_open_count() + metrics.rate_limit_fail_open_count(),
        })),
        "config": view.config,
    })
}
