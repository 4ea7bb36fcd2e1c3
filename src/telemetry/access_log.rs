//! The access log: one structured line per request, when its answer's
//! headers are ready; and the request metrics, counted at the same moment.
//!
//! Fields: request id, client IP (the peer's, or the client that trusted
//! proxies name in `X-Forwarded-For`), method, path (never the query), user
//! agent (at most 200 characters), status, latency, upstream status and
//! latency, bytes in and out, the rate-limit rule that refused the request,
//! whether the shorthand was used and an order created implicitly, and a
//! hash of the owner. Never a cookie value or the Authorization header.
//! Inner phases report what they did through the access record of the
//! request facts ([`crate::context::AccessRecord`]); a refusal names its
//! rule with [`RateLimitedBy`] on the answer.
//!
//! The line is written when the answer's headers are ready, so the byte
//! counts are the declared sizes: `Content-Length`, or the body's exact
//! size when it knows it; a body streamed without a length logs none.

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

/// On a 429 answer: the rule that refused it.
#[derive(Clone, Debug)]
pub struct RateLimitedBy(pub String);

/// Longest user agent logged, in characters.
const MAX_USER_AGENT: usize = 200;

/// A message's size as declared: its Content-Length, else its body's exact
/// size hint.
fn declared(headers: &http::HeaderMap, hint: http_body::SizeHint) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .or_else(|| hint.exact())
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let facts = Facts::of(&req);
        let route = RouteGroup::of(&facts.route);
        let line = match (self.enabled, &facts.record) {
            (true, Some(record)) => Some(Box::new(Line {
                method: req.method().clone(),
                path: req.uri().path().to_owned(),
                request_id: super::RequestId::of(&req).to_owned(),
                client_ip: facts.client_ip,
                user_agent: req
                    .headers()
                    .get(http::header::USER_AGENT)
                    .map(|v| {
                        String::from_utf8_lossy(v.as_bytes())
                            .chars()
                            .take(MAX_USER_AGENT)
                            .collect()
                    })
                    .unwrap_or_default(),
                bytes_in: declared(req.headers(), http_body::Body::size_hint(req.body())),
                record: Arc::clone(record),
            })),
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
    client_ip: Option<std::net::IpAddr>,
    user_agent: String,
    bytes_in: Option<u64>,
    record: Record,
}

pin_project_lite::pin_project! {
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        route: RouteGroup,
        metrics: Arc<Metrics>,
        // Boxed: with the log off, every request's future would be as
        // large as a line.
        line: Option<Box<Line>>,
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
            tracing::info!(
                target: "ordergate::access",
                request_id = %line.request_id,
                client_ip = line.client_ip.map(tracing::field::display),
                method = %line.method,
                path = %line.path,
                user_agent = %line.user_agent,
                status = resp.status().as_u16(),
                latency_us = latency.as_micros() as u64,
                upstream_status = r.upstream_status(),
                upstream_us = r.upstream_us(),
                bytes_in = line.bytes_in,
                bytes_out = declared(resp.headers(), resp.body().size_hint()),
                rate_limit_rule = resp.extensions().get::<RateLimitedBy>().map(|r| r.0.as_str()),
                shorthand = r.used_shorthand(),
                implicit = r.created_implicitly(),
                owner = %r.owner_hash().map_or(String::new(), |h| format!("{h:016x}")),
            );
        }
        Poll::Ready(out)
    }
}
