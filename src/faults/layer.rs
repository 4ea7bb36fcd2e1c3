//! The fault layer: every error answer leaves the gateway in one shape.
//!
//! Sits just inside the request-id layer. Answers below 400 pass untouched
//! and unbuffered. A fault marked by an inner layer ([`super::FaultInfo`]) is
//! rendered; any other error answer (the upstream's) is read up to a cap and
//! rewritten by [`super::normalise`], its `guid` set to the request id (the
//! upstream's own guid, if different, goes to `x-upstream-guid`). An error
//! body that breaks off while being read becomes a 502.

use super::{FaultInfo, normalise, render_into};
use crate::body::{self, Body};
use crate::config::FaultTypes;
use crate::telemetry::RequestId;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

static X_UPSTREAM_GUID: HeaderName = HeaderName::from_static("x-upstream-guid");

#[derive(Clone)]
pub struct FaultLayer {
    types: Arc<FaultTypes>,
    cap: usize,
}

impl FaultLayer {
    pub fn new(types: FaultTypes, cap: usize) -> Self {
        Self {
            types: Arc::new(types),
            cap,
        }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultService<S>;
    fn layer(&self, inner: S) -> FaultService<S> {
        FaultService {
            inner,
            types: Arc::clone(&self.types),
            cap: self.cap,
        }
    }
}

#[derive(Clone)]
pub struct FaultService<S> {
    inner: S,
    types: Arc<FaultTypes>,
    cap: usize,
}

impl<S, B> Service<Request<B>> for FaultService<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = FaultFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req.extensions().get::<RequestId>().map(|r| r.0.clone());
        let head = req.method() == Method::HEAD;
        FaultFuture::Inner {
            future: self.inner.call(req),
            ctx: Some(Ctx {
                id,
                head,
                types: Arc::clone(&self.types),
                cap: self.cap,
            }),
        }
    }
}

struct Ctx {
    id: Option<HeaderValue>,
    head: bool,
    types: Arc<FaultTypes>,
    cap: usize,
}

pin_project_lite::pin_project! {
    #[project = FaultFutureProj]
    pub enum FaultFuture<F, E> {
        Inner { #[pin] future: F, ctx: Option<Ctx> },
        Reading { future: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>> },
    }
}

impl<F, E> Future for FaultFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Send + 'static,
{
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                FaultFutureProj::Inner { future, ctx } => {
                    let mut resp = ready!(future.poll(cx))?;
                    if resp.status().as_u16() < 400 {
                        return Poll::Ready(Ok(resp));
                    }
                    let Some(ctx) = ctx.take() else {
                        return Poll::Ready(Ok(resp));
                    };
                    let guid = ctx
                        .id
                        .as_ref()
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    if let Some(info) = resp.extensions_mut().remove::<FaultInfo>() {
                        let kind = ctx.types.name(resp.status()).to_owned();
                        render_into(&mut resp, &kind, &guid, &info.message, &info.details);
                        return Poll::Ready(Ok(finish(resp, ctx.head)));
                    }
                    let reading = normalise_upstream(resp, guid, ctx);
                    self.set(FaultFuture::Reading {
                        future: Box::pin(async move { Ok(reading.await) }),
                    });
                }
                FaultFutureProj::Reading { future } => return future.as_mut().poll(cx),
            }
        }
    }
}

/// A HEAD answer keeps the fault's headers but no body.
fn finish(mut resp: Response<Body>, head: bool) -> Response<Body> {
    if head {
        *resp.body_mut() = body::empty();
    }
    resp
}

async fn normalise_upstream(resp: Response<Body>, guid: String, ctx: Ctx) -> Response<Body> {
    let (parts, upstream_body) = resp.into_parts();
    let mut resp = Response::from_parts(parts, body::empty());
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // A compressed error body is read decoded, like every body the gateway
    // looks into.
    let read = match (ctx.head, body::Coding::of(resp.headers())) {
        (true, _) => Ok(bytes::Bytes::new()),
        (false, Ok(coding)) => body::read_decoded(upstream_body, coding, ctx.cap).await,
        (false, Err(coding)) => Err(body::ReadError::Undecodable(coding)),
    };
    let found = match &read {
        Ok(bytes) => normalise(
            resp.status(),
            content_type.as_deref(),
            Some(bytes),
            &ctx.types,
        ),
        Err(body::ReadError::TooLarge(_)) => normalise(resp.status(), None, None, &ctx.types),
        Err(e) => {
            let message = match e {
                body::ReadError::Undecodable(_) => "The upstream's error answer cannot be read",
                _ => "The upstream connection failed while it answered",
            };
            tracing::warn!(request_id = %guid, status = resp.status().as_u16(), error = %e, "the upstream's error answer cannot be read");
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            let kind = ctx.types.name(StatusCode::BAD_GATEWAY).to_owned();
            render_into(&mut resp, &kind, &guid, message, "");
            return finish(resp, ctx.head);
        }
    };
    if let Some(upstream_guid) = found.upstream_guid.filter(|g| *g != guid)
        && let Ok(v) = HeaderValue::from_str(&upstream_guid)
    {
        resp.headers_mut().insert(X_UPSTREAM_GUID.clone(), v);
    }
    render_into(
        &mut resp,
        &found.kind,
        &guid,
        &found.message,
        &found.details,
    );
    finish(resp, ctx.head)
}
