//! The access log: one structured line per request, when its answer's
//! headers are ready; and the request metrics, counted at the same moment.
//!
//! Fields: request id, method, path (never the query), status, latency,
//! upstream latency, whether the shorthand was used and an order created
//! implicitly, and a hash of the owner. Never a cookie value or the
//! Authorization header. Inner phases report what they did through the
//! [`AccessRecord`] in the request's extensions.

use super::metrics::{Metrics, RouteGroup};
use crate::owners::OwnerId;
use http::{Method, Request, Response};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

const SHORTHAND: u8 = 1;
const IMPLICIT: u8 = 2;

/// What the inner phases did for one request.
#[derive(Default, Debug)]
pub struct AccessRecord {
    upstream_us: AtomicU64,
    flags: AtomicU8,
    owner_hash: AtomicU64,
}

impl AccessRecord {
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
            Line {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
                request_id: super::RequestId::of(&req).to_owned(),
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
    record: Record,
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
            tracing::info!(
                target: "ordergate::access",
                request_id = %line.request_id,
                method = %line.method,
                path = %line.path,
                status = resp.status().as_u16(),
                latency_us = latency.as_micros() as u64,
                upstream_us = r.upstream_us.load(Ordering::Relaxed),
                shorthand = flags & SHORTHAND != 0,
                implicit = flags & IMPLICIT != 0,
                owner = %if owner == 0 { String::new() } else { format!("{owner:016x}") },
            );
        }
        Poll::Ready(out)
    }
}
