//! Request size limits, checked before any work is done for a request.
//!
//! More header fields, or more header bytes, than configured: 431
//! `requestHeaderFieldsTooLarge`.
//! A body announced larger than the limit (`Content-Length`) is answered with
//! 413 `requestEntityTooLarge` at once, before anything reaches the upstream;
//! a body of unknown length is counted as it streams and fails the request
//! with the same 413 when it goes over, or with 408 when the client stops
//! sending it for too long ([`crate::body::Limited`]).

use crate::body::{self, Body};
use crate::faults::{self, GatewayError};
use crate::telemetry::RequestId;
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

#[derive(Clone, Copy)]
pub struct BodyLimitLayer {
    limit: u64,
    idle: Duration,
    heads: HeadLimits,
}

/// Limits on the request head.
#[derive(Clone, Copy)]
pub struct HeadLimits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl HeadLimits {
    fn check(&self, headers: &http::HeaderMap) -> Result<(), GatewayError> {
        if headers.len() > self.max_headers {
            return Err(GatewayError::TooManyHeaders {
                limit: self.max_headers,
            });
        }
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if bytes > self.max_header_bytes {
            return Err(GatewayError::HeadersTooLarge {
                limit: self.max_header_bytes,
            });
        }
        Ok(())
    }
}

impl BodyLimitLayer {
    pub fn new(limit: u64, idle: Duration, heads: HeadLimits) -> Self {
        Self { limit, idle, heads }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;
    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            limit: self.limit,
            idle: self.idle,
            heads: self.heads,
        }
    }
}

#[derive(Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: u64,
    idle: Duration,
    heads: HeadLimits,
}

pin_project_lite::pin_project! {
    #[project = BodyLimitFutureProj]
    pub enum BodyLimitFuture<F> {
        Rejected { response: Option<Response<Body>> },
        Inner { #[pin] future: F },
    }
}

impl<F, E> Future for BodyLimitFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BodyLimitFutureProj::Rejected { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            BodyLimitFutureProj::Inner { future } => future.poll(cx),
        }
    }
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<body::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BodyLimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Err(err) = self.heads.check(req.headers()) {
            return BodyLimitFuture::Rejected {
                response: Some(faults::respond(err, RequestId::of(&req))),
            };
        }
        let announced = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.limit) {
            let err = GatewayError::BodyTooLarge { limit: self.limit };
            return BodyLimitFuture::Rejected {
                response: Some(faults::respond(err, RequestId::of(&req))),
            };
        }
        let (limit, idle) = (self.limit, self.idle);
        let req = req.map(|b| body::boxed(body::Limited::new(b, limit, idle)));
        BodyLimitFuture::Inner {
            future: self.inner.call(req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn drain(req: Request<Body>) -> Result<Response<Body>, std::convert::Infallible> {
        let status = match req.into_body().collect().await {
            Ok(_) => 200,
            Err(e) if crate::proxy::caused_by::<body::TooLarge>(&*e) => 413,
            Err(_) => 400,
        };
        let mut r = Response::new(body::empty());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(r)
    }

    #[tokio::test]
    async fn announced_and_streamed_bodies_are_limited() {
        let svc = BodyLimitLayer::new(
            10,
            Duration::from_secs(5),
            HeadLimits {
                max_headers: 3,
                max_header_bytes: 100,
            },
        )
        .layer(tower::service_fn(drain));
        let req = Request::builder()
            .header("content-length", "11")
            .body(body::full("x".repeat(11)))
            .unwrap();
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 413);
        // No Content-Length: counted as it streams.
        let req = Request::new(body::full("x".repeat(11)));
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 413);
        let req = Request::new(body::full("x".repeat(10)));
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 200);
        let mut req = Request::new(body::empty());
        for i in 0..4 {
            req.headers_mut().insert(
                http::HeaderName::try_from(format!("x-{i}")).unwrap(),
                "v".parse().unwrap(),
            );
        }
        assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), 431);
        let req = Request::builder()
            .header("x-big", "v".repeat(100))
            .body(body::empty())
            .unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 431);
    }
}
