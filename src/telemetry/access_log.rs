//! The access log: one structured line per request, when its answer's
//! headers are ready; and the request metrics, counted at the same moment.
//!
//! Fields: request id, method, path (never the query), status, latency,
//! upstream latency, whether the shorthand was used and an order created
//! implicitly, and a hash of the owner. Never a cookie value or the
//! Authorization header. Inner phases report what they did through the
//! access record of the request facts ([`crate::context::AccessRecord`]).

use super::metrics::{Metrics, RouteGroup};
use crate::context::{Facts, Record};
use http::{Method, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;
use tower::{Layer, Service};

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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let facts = Facts::of(&req);
        let route = RouteGroup::of(&facts.route);
        let line = match (self.enabled, &facts.record) {
            (true, Some(record)) => Some(Line {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
                request_id: super::RequestId::of(&req).to_owned(),
                record: Arc::clone(record),
            }),
            _ => None,
        };
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
            tracing::info!(
                target: "ordergate::access",
                request_id = %line.request_id,
                method = %line.method,
                path = %line.path,
                status = resp.status().as_u16(),
                latency_us = latency.as_micros() as u64,
                upstream_us = r.upstream_us(),
                shorthand = r.used_shorthand(),
                implicit = r.created_implicitly(),
                owner = %r.owner_hash().map_or(String::new(), |h| format!("{h:016x}")),
            );
        }
        Poll::Ready(out)
    }
}
