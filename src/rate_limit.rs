//! The rate-limit layer: a thin service around [`crate::policy::rate_limit`].
//!
//! Over a limit: 429 `overLimit` with `Retry-After`, `RateLimit-Policy` and
//! `RateLimit` (IETF httpapi-ratelimit-headers). Under it, the answer carries
//! the two `RateLimit*` headers of the tightest matching rule. Global rules
//! that cannot be checked because Redis is down, with fail-closed: 503
//! `serviceUnavailable`.
//!
//! Requests no global rule matches take the unboxed path; only those that
//! must wait for Redis get a boxed future.

use crate::body::Body;
use crate::faults;
use crate::policy::rate_limit::{Decision, RateLimits, Verdict};
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

type Boxed<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

pin_project_lite::pin_project! {
    #[project = RateLimitFutureProj]
    pub enum RateLimitFuture<F, E> {
        Rejected { response: Option<Response<Body>> },
        Inner { #[pin] future: F, headers: Option<Headers> },
        Global { future: Boxed<E> },
    }
}

impl<F, E> Future for RateLimitFuture<F, E>
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
            RateLimitFutureProj::Global { future } => future.as_mut().poll(cx),
        }
    }
}

/// What a verdict comes to.
enum Outcome {
    /// Let through, with these headers on the answer.
    Pass(Headers),
    /// The 429.
    Refuse(Response<Body>),
}

fn outcome(limits: &RateLimits, metrics: &Metrics, verdict: &Verdict) -> Outcome {
    let rule = &limits.rules[verdict.rule];
    let name = &rule.spec.name;
    let (remaining, reset) = match verdict.decision {
        Decision::Allowed { remaining, reset } => (remaining, reset),
        Decision::Denied { wait } => (0, wait),
    };
    let state = HeaderValue::from_str(&format!("\"{name}\";r={remaining};t={}", ceil_secs(reset)))
        .unwrap_or_else(|_| HeaderValue::from_static("\"limit\""));
    let headers = [
        (RATELIMIT_POLICY.clone(), rule.policy.clone()),
        (RATELIMIT.clone(), state),
    ];
    crate::telemetry::trace::event("rate_limit", || {
        vec![
            opentelemetry::KeyValue::new("ordergate.rate_limit.rule", name.clone()),
            opentelemetry::KeyValue::new(
                "ordergate.rate_limit.allowed",
                matches!(verdict.decision, Decision::Allowed { .. }),
            ),
        ]
    });
    if let Decision::Denied { wait } = verdict.decision {
        metrics.rate_limited(name);
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
        return Outcome::Refuse(resp);
    }
    Outcome::Pass(headers)
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = RateLimitFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let peer = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        let eval = self
            .limits
            .evaluate(req.method(), req.uri().path(), req.headers(), peer);
        if !eval.global.is_empty() {
            // The inner service made ready by poll_ready goes with the request.
            let clone = self.inner.clone();
            let mut inner = std::mem::replace(&mut self.inner, clone);
            let limits = Arc::clone(&self.limits);
            let metrics = Arc::clone(&self.metrics);
            return RateLimitFuture::Global {
                future: Box::pin(async move {
                    let verdict = match limits.finish(eval).await {
                        Ok(v) => v,
                        Err(e) => {
                            return Ok(faults::fault(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "The shared rate limits cannot be checked",
                                e.to_string(),
                            ));
                        }
                    };
                    let headers = match verdict.map(|v| outcome(&limits, &metrics, &v)) {
                        None => None,
                        Some(Outcome::Pass(headers)) => Some(headers),
                        Some(Outcome::Refuse(refusal)) => return Ok(refusal),
                    };
                    let mut resp = inner.call(req).await?;
                    for (name, value) in headers.into_iter().flatten() {
                        resp.headers_mut().insert(name, value);
                    }
                    Ok(resp)
                }),
            };
        }
        match eval
            .verdict
            .map(|v| outcome(&self.limits, &self.metrics, &v))
        {
            None => RateLimitFuture::Inner {
                future: self.inner.call(req),
                headers: None,
            },
            Some(Outcome::Pass(headers)) => RateLimitFuture::Inner {
                future: self.inner.call(req),
                headers: Some(headers),
            },
            Some(Outcome::Refuse(refusal)) => RateLimitFuture::Rejected {
                response: Some(refusal),
            },
        }
    }
}
