//! The admin listener: `GET /metrics` (Prometheus text), `GET /healthz` (the
//! process is up), `GET /readyz` (it takes traffic: not draining, and the
//! owner store answers), `GET /openapi.yaml` (the edge API's contract),
//! `GET`/`PUT /log/level` (the log's filter directives, changed at run time:
//! 200 with the new level, 400 for directives that do not parse, 503 when
//! the process's log cannot change), and the status page, `GET /` with its
//! data, `GET /status.json` ([`super::status`]). Kept off the public
//! listeners, on loopback by default.
//!
//! With `admin.token` set, every route answers 401 unless the request
//! carries `Authorization: Bearer <token>`, or Basic credentials whose
//! password is the token (so a browser asks for it once and sends it with
//! the page's own requests).

use super::metrics::Metrics;
use super::status::StatusView;
use crate::body::{self, Body};
use crate::owners::OwnerStore;
use crate::server::stopped;
use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The OpenAPI 3.1 document of the gateway's public surface, built into the
/// binary so that what is served is what was checked.
pub const OPENAPI_YAML: &str = include_str!("../../openapi/ordergate.yaml");

/// What the admin endpoints report on.
#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn OwnerStore>,
    /// Set when shutdown begins: no longer ready.
    pub draining: Arc<AtomicBool>,
    /// What the running configuration says; replaced on reload.
    pub settings: Arc<ArcSwap<AdminSettings>>,
}

/// The parts of a configuration the admin endpoints use.
#[derive(Debug)]
pub struct AdminSettings {
    pub token: Option<String>,
    pub status: StatusView,
}

impl AdminSettings {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            token: config.admin.as_ref().and_then(|a| a.token.clone()),
            status: StatusView::new(config),
        }
    }
}

/// Whether `req` carries `token`, as a Bearer token or a Basic password.
fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    use base64::Engine;
    use subtle::ConstantTimeEq;
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            rest.trim().as_bytes().to_vec()
        }
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
                return false;
            };
            match decoded.iter().position(|&b| b == b':') {
                Some(colon) => decoded[colon + 1..].to_vec(),
                None => return false,
            }
        }
        _ => return false,
    };
    given.ct_eq(token.as_bytes()).into()
}

impl Admin {
    pub async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let settings = self.settings.load_full();
        if let Some(token) = &settings.token
            && !authorized(&req, token)
        {
            let mut resp = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            let challenges = resp.headers_mut();
            challenges.append(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"ordergate admin\""),
            );
            challenges.append(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Basic realm=\"ordergate admin\""),
            );
            return resp;
        }
        if req.uri().path() == "/log/level" {
            return log_level(req).await;
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        }
        match req.uri().path() {
            "/" => {
                let mut resp = text(StatusCode::OK, super::status::PAGE);
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                // Nothing outside the page itself: no CDN, no frame.
                h.insert(
                    header::CONTENT_SECURITY_POLICY,
                    http::HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
                    ),
                );
                resp
            }
            "/status.json" => {
                let body =
                    super::status::reading(&self.metrics, self.store.as_ref(), &settings.status)
                        .await;
                let mut resp = text(StatusCode::OK, body.to_string());
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                h.insert(
                    header::CACHE_CONTROL,
                    http::HeaderValue::from_static("no-store"),
                );
                resp
            }
            "/metrics" => {
                let reading = super::metrics::StoreReading {
                    open_orders: self.store.count().await.ok().flatten(),
                    fail_opens: self.store.fail_open_count(),
                };
                let mut resp = text(StatusCode::OK, self.metrics.render(reading));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                resp
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/openapi.yaml" => {
                let mut resp = text(StatusCode::OK, OPENAPI_YAML);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/yaml; charset=utf-8"),
                );
                resp
            }
            "/readyz" => {
                if self.draining.load(Ordering::Relaxed) {
                    return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
                }
                match self.store.ping().await {
                    Ok(()) => text(StatusCode::OK, "ready\n"),
                    Err(e) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("owner store unavailable: {e}\n"),
                    ),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Longest filter directives accepted.
const MAX_LEVEL_BYTES: usize = 4096;

/// `GET /log/level`: the directives in force; `PUT` with directives in the
/// body (`debug`, `ordergate=debug,info`) replaces them.
async fn log_level(req: Request<Incoming>) -> Response<Body> {
    use http_body_util::BodyExt;
    let Some(control) = super::log::control() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "this process's log level cannot change\n",
        );
    };
    match *req.method() {
        Method::GET | Method::HEAD => text(StatusCode::OK, format!("{}\n", control.level())),
        Method::PUT => {
            let body = http_body_util::Limited::new(req.into_body(), MAX_LEVEL_BYTES);
            let bytes = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("the level must be text of at most {MAX_LEVEL_BYTES} bytes\n"),
                    );
                }
            };
            let Ok(directives) = std::str::from_utf8(&bytes) else {
                return text(StatusCode::BAD_REQUEST, "the level must be UTF-8 text\n");
            };
            match control.set_level(directives) {
                Ok(()) => {
                    tracing::info!(level = %directives.trim(), "log level changed on the admin listener");
                    text(StatusCode::OK, format!("{}\n", control.level()))
                }
                Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
            }
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "GET or PUT only\n"),
    }
}

fn text(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<Body> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves the admin endpoints until `stop` turns true.
pub async fn serve(listener: TcpListener, admin: Admin, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.answer(req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
