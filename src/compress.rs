//! Compression of answers toward clients that accept it, as nginx does with
//! `gzip on`: `br`, `zstd` or `gzip` by the client's `Accept-Encoding`, for
//! compressible types (JSON, text, XML, JavaScript) above a minimum size,
//! with `Vary: Accept-Encoding` (tower-http's compression does the work).
//!
//! The gateway asks the upstream for identity bodies (see
//! [`crate::upstream`]): it must read and rewrite most of them, so they are
//! compressed once, here, at the edge. A request without `Accept-Encoding`
//! takes the plain path, at no cost.

use crate::body::{self, Body};
use crate::config::CompressionConfig;
use http::header::{self, HeaderMap};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{Compression, CompressionBody};

/// Types worth compressing: text in any form.
fn compressible(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json" | "application/xml" | "application/javascript" | "image/svg+xml"
        )
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
}

type Compressible = tower_http::compression::predicate::And<
    SizeAbove,
    fn(http::StatusCode, http::Version, &HeaderMap, &http::Extensions) -> bool,
>;

fn predicate(min_size: u64) -> Compressible {
    let types: fn(http::StatusCode, http::Version, &HeaderMap, &http::Extensions) -> bool =
        |_, _, headers, _| compressible(headers);
    SizeAbove::new(u16::try_from(min_size).unwrap_or(u16::MAX)).and(types)
}

#[derive(Clone, Copy)]
pub struct CompressLayer {
    config: CompressionConfig,
}

impl CompressLayer {
    pub fn new(config: CompressionConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for CompressLayer {
    type Service = Compress<S>;
    fn layer(&self, inner: S) -> Compress<S> {
        Compress {
            inner,
            config: self.config,
        }
    }
}

#[derive(Clone)]
pub struct Compress<S> {
    inner: S,
    config: CompressionConfig,
}

impl<S, B> Service<Request<B>> for Compress<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CompressFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.config.enabled || !req.headers().contains_key(header::ACCEPT_ENCODING) {
            return CompressFuture::Plain {
                future: self.inner.call(req),
            };
        }
        // The service made ready by poll_ready goes with the request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        let mut compression = Compression::new(ready)
            .no_deflate()
            .compress_when(predicate(self.config.min_size));
        CompressFuture::Compressed {
            future: compression.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    #[project = CompressFutureProj]
    pub enum CompressFuture<S, B>
    where
        S: Service<Request<B>, Response = Response<Body>>,
    {
        Plain { #[pin] future: S::Future },
        Compressed {
            #[pin]
            future: <Compression<S, Compressible> as Service<Request<B>>>::Future,
        },
    }
}

impl<S, B> Future for CompressFuture<S, B>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CompressFutureProj::Plain { future } => future.poll(cx),
            CompressFutureProj::Compressed { future } => {
                let resp: Response<CompressionBody<Body>> = ready!(future.poll(cx))?;
                Poll::Ready(Ok(resp.map(body::boxed)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    use tower::ServiceExt;

    async fn json(req: Request<()>) -> Result<Response<Body>, std::convert::Infallible> {
        let size: usize = req.uri().path()[1..].parse().unwrap();
        let text = format!("{{\"pad\": \"{}\"}}", "x".repeat(size));
        let mut resp = Response::new(body::full(text));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/json; charset=UTF-8".parse().unwrap(),
        );
        Ok(resp)
    }

    async fn call(accept: Option<&str>, size: usize, enabled: bool) -> Response<Body> {
        let svc = CompressLayer::new(CompressionConfig {
            enabled,
            min_size: 1024,
        })
        .layer(tower::service_fn(json));
        let mut req = Request::builder().uri(format!("/{size}"));
        if let Some(a) = accept {
            req = req.header(header::ACCEPT_ENCODING, a);
        }
        svc.oneshot(req.body(()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn compresses_what_the_client_accepts_above_the_minimum() {
        let resp = call(Some("gzip, deflate, br, zstd"), 4000, true).await;
        let coding = resp.headers()["content-encoding"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            ["br", "zstd", "gzip"].contains(&coding.as_str()),
            "{coding}"
        );
        assert!(
            resp.headers()["vary"]
                .to_str()
                .unwrap()
                .contains("accept-encoding")
        );
        let gz = call(Some("gzip"), 4000, true).await;
        assert_eq!(gz.headers()["content-encoding"], "gzip");
        let packed = gz.into_body().collect().await.unwrap().to_bytes();
        assert!(packed.len() < 1000, "{}", packed.len());
        let mut plain = String::new();
        async_compression::tokio::bufread::GzipDecoder::new(&packed[..])
            .read_to_string(&mut plain)
            .await
            .unwrap();
        assert!(plain.starts_with("{\"pad\": \"xxx"), "{plain}");
    }

    #[tokio::test]
    async fn small_unaccepted_or_switched_off_answers_pass_as_they_are() {
        for (accept, size, enabled) in [
            (Some("gzip"), 100, true),
            (None, 4000, true),
            (Some("identity"), 4000, true),
            (Some("gzip"), 4000, false),
        ] {
            let resp = call(accept, size, enabled).await;
            assert!(
                !resp.headers().contains_key("content-encoding"),
                "{accept:?} {size} {enabled}"
            );
        }
    }
}
