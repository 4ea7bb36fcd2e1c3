//! Telemetry: request ids (the first layer of the stack), the access log,
//! metrics, the admin listener and its status page, and OpenTelemetry traces.
//!
//! The request id is taken from the configured header when the client sent a usable one,
//! or makes a UUIDv4; puts it on the request (so it goes upstream and into the
//! fault `guid`) and on the response.

pub mod access_log;
pub mod admin;
pub mod latency;
pub mod log;
pub mod metrics;
pub mod status;
pub mod trace;

use http::{HeaderName, HeaderValue, Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// The request id of a request, as its facts hold it
/// ([`crate::context::Facts::request_id`]); empty without one.
pub struct RequestId;

impl RequestId {
    pub fn of<B>(req: &Request<B>) -> &str {
        Self::text(crate::context::Facts::of(req).request_id.as_ref())
    }

    /// An id kept as a header value, as text (a settled id is ASCII);
    /// empty without one.
    pub fn text(id: Option<&HeaderValue>) -> &str {
        id.and_then(|id| id.to_str().ok()).unwrap_or("")
    }
}

const MAX_INCOMING_ID: usize = 128;

fn usable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_INCOMING_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// A new request id (UUIDv4).
pub fn generate() -> HeaderValue {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
    // Its bytes owned where its count of clones is kept: one allocation,
    // and the clones (request header, the request's facts, answer header)
    // share it.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

#[derive(Clone)]
pub struct RequestIdLayer {
    header: HeaderName,
}

impl RequestIdLayer {
    pub fn new(header: HeaderName) -> Self {
        Self { header }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            header: self.header.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B, RB> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = match req.headers().get(&self.header) {
            Some(v) if usable(v) => v.clone(),
            _ => {
                let v = generate();
                req.headers_mut().insert(self.header.clone(), v.clone());
                v
            }
        };
        // On the request's facts (the server's, else new ones): no
        // extension of its own to box.
        crate::context::Facts::settle(&mut req).request_id = Some(id.clone());
        RequestIdFuture {
            inner: self.inner.call(req),
            id: Some(id),
            header: self.header.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
        header: HeaderName,
    }
}

impl<F, RB, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut resp = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            resp.headers_mut().insert(this.header.clone(), id);
        }
        Poll::Ready(Ok(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn echo(req: Request<()>) -> Result<Response<String>, std::convert::Infallible> {
        Ok(Response::new(RequestId::of(&req).to_owned()))
    }

    #[tokio::test]
    async fn keeps_a_usable_id_and_replaces_a_bad_one() {
        let svc = RequestIdLayer::new(HeaderName::from_static("x-request-id"))
            .layer(tower::service_fn(echo));
        let req = Request::builder()
            .header("x-request-id", "abc-123")
            .body(())
            .unwrap();
        let resp = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["x-request-id"], "abc-123");
        assert_eq!(resp.body(), "abc-123");

        let req = Request::builder()
            .header("x-request-id", "bad id\"<>")
            .body(())
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 36);
        assert_eq!(resp.body(), &id);
        let uuid = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        assert_eq!(id, uuid.hyphenated().to_string(), "lower case, hyphenated");
        assert_ne!(generate(), generate());
    }
}
