//! CORS: browsers may call the gateway from other origins.
//!
//! Outermost after the request id. A preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here with 204, listing the
//! methods the resource supports, before any limit or lookup: browsers send
//! no cookies with it. Every other answer to a request with an `Origin` gets
//! `Access-Control-Allow-Origin`: the origin itself, with
//! `Access-Control-Allow-Credentials: true`, when it is one of the configured
//! origins (so a page there can send the `OwnerId` cookie), `*` otherwise.

use crate::body::{self, Body};
use crate::shorthand::{Route, classify};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Origins echoed back with credentials allowed (`scheme://host[:port]`).
    pub allowed_origins: Vec<HeaderValue>,
    /// Request headers a preflight may ask for; empty: whatever it asks.
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: HeaderValue,
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_headers: None,
            expose_headers: HeaderValue::from_static(
                "location, x-request-id, retry-after, ratelimit, ratelimit-policy",
            ),
            max_age_secs: 600,
        }
    }
}

/// The methods a resource supports, as the legacy API lists them.
pub fn methods_for(path: &str) -> &'static str {
    match classify(path) {
        Ok(Route::Orders) => "POST, OPTIONS",
        Ok(Route::Shorthand { rest }) if Route::is_order_itself(rest) => {
            "GET, POST, DELETE, OPTIONS"
        }
        Ok(Route::Order { rest, .. }) if Route::is_order_itself(rest) => "GET, DELETE, OPTIONS",
        Ok(Route::Order { rest, .. } | Route::Shorthand { rest })
            if rest.trim_end_matches('/') == "/action" =>
        {
            "POST, OPTIONS"
        }
        _ => "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
    }
}

#[derive(Clone)]
pub struct CorsLayer {
    config: Arc<CorsConfig>,
}

impl CorsLayer {
    pub fn new(config: CorsConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;
    fn layer(&self, inner: S) -> Cors<S> {
        Cors {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

#[derive(Clone)]
pub struct Cors<S> {
    inner: S,
    config: Arc<CorsConfig>,
}

static ALLOW_ORIGIN: HeaderName = header::ACCESS_CONTROL_ALLOW_ORIGIN;

impl<S> Cors<S> {
    /// The origin headers for a request's `Origin`.
    fn origin_headers(&self, origin: Option<&HeaderValue>) -> Option<(HeaderValue, bool)> {
        let origin = origin?;
        if self.config.allowed_origins.iter().any(|o| o == origin) {
            Some((origin.clone(), true))
        } else {
            Some((HeaderValue::from_static("*"), false))
        }
    }
}

fn apply(resp: &mut Response<Body>, allow: (HeaderValue, bool), expose: &HeaderValue) {
    let h = resp.headers_mut();
    let (origin, credentials) = allow;
    h.insert(ALLOW_ORIGIN.clone(), origin);
    if credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.append(header::VARY, HeaderValue::from_static("origin"));
    } else {
        h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
}

pin_project_lite::pin_project! {
    #[project = CorsFutureProj]
    pub enum CorsFuture<F> {
        Preflight { response: Option<Response<Body>> },
        Inner { #[pin] future: F, allow: Option<(HeaderValue, bool)>, expose: HeaderValue },
    }
}

impl<F, E> Future for CorsFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CorsFutureProj::Preflight { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending,
            },
            CorsFutureProj::Inner {
                future,
                allow,
                expose,
            } => {
                let mut resp = ready!(future.poll(cx))?;
                if let Some(allow) = allow.take() {
                    apply(&mut resp, allow, expose);
                }
                Poll::Ready(Ok(resp))
            }
        }
    }
}

impl<S, B> Service<Request<B>> for Cors<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = CorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let allow = self.origin_headers(req.headers().get(header::ORIGIN));
        let preflight = req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if let (true, Some(allow)) = (preflight, allow.clone()) {
            let mut resp = Response::new(body::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            apply(&mut resp, allow, &self.config.expose_headers);
            let h = resp.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods_for(req.uri().path())),
            );
            let asked = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned();
            if let Some(v) = self.config.allow_headers.clone().or(asked) {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from(self.config.max_age_secs),
            );
            h.append(
                header::VARY,
                HeaderValue::from_static(
                    "access-control-request-method, access-control-request-headers",
                ),
            );
            return CorsFuture::Preflight {
                response: Some(resp),
            };
        }
        CorsFuture::Inner {
            future: self.inner.call(req),
            allow,
            expose: self.config.expose_headers.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn ok(_: Request<()>) -> Result<Response<Body>, std::convert::Infallible> {
        let mut r = Response::new(body::empty());
        r.headers_mut()
            .insert(ALLOW_ORIGIN.clone(), HeaderValue::from_static("*"));
        Ok(r)
    }

    fn svc()
    -> impl Service<Request<()>, Response = Response<Body>, Error = std::convert::Infallible> {
        let config = CorsConfig {
            allowed_origins: vec![HeaderValue::from_static("http://app.example")],
            ..Default::default()
        };
        CorsLayer::new(config).layer(tower::service_fn(ok))
    }

    #[tokio::test]
    async fn preflight_lists_the_resources_methods() {
        let req = Request::builder()
            .method(Method::OPTIONS)
            .uri("/orders/abc/action")
            .header("origin", "http://app.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(())
            .unwrap();
        let resp = svc().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), 204);
        let h = resp.headers();
        assert_eq!(h["access-control-allow-methods"], "POST, OPTIONS");
        assert_eq!(h["access-control-allow-origin"], "http://app.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-headers"], "content-type");
    }

    #[tokio::test]
    async fn other_origins_get_a_star_without_credentials() {
        let req = Request::builder()
            .uri("/order")
            .header("origin", "http://evil.example")
            .body(())
            .unwrap();
        let resp = svc().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        assert!(
            !resp
                .headers()
                .contains_key("access-control-allow-credentials")
        );
        // No Origin: untouched.
        let resp = svc().oneshot(Request::new(())).await.unwrap();
        assert!(!resp.headers().contains_key("access-control-expose-headers"));
    }

    #[test]
    fn methods_by_resource() {
        assert_eq!(methods_for("/orders"), "POST, OPTIONS");
        assert_eq!(methods_for("/order"), "GET, POST, DELETE, OPTIONS");
        assert_eq!(methods_for("/orders/x/"), "GET, DELETE, OPTIONS");
        assert_eq!(methods_for("/order/action"), "POST, OPTIONS");
        assert!(methods_for("/order/account").contains("PUT"));
    }
}
