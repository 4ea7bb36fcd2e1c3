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
        let id = crate::context::Facts::of(&req).request_id.clone();
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
                    let guid = RequestId::text(ctx.id.as_ref()).to_owned();
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

#[cfg(test)]
mod tests {
    //! The layer alone, with `oneshot` against a stub inner service that
    //! answers what each test gives it.
    use super::*;
    use http::header::CONTENT_ENCODING;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tower::ServiceExt;

    const ID: &str = "2f1c5a52-0b0e-4d5e-9a51-6f0f2d1f6c11";

    /// Sends `req` through the layer to an inner service that answers
    /// `answer`; returns the status, headers and body the client gets.
    async fn through(
        method: Method,
        answer: Response<Body>,
    ) -> (StatusCode, http::HeaderMap, serde_json::Value) {
        let mut answer = Some(answer);
        let inner = tower::service_fn(move |_: Request<()>| {
            let resp = answer
                .take()
                .unwrap_or_else(|| Response::new(body::empty()));
            async move { Ok::<_, std::convert::Infallible>(resp) }
        });
        let svc = FaultLayer::new(FaultTypes::default(), 64 * 1024).layer(inner);
        let mut req = Request::builder()
            .method(method)
            .uri("/orders/o1")
            .body(())
            .unwrap();
        crate::context::Facts::settle(&mut req).request_id = Some(HeaderValue::from_static(ID));
        let resp = svc.oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(
                String::from_utf8_lossy(&bytes).into_owned(),
            ))
        };
        (parts.status, parts.headers, json)
    }

    fn answer(status: u16, content_type: &str, body: impl Into<bytes::Bytes>) -> Response<Body> {
        Response::builder()
            .status(status)
            .header(CONTENT_TYPE, content_type)
            .body(body::full(body))
            .unwrap()
    }

    /// The fault's one member, `{"<type>": {code, message, details, guid}}`.
    fn fault(json: &serde_json::Value) -> (&str, &serde_json::Value) {
        let obj = json.as_object().expect("a JSON object");
        assert_eq!(obj.len(), 1, "one member: {json}");
        let (kind, inner) = obj.iter().next().unwrap();
        (kind.as_str(), inner)
    }

    #[tokio::test]
    async fn answers_below_400_pass_untouched() {
        let (status, headers, json) =
            through(Method::GET, answer(200, "text/plain", "as it was")).await;
        assert_eq!(status, 200);
        assert_eq!(headers[CONTENT_TYPE], "text/plain");
        assert_eq!(json, "as it was");
    }

    #[tokio::test]
    async fn an_upstream_error_page_becomes_the_fault_shape_with_the_request_id() {
        let page = "<html><body><h1>404 Not Found</h1><hr>nginx</body></html>";
        let (status, _, json) = through(Method::GET, answer(404, "text/html", page)).await;
        assert_eq!(status, 404);
        let (kind, inner) = fault(&json);
        assert_eq!(kind, "itemNotFound");
        assert_eq!(inner["code"], 404);
        assert_eq!(inner["guid"], ID);
        assert!(!inner["message"].as_str().unwrap_or("").contains("nginx"));
    }

    #[tokio::test]
    async fn an_upstream_fault_keeps_its_words_and_its_guid_goes_to_a_header() {
        let body = r#"{"computeFault":{"code":400,"message":"Account has not been set","details":"","guid":"upstream-guid-1"}}"#;
        let (status, headers, json) =
            through(Method::POST, answer(400, "application/json", body)).await;
        assert_eq!(status, 400);
        let (kind, inner) = fault(&json);
        assert_eq!(kind, "computeFault");
        assert_eq!(inner["message"], "Account has not been set");
        assert_eq!(inner["guid"], ID);
        assert_eq!(headers["x-upstream-guid"], "upstream-guid-1");
    }

    #[tokio::test]
    async fn a_compressed_upstream_fault_is_read_decoded() {
        let body =
            br#"{"computeFault":{"code":400,"message":"Account has not been set","details":""}}"#;
        let mut gz = Vec::new();
        async_compression::tokio::bufread::GzipEncoder::new(&body[..])
            .read_to_end(&mut gz)
            .await
            .unwrap();
        let mut resp = answer(400, "application/json", gz);
        resp.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let (status, headers, json) = through(Method::GET, resp).await;
        assert_eq!(status, 400);
        assert!(headers.get(CONTENT_ENCODING).is_none());
        let (kind, inner) = fault(&json);
        assert_eq!(kind, "computeFault");
        assert_eq!(inner["message"], "Account has not been set");
    }

    #[tokio::test]
    async fn an_error_body_in_an_unknown_coding_is_a_502_that_names_nothing_inside() {
        let mut resp = answer(500, "application/json", "\x00\x01garbage");
        resp.headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("x-proprietary"));
        let (status, _, json) = through(Method::GET, resp).await;
        assert_eq!(status, 502);
        let (kind, inner) = fault(&json);
        assert_eq!(kind, "badGateway");
        assert!(!inner.to_string().contains("x-proprietary"), "{inner}");
    }

    #[tokio::test]
    async fn an_error_body_that_breaks_off_is_a_502_without_the_cause() {
        let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, body::BoxError>> = vec![
            Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"{\"partial\":",
            ))),
            Err("connection reset by peer (os error 104)".into()),
        ];
        let broken = body::boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
            chunks,
        )));
        let resp = Response::builder()
            .status(503)
            .header(CONTENT_TYPE, "application/json")
            .body(broken)
            .unwrap();
        let (status, _, json) = through(Method::GET, resp).await;
        assert_eq!(status, 502);
        let (_, inner) = fault(&json);
        assert!(!inner.to_string().contains("os error"), "{inner}");
        assert_eq!(inner["guid"], ID);
    }

    #[tokio::test]
    async fn a_fault_marked_inside_is_rendered_with_its_words() {
        let mut resp = Response::builder().status(409).body(body::empty()).unwrap();
        resp.extensions_mut().insert(FaultInfo {
            message: "There is already a new order".into(),
            details: "".into(),
        });
        let (status, headers, json) = through(Method::POST, resp).await;
        assert_eq!(status, 409);
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let (kind, inner) = fault(&json);
        assert_eq!(kind, FaultTypes::default().name(StatusCode::CONFLICT));
        assert_eq!(inner["message"], "There is already a new order");
        assert_eq!(inner["guid"], ID);
    }

    #[tokio::test]
    async fn a_head_fault_keeps_its_headers_but_no_body() {
        let (status, headers, json) =
            through(Method::HEAD, answer(404, "text/html", "<h1>gone</h1>")).await;
        assert_eq!(status, 404);
        assert_eq!(json, serde_json::Value::Null);
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
}
