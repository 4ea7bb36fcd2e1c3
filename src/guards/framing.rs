//! Request framing the gateway will not pass on: the checks RFC 9112 asks of
//! a server, answered before anything reaches the upstream.
//!
//! An HTTP/1.1 request without a `Host`, or with more than one, is 400
//! (RFC 9112 §3.2): two hops could read two different targets from it.
//! `CONNECT` is 405: the gateway is not a forward proxy. A request in
//! absolute form (`GET http://host/path`) is served for the host it names:
//! that host replaces `Host` (RFC 9112 §3.2.2), and the upstream gets the
//! origin form.

use super::{Guard, Verdict};
use crate::body::Body;
use crate::faults::{Client, Error};
use crate::telemetry::RequestId;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};

/// The framing guard.
#[derive(Clone, Copy, Default)]
pub struct Framing;

fn refuse<B>(req: &Request<B>, err: Error) -> Verdict<()> {
    Verdict::Answer(err.respond(RequestId::of(req)))
}

impl<B> Guard<B> for Framing {
    type Body = B;
    type After = ();

    fn check(&self, req: &mut Request<B>) -> Verdict<()> {
        if req.method() == Method::CONNECT {
            let mut resp = Error::client(
                Client::BadMethod,
                "CONNECT is not served: the gateway is not a forward proxy",
            )
            .respond(RequestId::of(req));
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
            return Verdict::Answer(resp);
        }
        if req.version() != Version::HTTP_11 {
            // HTTP/1.0 needs no Host; HTTP/2 carries `:authority` instead.
            return Verdict::Pass(());
        }
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let first = hosts.next();
        if hosts.next().is_some() {
            let err = Error::client(Client::BadRequest, "The request has more than one Host");
            return refuse(req, err);
        }
        // Absolute form: the target's host is the one the client asked for.
        if let Some(authority) = req.uri().authority() {
            match HeaderValue::from_str(authority.as_str()) {
                Ok(host) => {
                    req.headers_mut().insert(header::HOST, host);
                }
                Err(_) => {
                    let err = Error::client(Client::BadRequest, "The request target is not valid");
                    return refuse(req, err);
                }
            }
        } else if first.is_none() {
            let err = Error::client(Client::BadRequest, "The request has no Host");
            return refuse(req, err);
        }
        Verdict::Pass(())
    }

    fn pass(&self, req: Request<B>) -> Request<B> {
        req
    }

    fn after((): (), _: &mut Response<Body>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body;
    use crate::faults::FaultInfo;
    use crate::guards::GuardLayer;
    use tower::{Layer, ServiceExt};

    async fn echo_host(req: Request<()>) -> Result<Response<Body>, std::convert::Infallible> {
        let host = req.headers().get(header::HOST).cloned();
        let mut resp = Response::new(body::empty());
        if let Some(h) = host {
            resp.headers_mut().insert("x-host", h);
        }
        Ok(resp)
    }

    async fn call(req: Request<()>) -> Response<Body> {
        GuardLayer::new(Framing)
            .layer(tower::service_fn(echo_host))
            .oneshot(req)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn host_rules_of_http_1_1() {
        let none = Request::builder().uri("/orders").body(()).unwrap();
        let resp = call(none).await;
        assert_eq!(resp.status(), 400);
        assert!(resp.extensions().get::<FaultInfo>().is_some());

        let two = Request::builder()
            .uri("/orders")
            .header("host", "a.example")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(call(two).await.status(), 400);

        let one = Request::builder()
            .uri("/orders")
            .header("host", "a.example")
            .body(())
            .unwrap();
        assert_eq!(call(one).await.headers()["x-host"], "a.example");

        // HTTP/1.0 may leave Host out.
        let old = Request::builder()
            .version(Version::HTTP_10)
            .uri("/orders")
            .body(())
            .unwrap();
        assert_eq!(call(old).await.status(), 200);
    }

    #[tokio::test]
    async fn absolute_form_names_the_host() {
        let req = Request::builder()
            .uri("http://gw.example:8080/orders")
            .header("host", "other.example")
            .body(())
            .unwrap();
        let resp = call(req).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-host"], "gw.example:8080");
    }

    #[tokio::test]
    async fn connect_is_405() {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("upstream.example:443")
            .header("host", "upstream.example:443")
            .body(())
            .unwrap();
        let resp = call(req).await;
        assert_eq!(resp.status(), 405);
        assert!(resp.headers().contains_key("allow"));
    }
}
