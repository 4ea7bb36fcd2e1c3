//! Request size limits, checked before any work is done for a request.
//!
//! More header fields, or more header bytes, than configured: 431
//! `requestHeaderFieldsTooLarge`.
//! A body announced larger than the limit (`Content-Length`) is answered with
//! 413 `requestEntityTooLarge` at once, before anything reaches the upstream;
//! a body of unknown length is counted as it streams and fails the request
//! with the same 413 when it goes over, or with 408 when the client stops
//! sending it for too long ([`crate::body::Limited`]).

use super::{Guard, Verdict};
use crate::body::{self, Body};
use crate::faults::{Client, Error};
use crate::telemetry::RequestId;
use http::{Request, Response};
use std::time::Duration;

/// The size guard. `Copy`.
#[derive(Clone, Copy)]
pub struct SizeLimits {
    pub max_body: u64,
    /// Longest pause while a body streams in.
    pub body_idle: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
}

impl SizeLimits {
    fn check_head(&self, headers: &http::HeaderMap) -> Result<(), Error> {
        if headers.len() > self.max_headers {
            return Err(Error::client(
                Client::HeadTooLarge,
                format!(
                    "The request has more than {} header fields",
                    self.max_headers
                ),
            ));
        }
        let bytes: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if bytes > self.max_header_bytes {
            return Err(Error::client(
                Client::HeadTooLarge,
                format!(
                    "The request's header fields are larger than {} bytes",
                    self.max_header_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl<B> Guard<B> for SizeLimits
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<body::BoxError>,
{
    type Body = Body;
    type After = ();

    fn check(&self, req: &mut Request<B>) -> Verdict<()> {
        if let Err(err) = self.check_head(req.headers()) {
            return Verdict::Answer(err.respond(RequestId::of(req)));
        }
        let announced = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.max_body) {
            let err = Error::body_too_large(self.max_body);
            return Verdict::Answer(err.respond(RequestId::of(req)));
        }
        Verdict::Pass(())
    }

    fn pass(&self, req: Request<B>) -> Request<Body> {
        let (limit, idle) = (self.max_body, self.body_idle);
        req.map(|b| body::boxed(body::Limited::new(b, limit, idle)))
    }

    fn after((): (), _: &mut Response<Body>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guards::GuardLayer;
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    async fn drain(req: Request<Body>) -> Result<Response<Body>, std::convert::Infallible> {
        let status = match req.into_body().collect().await {
            Ok(_) => 200,
            Err(e) if crate::faults::caused_by::<body::TooLarge>(&*e) => 413,
            Err(_) => 400,
        };
        let mut r = Response::new(body::empty());
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(r)
    }

    #[tokio::test]
    async fn announced_and_streamed_bodies_are_limited() {
        let svc = GuardLayer::new(SizeLimits {
            max_body: 10,
            body_idle: Duration::from_secs(5),
            max_headers: 3,
            max_header_bytes: 100,
        })
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
