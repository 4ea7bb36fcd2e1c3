//! The rate-limit guard: a thin shell around the rules ([`rules`]).
//!
//! Over a limit: 429 `overLimit` with `Retry-After`, `RateLimit-Policy` and
//! `RateLimit` (IETF httpapi-ratelimit-headers). Under it, the answer carries
//! the two `RateLimit*` headers of the tightest matching rule. Global rules
//! that cannot be checked because Redis is down, with fail-closed: 503
//! `serviceUnavailable`. Requests are counted by the owner and client
//! address of the request facts.
//!
//! Requests no global rule matches are decided without waiting; only those
//! that must ask Redis wait, on the guard's one boxed path.

pub mod rules;

pub use rules::{Decision, RateLimits, Subject, Verdict as RuleVerdict};

use super::{Guard, Verdict};
use crate::body::Body;
use crate::context::Facts;
use crate::faults::{Error, Gateway, Policy};
use crate::telemetry::RequestId;
use crate::telemetry::metrics::Metrics;
use governor::clock::{Clock, DefaultClock};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response};
use std::sync::Arc;
use std::time::Duration;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The rate-limit guard, on governor's clock `C` (a fake one in tests).
/// Cheap to clone.
pub struct RateLimit<C: Clock = DefaultClock> {
    limits: Arc<RateLimits<C>>,
    metrics: Arc<Metrics>,
}

impl<C: Clock> Clone for RateLimit<C> {
    fn clone(&self) -> Self {
        Self {
            limits: Arc::clone(&self.limits),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<C: Clock> RateLimit<C> {
    pub fn new(limits: Arc<RateLimits<C>>, metrics: Arc<Metrics>) -> Self {
        Self { limits, metrics }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` and `RateLimit` headers of an answer.
pub type Headers = [(HeaderName, HeaderValue); 2];

/// What a verdict comes to.
enum Outcome {
    /// Let through, with these headers on the answer.
    Pass(Headers),
    /// The 429.
    Refuse(Response<Body>),
}

/// The headers a verdict gives the answer, or the 429 (the one place it is
/// made).
fn outcome<C: Clock>(
    limits: &RateLimits<C>,
    metrics: &Metrics,
    verdict: &RuleVerdict,
    guid: &str,
) -> Outcome {
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
    let Decision::Denied { wait } = verdict.decision else {
        return Outcome::Pass(headers);
    };
    metrics.rate_limited(name);
    let mut resp = Error::policy(
        Policy::OverLimit,
        format!("Too many requests: over the \"{name}\" limit"),
    )
    .with_details(format!("retry after {} s", ceil_secs(wait)))
    .respond(guid);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(ceil_secs(wait).max(1)));
    resp.extensions_mut()
        .insert(crate::telemetry::access_log::RateLimitedBy(name.clone()));
    for (n, v) in headers {
        resp.headers_mut().insert(n, v);
    }
    Outcome::Refuse(resp)
}

fn subject<'a, B>(req: &'a Request<B>, facts: &Facts) -> Subject<'a> {
    Subject {
        method: req.method(),
        path: req.uri().path(),
        headers: req.headers(),
        owner: facts.valid_owner(),
        client_ip: facts.client_ip,
    }
}

impl<B, C> Guard<B> for RateLimit<C>
where
    B: Send + 'static,
    C: Clock + Clone + Send + Sync + 'static,
{
    type Body = B;
    /// Boxed: most requests pass without headers, and the guard's future
    /// is as large as what it keeps.
    type After = Option<Box<Headers>>;

    fn check(&self, req: &mut Request<B>) -> Verdict<Option<Box<Headers>>> {
        let facts = Facts::of(req);
        let eval = self.limits.evaluate(&subject(req, facts));
        if eval.global.is_empty() {
            let guid = RequestId::of(req);
            return match eval
                .verdict
                .map(|v| outcome(&self.limits, &self.metrics, &v, guid))
            {
                None => Verdict::Pass(None),
                Some(Outcome::Pass(headers)) => Verdict::Pass(Some(Box::new(headers))),
                Some(Outcome::Refuse(refusal)) => Verdict::Answer(refusal),
            };
        }
        let (limits, metrics) = (Arc::clone(&self.limits), Arc::clone(&self.metrics));
        let id = facts.request_id.clone();
        Verdict::Wait(Box::pin(async move {
            let guid = RequestId::text(id.as_ref());
            let verdict = limits.finish(eval).await.map_err(|e| {
                Error::gateway(
                    Gateway::Unavailable,
                    "The shared rate limits cannot be checked",
                )
                .because(e)
                .respond(guid)
            })?;
            match verdict.map(|v| outcome(&limits, &metrics, &v, guid)) {
                None => Ok(None),
                Some(Outcome::Pass(headers)) => Ok(Some(Box::new(headers))),
                Some(Outcome::Refuse(refusal)) => Err(refusal),
            }
        }))
    }

    fn pass(&self, req: Request<B>) -> Request<B> {
        req
    }

    fn after(headers: Option<Box<Headers>>, resp: &mut Response<Body>) {
        for (name, value) in headers.into_iter().flat_map(|h| *h) {
            resp.headers_mut().insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use crate::config::{KeyKind, PathPattern, RuleSpec, Scope};
    use crate::faults::FaultInfo;
    use crate::guards::GuardLayer;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;
    use tower::{Layer, ServiceExt};

    async fn ok(_: Request<()>) -> Result<Response<Body>, std::convert::Infallible> {
        Ok(Response::new(body::empty()))
    }

    /// A request from `ip`, as the facts layer describes it.
    fn from(ip: [u8; 4]) -> Request<()> {
        let mut req = Request::new(());
        let mut facts = Facts::new("/x", req.headers(), None, &[], None);
        facts.client_ip = Some(ip.into());
        req.extensions_mut().insert(facts);
        req
    }

    #[tokio::test]
    async fn over_the_quota_is_429_until_the_bucket_refills() {
        let clock = FakeRelativeClock::default();
        // Five a second, no burst beyond one.
        let spec = RuleSpec {
            name: "fast".into(),
            methods: vec![],
            paths: vec![PathPattern::Any],
            key: KeyKind::ClientIp,
            rate: NonZeroU32::new(5).unwrap(),
            per: Duration::from_secs(1),
            burst: NonZeroU32::new(1).unwrap(),
            max_keys: 100,
            scope: Scope::Local,
        };
        let limits = Arc::new(RateLimits::with_clock(vec![spec], clock.clone()));
        let metrics = Arc::new(Metrics::new());
        let svc = GuardLayer::new(RateLimit::new(limits, metrics)).layer(tower::service_fn(ok));
        let first = svc.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["ratelimit-policy"], "\"fast\";q=5;w=1");
        assert_eq!(first.headers()["ratelimit"], "\"fast\";r=0;t=1");

        let over = svc.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(over.status(), 429);
        assert_eq!(over.headers()["retry-after"], "1");
        let fault = over.extensions().get::<FaultInfo>().unwrap();
        assert!(fault.message.contains("\"fast\""), "{fault:?}");
        // Another client has its own bucket.
        let other = svc.clone().oneshot(from([10, 0, 0, 2])).await.unwrap();
        assert_eq!(other.status(), 200);

        clock.advance(Duration::from_millis(199));
        let early = svc.clone().oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(early.status(), 429);
        clock.advance(Duration::from_millis(1));
        let refilled = svc.oneshot(from([10, 0, 0, 1])).await.unwrap();
        assert_eq!(refilled.status(), 200);
    }
}
