//! The access log: one structured line per request, when its answer's
//! headers are ready; and the request metrics, counted at the same moment.
//!
//! Fields: request id, client IP (the peer's, or the client that trusted
//! proxies name in `X-Forwarded-For`, as the rate limits see it), method,
//! path (never the query), user agent (at most 200 characters), status,
//! latency, upstream status and latency, bytes in and out, the rate-limit
//! rule that refused the request, whether the shorthand was used and an
//! order created implicitly, and a hash of the owner. Never a cookie value
//! or the Authorization header. Inner phases report what they did through
//! the [`AccessRecord`] in the request's extensions; a refusal names its
//! rule with [`RateLimitedBy`] on the answer.
//!
//! The line is written when the answer's headers are ready, so the byte
//! counts are the declared sizes: `Content-Length`, or the body's exact
//! size when it knows it; a body streamed without a length logs none.

use super::metrics::{Metrics, RouteGroup};
use crate::owners::OwnerId;
use http::{Method, Request, Response};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

const SHORTHAND: u8 = 1;
const IMPLICIT: u8 = 2;

/// What the inner phases did for one request.
#[derive(Default, Debug)]
pub struct AccessRecord {
    upstream_us: AtomicU64,
    /// The last upstream answer's status; 0 when none came.
    upstream_status: AtomicU16,
    flags: AtomicU8,
    owner_hash: AtomicU64,
}

/// On a 429 answer: the rule that refused it.
#[derive(Clone, Debug)]
pub struct RateLimitedBy(pub String);

/// Longest user agent logged, in characters.
const MAX_USER_AGENT: usize = 200;

impl AccessRecord {
    pub fn upstream_status(&self, status: http::StatusCode) {
        self.upstream_status
            .store(status.as_u16(), Ordering::Relaxed);
    }
    pub fn add_upstream(&self, d: Duration) {
        self.upstream_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
    pub fn shorthand(&self) {
        self.flags.fetch_or(SHORTHAND, Ordering::Relaxed);
    }
    pub fn implicit(&self) {
        self.flags.fetch_or(IMPLICIT, Ordering::Relaxed);
    }
    pub fn owner(&self, owner: OwnerId) {
        self.owner_hash
            .store(owner_hash(owner).max(1), Ordering::Relaxed);
    }
}

/// A stable, one-way hash of an owner id, so log lines of one owner can be
/// told apart without the id itself (the id is the owner's credential).
pub fn owner_hash(owner: OwnerId) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ("ordergate-owner", owner.as_u128()).hash(&mut h);
    h.finish()
}

/// Where inner phases find the record.
pub type Record = Arc<AccessRecord>;

/// The access-log layer; when `enabled` is false it only counts requests.
#[derive(Clone)]
pub struct AccessLogLayer {
    pub enabled: bool,
    pub metrics: Arc<Metrics>,
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;
    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog {
            inner,
            enabled: self.enabled,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    enabled: bool,
    metrics: Arc<Metrics>,
}

impl<S, B, RB> Service<Request<B>> for AccessLog<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    B: http_body::Body,
    RB: http_body::Body,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let route = RouteGroup::of(req.uri().path());
        let line = self.enabled.then(|| {
            let record = Record::default();
            req.extensions_mut().insert(Arc::clone(&record));
            let user_agent = req
                .headers()
                .get(http::header::USER_AGENT)
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .chars()
                        .take(MAX_USER_AGENT)
                        .collect()
                })
                .unwrap_or_default();
            Line {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
                request_id: super::RequestId::of(&req).to_owned(),
                client_ip: req
                    .extensions()
                    .get::<crate::proxy::ClientAddr>()
                    .map(|a| a.0.ip()),
                user_agent,
                bytes_in: declared(req.headers(), http_body::Body::size_hint(req.body())),
                record,
            }
        });
        AccessLogFuture {
            inner: self.inner.call(req),
            start,
            route,
            metrics: Arc::clone(&self.metrics),
            line,
        }
    }
}

struct Line {
    method: Method,
    path: String,
    request_id: String,
    client_ip: Option<std::net::IpAddr>,
    user_agent: String,
    bytes_in: Option<u64>,
    record: Record,
}

/// A message's size as declared: its Content-Length, else its body's exact
/// size hint.
fn declared(headers: &http::HeaderMap, hint: http_body::SizeHint) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .or_else(|| hint.exact())
}

pin_project_lite::pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        route: RouteGroup,
        metrics: Arc<Metrics>,
        line: Option<Line>,
    }
}

impl<F, RB, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: http_body::Body,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        let latency = this.start.elapsed();
        if let Ok(resp) = &out {
            this.metrics
                .request(*this.route, resp.status().as_u16(), latency);
        }
        if let (Some(line), Ok(resp)) = (this.line.take(), &out) {
            let r = &line.record;
            let flags = r.flags.load(Ordering::Relaxed);
            let owner = r.owner_hash.load(Ordering::Relaxed);
            let upstream_status = r.upstream_status.load(Ordering::Relaxed);
            tracing::info!(
                target: "ordergate::access",
                request_id = %line.request_id,
                client_ip = line.client_ip.map(tracing::field::display),
                method = %line.method,
                path = %line.path,
                user_agent = %line.user_agent,
                status = resp.status().as_u16(),
                latency_us = latency.as_micros() as u64,
                upstream_status = (upstream_status != 0).then_some(upstream_status),
                upstream_us = r.upstream_us.load(Ordering::Relaxed),
                bytes_in = line.bytes_in,
                bytes_out = declared(resp.headers(), resp.body().size_hint()),
                rate_limit_rule = resp.extensions().get::<RateLimitedBy>().map(|r| r.0.as_str()),
                shorthand = flags & SHORTHAND != 0,
                implicit = flags & IMPLICIT != 0,
                owner = %if owner == 0 { String::new() } else { format!("{owner:016x}") },
            );
        }
        Poll::Ready(out)
    }
}
