//! Guards: checks that answer a request at once, or let it pass and touch
//! its answer on the way back.
//!
//! CORS ([`cors`]), request framing ([`framing`]), request size limits
//! ([`size`]) and rate limits ([`rate_limit`]) are each a [`Guard`]: a plain type whose
//! [`Guard::check`] decides, without I/O where it can. One layer,
//! [`GuardLayer`], and one future, [`GuardFuture`], run every guard, as
//! tower-http's `validate_request` does. Guards read the request facts
//! ([`crate::context::Facts`]) and know nothing of the orders phase.

pub mod cors;
pub mod framing;
pub mod rate_limit;
pub mod size;

use crate::body::Body;
use crate::faults;
use http::{Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// A check that cannot wait for I/O itself.
pub type Wait<T> = Pin<Box<dyn Future<Output = Result<T, Response<Body>>> + Send>>;

/// What a guard makes of a request.
pub enum Verdict<A> {
    /// Pass the request on; apply `A` to its answer.
    Pass(A),
    /// Answer now; the request goes no further.
    Answer(Response<Body>),
    /// Decide once the future completes (the only boxed path).
    Wait(Wait<A>),
}

/// One check of the stack. `B` is the request body as it comes in.
///
/// The check reads (and may amend) the request where it lies: a request as
/// the server hands it on is 264 bytes, and moving it into every guard and
/// back out in its verdict cost two copies a guard.
pub trait Guard<B> {
    /// The request body the guard passes on.
    type Body;
    /// What the guard keeps for the answer.
    type After: Send + 'static;

    fn check(&self, req: &mut Request<B>) -> Verdict<Self::After>;

    /// The request as the inner service takes it. Called once the check
    /// passes, or as a wait begins (the request then waits in its new
    /// form): it must only change the request's form (a body wrapped), with
    /// no effect until the request is used.
    fn pass(&self, req: Request<B>) -> Request<Self::Body>;

    /// Touches the inner service's answer (headers, mostly).
    fn after(after: Self::After, resp: &mut Response<Body>);
}

/// Runs a guard in front of a service.
#[derive(Clone)]
pub struct GuardLayer<G> {
    guard: G,
}

impl<G> GuardLayer<G> {
    pub fn new(guard: G) -> Self {
        Self { guard }
    }
}

impl<G: Clone, S> Layer<S> for GuardLayer<G> {
    type Service = GuardService<G, S>;
    fn layer(&self, inner: S) -> GuardService<G, S> {
        GuardService {
            guard: self.guard.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct GuardService<G, S> {
    guard: G,
    inner: S,
}

impl<G, S, B> Service<Request<B>> for GuardService<G, S>
where
    G: Guard<B>,
    S: Service<Request<G::Body>, Response = Response<Body>> + Clone,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = GuardFuture<G, S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.guard.check(&mut req) {
            Verdict::Pass(after) => GuardFuture::Inner {
                future: self.inner.call(self.guard.pass(req)),
                after: Some(after),
            },
            Verdict::Answer(response) => GuardFuture::Answered {
                response: Some(Box::new(response)),
            },
            Verdict::Wait(wait) => {
                // The service made ready by poll_ready goes with the request.
                let clone = self.inner.clone();
                // Boxed while it waits: a rare path, and every request's
                // future would be as large as a request.
                GuardFuture::Waiting {
                    wait,
                    req: Some(Box::new(self.guard.pass(req))),
                    inner: Some(std::mem::replace(&mut self.inner, clone)),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of every guard: an answer made at once, a boxed wait, or
    /// the inner service's future with what is kept for its answer.
    #[project = GuardFutureProj]
    pub enum GuardFuture<G, S, B>
    where
        G: Guard<B>,
        S: Service<Request<G::Body>>,
    {
        // Boxed: a refusal is rare, and every request's future would be
        // as large as an answer.
        Answered { response: Option<Box<Response<Body>>> },
        Waiting { wait: Wait<G::After>, req: Option<Box<Request<G::Body>>>, inner: Option<S> },
        Inner { #[pin] future: S::Future, after: Option<G::After> },
    }
}

impl<G, S, B> Future for GuardFuture<G, S, B>
where
    G: Guard<B>,
    S: Service<Request<G::Body>, Response = Response<Body>>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                GuardFutureProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().map_or_else(polled_again, |r| *r)));
                }
                GuardFutureProj::Waiting { wait, req, inner } => {
                    if req.is_none() || inner.is_none() {
                        return Poll::Ready(Ok(polled_again()));
                    }
                    let passed = ready!(wait.as_mut().poll(cx));
                    let (Some(req), Some(mut service)) = (req.take(), inner.take()) else {
                        return Poll::Ready(Ok(polled_again()));
                    };
                    match passed {
                        Ok(after) => self.set(GuardFuture::Inner {
                            future: service.call(*req),
                            after: Some(after),
                        }),
                        Err(response) => {
                            self.set(GuardFuture::Answered { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                GuardFutureProj::Inner { future, after } => {
                    // A finished inner future is not polled again.
                    if after.is_none() {
                        return Poll::Ready(Ok(polled_again()));
                    }
                    let mut resp = ready!(future.poll(cx))?;
                    if let Some(after) = after.take() {
                        G::after(after, &mut resp);
                    }
                    return Poll::Ready(Ok(resp));
                }
            }
        }
    }
}

/// The answer of a guard future polled after it completed: a caller's bug,
/// answered with a fault rather than a panic or a hang.
fn polled_again() -> Response<Body> {
    tracing::error!("a guard future was polled after it completed");
    faults::fault(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The gateway failed to answer",
        "",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use http::HeaderValue;
    use std::task::Waker;
    use tower::ServiceExt;

    /// Answers `/no` at once, waits for `/wait`, passes the rest and marks
    /// the answer.
    #[derive(Clone)]
    struct Toy;

    impl Guard<()> for Toy {
        type Body = ();
        type After = &'static str;
        fn check(&self, req: &mut Request<()>) -> Verdict<&'static str> {
            match req.uri().path() {
                "/no" => Verdict::Answer(faults::fault(StatusCode::FORBIDDEN, "no", "")),
                "/wait" => Verdict::Wait(Box::pin(async move {
                    tokio::task::yield_now().await;
                    Ok("waited")
                })),
                "/wait-no" => Verdict::Wait(Box::pin(async move {
                    tokio::task::yield_now().await;
                    Err(faults::fault(StatusCode::TOO_MANY_REQUESTS, "no", ""))
                })),
                _ => Verdict::Pass("passed"),
            }
        }
        fn pass(&self, req: Request<()>) -> Request<()> {
            req
        }
        fn after(after: &'static str, resp: &mut Response<Body>) {
            resp.headers_mut()
                .insert("x-guard", HeaderValue::from_static(after));
        }
    }

    async fn ok(_: Request<()>) -> Result<Response<Body>, std::convert::Infallible> {
        Ok(Response::new(body::empty()))
    }

    #[tokio::test]
    async fn answers_passes_and_waits() {
        let svc = GuardLayer::new(Toy).layer(tower::service_fn(ok));
        let call = |path: &'static str| {
            let svc = svc.clone();
            async move {
                let req = Request::builder().uri(path).body(()).unwrap();
                svc.oneshot(req).await.unwrap()
            }
        };
        let no = call("/no").await;
        assert_eq!(no.status(), 403);
        assert!(!no.headers().contains_key("x-guard"));
        assert_eq!(call("/yes").await.headers()["x-guard"], "passed");
        assert_eq!(call("/wait").await.headers()["x-guard"], "waited");
        let refused = call("/wait-no").await;
        assert_eq!(refused.status(), 429);
        assert!(!refused.headers().contains_key("x-guard"));
    }

    #[tokio::test]
    async fn a_wait_that_ends_in_a_refusal_is_not_polled_again() {
        let mut svc = GuardLayer::new(Toy).layer(tower::service_fn(ok));
        let req = Request::builder().uri("/wait-no").body(()).unwrap();
        let mut fut = Box::pin(svc.call(req));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "the wait yields once"
        );
        let Poll::Ready(Ok(refused)) = fut.as_mut().poll(&mut cx) else {
            panic!("not refused once the wait ended")
        };
        assert_eq!(refused.status(), 429);
        let Poll::Ready(Ok(again)) = fut.as_mut().poll(&mut cx) else {
            panic!("pending when polled again")
        };
        assert_eq!(again.status(), 500);
    }

    #[tokio::test]
    async fn polled_again_after_answering_it_answers_a_fault_not_pending() {
        let mut svc = GuardLayer::new(Toy).layer(tower::service_fn(ok));
        let req = Request::builder().uri("/no").body(()).unwrap();
        let mut fut = Box::pin(svc.call(req));
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(first)) = fut.as_mut().poll(&mut cx) else {
            panic!("not answered at once")
        };
        assert_eq!(first.status(), 403);
        let Poll::Ready(Ok(again)) = fut.as_mut().poll(&mut cx) else {
            panic!("pending when polled again")
        };
        assert_eq!(again.status(), 500);
    }
}
