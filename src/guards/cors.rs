//! CORS: browsers may call the gateway from other origins.
//!
//! The outermost guard, after the request facts. A preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here with 204, listing the
//! methods the resource supports, before any limit or lookup: browsers send
//! no cookies with it. Every other answer to a request with an `Origin` gets
//! `Access-Control-Allow-Origin`: the origin itself, with
//! `Access-Control-Allow-Credentials: true`, when it is one of the configured
//! origins (so a page there can send the `OwnerId` cookie), `*` otherwise.
//! With configured origins, what an answer carries depends on the request's
//! `Origin`, so every answer says so with `Vary: Origin` (a shared cache must
//! not serve one origin's answer to another).

use super::{Guard, Verdict};
use crate::body::{self, Body};
use crate::config::CorsConfig;
use crate::context::Facts;
use crate::route::Route;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// The methods a resource supports, as the legacy API lists them.
pub fn methods_for(route: &Route) -> &'static str {
    match route {
        Route::Orders => "POST, OPTIONS",
        Route::Shorthand { rest } if rest.is_itself() => "GET, POST, DELETE, OPTIONS",
        Route::Order { rest, .. } if rest.is_itself() => "GET, DELETE, OPTIONS",
        Route::Order { rest, .. } | Route::Shorthand { rest } if rest.is_action() => {
            "POST, OPTIONS"
        }
        _ => "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
    }
}

/// The CORS guard. Cheap to clone.
#[derive(Clone)]
pub struct Cors {
    config: Arc<CorsConfig>,
}

impl Cors {
    pub fn new(config: CorsConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// The origin headers for a request's `Origin`.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<Allow> {
        let origin = origin?;
        let credentials = self.config.allowed_origins.iter().any(|o| o == origin);
        Some(Allow {
            origin: if credentials {
                origin.clone()
            } else {
                HeaderValue::from_static("*")
            },
            credentials,
            expose: self.config.expose_headers.clone(),
        })
    }
}

/// What an answer says to the request's origin.
struct Allow {
    origin: HeaderValue,
    credentials: bool,
    expose: HeaderValue,
}

/// What the guard keeps for the answer: the origin's headers boxed, as
/// most requests come without an `Origin` (and every request's future is
/// as large as what the guard keeps).
pub struct After {
    allow: Option<Box<Allow>>,
    vary: bool,
}

fn apply(resp: &mut Response<Body>, after: After) {
    let h = resp.headers_mut();
    if after.vary {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    let Some(allow) = after.allow else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow.origin);
    if allow.credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    } else {
        h.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
    }
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, allow.expose);
}

impl<B> Guard<B> for Cors {
    type Body = B;
    type After = After;

    fn check(&self, req: &mut Request<B>) -> Verdict<After> {
        let after = After {
            allow: self.allow(req.headers().get(header::ORIGIN)).map(Box::new),
            vary: !self.config.allowed_origins.is_empty(),
        };
        let preflight = req.method() == Method::OPTIONS
            && after.allow.is_some()
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if !preflight {
            return Verdict::Pass(after);
        }
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let methods = match &Facts::of(req).route {
            Ok(route) => methods_for(route),
            Err(_) => methods_for(&Route::Other),
        };
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned();
        apply(&mut resp, after);
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
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
                "origin, access-control-request-method, access-control-request-headers",
            ),
        );
        Verdict::Answer(resp)
    }

    fn pass(&self, req: Request<B>) -> Request<B> {
        req
    }

    fn after(after: After, resp: &mut Response<Body>) {
        apply(resp, after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guards::GuardLayer;
    use crate::route::classify;
    use tower::{Layer, Service, ServiceExt};

    async fn ok(_: Request<()>) -> Result<Response<Body>, std::convert::Infallible> {
        let mut r = Response::new(body::empty());
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        Ok(r)
    }

    fn svc()
    -> impl Service<Request<()>, Response = Response<Body>, Error = std::convert::Infallible> {
        let config = CorsConfig {
            allowed_origins: vec![HeaderValue::from_static("http://app.example")],
            ..Default::default()
        };
        GuardLayer::new(Cors::new(config)).layer(tower::service_fn(ok))
    }

    /// A request as it comes from the facts layer.
    fn facts(mut req: Request<()>) -> Request<()> {
        let facts = Facts::new(req.uri().path(), req.headers(), None, &[], None);
        req.extensions_mut().insert(facts);
        req
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
        let resp = svc().oneshot(facts(req)).await.unwrap();
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
        // No Origin: no CORS headers.
        let resp = svc().oneshot(Request::new(())).await.unwrap();
        assert!(!resp.headers().contains_key("access-control-expose-headers"));
    }

    #[tokio::test]
    async fn answers_vary_by_origin_when_origins_are_configured() {
        let vary = |resp: &Response<Body>| {
            resp.headers()
                .get_all(header::VARY)
                .iter()
                .any(|v| v.to_str().unwrap().contains("origin"))
        };
        for origin in [
            Some("http://app.example"),
            Some("http://evil.example"),
            None,
        ] {
            let mut req = Request::builder().uri("/orders/x");
            if let Some(o) = origin {
                req = req.header("origin", o);
            }
            let resp = svc().oneshot(req.body(()).unwrap()).await.unwrap();
            assert!(vary(&resp), "{origin:?}");
        }
        // Without configured origins every origin gets `*`: nothing varies.
        let star = GuardLayer::new(Cors::new(CorsConfig::default())).layer(tower::service_fn(ok));
        let req = Request::builder()
            .header("origin", "http://app.example")
            .body(())
            .unwrap();
        let resp = star.oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        assert!(!vary(&resp));
    }

    #[test]
    fn methods_by_resource() {
        assert_eq!(methods_for(&classify("/orders").unwrap()), "POST, OPTIONS");
        assert_eq!(
            methods_for(&classify("/order").unwrap()),
            "GET, POST, DELETE, OPTIONS"
        );
        assert_eq!(
            methods_for(&classify("/orders/x/").unwrap()),
            "GET, DELETE, OPTIONS"
        );
        assert_eq!(
            methods_for(&classify("/order/action").unwrap()),
            "POST, OPTIONS"
        );
        assert!(methods_for(&classify("/order/account").unwrap()).contains("PUT"));
    }
}
