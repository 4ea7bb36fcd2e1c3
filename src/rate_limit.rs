//! The rate-limit layer: a thin service around [`crate::policy::rate_limit`].
//!
//! Over a limit: 429 `overLimit` with `Retry-After`, `RateLimit-Policy` and
//! `RateLimit` (IETF httpapi-ratelimit-headers). Under it, the answer carries
//! the two `RateLimit*` headers of the tightest matching rule.

use crate::body::Body;
use crate::faults;
use crate::policy::rate_limit::{Decision, RateLimits};
use crate::proxy::ClientAddr;
use crate::telemetry::metrics::Metrics;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower::{Layer, Service};

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

#[derive(Clone)]
pub struct RateLimitLayer {
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
}

impl RateLimitLayer {
    pub fn new(limits: Arc<RateLimits>, metrics: Arc<Metrics>) -> Self {
        Self { limits, metrics }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            limits: Arc::clone(&self.limits),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limits: Arc<RateLimits>,
    metrics: Arc<Metrics>,
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

type Headers = [(HeaderName, HeaderValue); 2];

pin_project_lite::pin_project! {
    #[project = RateLimitFutureProj]
    pub enum RateLimitFuture<F> {
        Rejected { response: Option<Response<Body>> },
        Inner { #[pin] future: F, headers: Option<Headers> },
    }
}

impl<F, E> Future for RateLimitFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RateLimitFutureProj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            RateLimitFutureProj::Inner { future, headers } => {
                let mut resp = ready!(future.poll(cx))?;
                for (name, value) in headers.take().into_iter().flatten() {
                    resp.headers_mut().insert(name, value);
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let peer = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        let verdict = self
            .limits
            .check(req.method(), req.uri().path(), req.headers(), peer);
        let Some(verdict) = verdict else {
            return RateLimitFuture::Inner {
                future: self.inner.call(req),
                headers: None,
            };
        };
        let rule = &self.limits.rules[verdict.rule];
        let name = &rule.spec.name;
        let (remaining, reset) = match verdict.decision {
            Decision::Allowed { remaining, reset } => (remaining, reset),
            Decision::Denied { wait } => (0, wait),
        };
        let state =
            HeaderValue::from_str(&format!("\"{name}\";r={remaining};t={}", ceil_secs(reset)))
                .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""));
        let headers = [
            (RATELIMIT_POLICY.clone(), rule.policy.clone()),
            (RATELIMIT.clone(), state),
        ];
        if let Decision::Denied { wait } = verdict.decision {
            self.metrics.rate_limited(name);
            let mut resp = faults::fault(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many requests: over the \"{name}\" limit"),
                format!("retry after {} s", ceil_secs(wait)),
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(ceil_secs(wait).max(1)));
            for (n, v) in headers {
                resp.headers_mut().insert(n, v);
            }
            return RateLimitFuture::Rejected {
                response: Some(resp),
            };
        }
        RateLimitFuture::Inner {
            future: self.inner.call(req),
            headers: Some(headers),
        }
    }
}
