#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One fault shape for every error, whatever the upstream does.

mod support;

use http::Method;
use support::*;

async fn setup() -> (Gateway, HttpClient) {
    let up = misbehaving_upstream().await;
    // A short response timeout so that /slow is a 504 quickly.
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"")
        .replace("response_timeout_ms = 5000", "response_timeout_ms = 500");
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    (gw, client)
}

#[tokio::test]
async fn upstream_error_bodies_of_every_shape_are_normalised() {
    let (_gw, client) = setup().await;
    let cases = [
        (
            "/html",
            503,
            "serviceUnavailable",
            "503 Service Temporarily Unavailable",
        ),
        ("/text", 500, "computeFault", "database is on fire"),
        ("/empty", 404, "itemNotFound", "Not Found"),
        (
            "/error-json",
            400,
            "badRequest",
            "quantity must be positive",
        ),
        ("/error-object", 422, "badRequest", "nested message"),
        ("/message-json", 409, "conflict", "plain message"),
        ("/invalid-json", 500, "computeFault", "{\"broken\":"),
        ("/shaped", 400, "computeFault", "Account has not been set"),
        (
            "/shaped-guid",
            409,
            "conflict",
            "A domain in the order contains a restricted word",
        ),
        ("/huge", 500, "computeFault", "Internal Server Error"),
    ];
    for (path, status, kind, message) in cases {
        let a = client.get(path, &[]).await;
        assert_eq!(a.status, status, "{path}");
        assert_eq!(a.fault(), (kind.to_owned(), message.to_owned()), "{path}");
    }
    // The upstream's own guid is kept aside, not lost.
    let a = client.get("/shaped-guid", &[]).await;
    assert_eq!(
        a.header("x-upstream-guid"),
        Some("bfb2988f-d745-4b2a-9eff-f2deed3451db")
    );
    // A client's request id is used as the guid.
    let a = client.get("/text", &[("x-request-id", "trace-42")]).await;
    assert_eq!(a.json()["computeFault"]["guid"], "trace-42");
    // Success bodies pass untouched.
    assert_eq!(client.get("/ok", &[]).await.text(), "ok");
}

#[tokio::test]
async fn upstream_failures_are_502_or_504_and_the_gateway_recovers() {
    let (_gw, client) = setup().await;
    for (path, status, kind) in [
        ("/reset-before-headers", 502, "badGateway"),
        ("/reset-mid-headers", 502, "badGateway"),
        ("/reset-mid-error-body", 502, "badGateway"),
        ("/invalid-http", 502, "badGateway"),
        ("/slow", 504, "gatewayTimeout"),
    ] {
        let a = client.get(path, &[]).await;
        assert_eq!(a.status, status, "{path}: {a:?}");
        assert_eq!(a.fault().0, kind, "{path}");
        assert_eq!(client.get("/ok", &[]).await.status, 200, "after {path}");
    }
}

#[tokio::test]
async fn a_success_body_that_breaks_off_ends_the_connection_not_the_gateway() {
    let (gw, client) = setup().await;
    // Headers were sent already: the client sees the body end early.
    let head = format!("GET /reset-mid-body HTTP/1.1\r\nhost: {}\r\n\r\n", gw.addr);
    let out = raw(
        gw.addr,
        &[head.as_bytes()],
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("content-length: 100"), "{out}");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        body.len() < 100,
        "the connection was not ended early: {out}"
    );
    assert_eq!(client.get("/ok", &[]).await.status, 200);
}

#[tokio::test]
async fn an_unreachable_upstream_that_comes_back_is_used_again() {
    // Reserve a port, then free it: nothing listens there.
    let port = listener().await.local_addr().unwrap();
    let (_gw, client) = gateway_before(port, "").await;
    let a = client.get("/x", &[]).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.fault().0, "badGateway");
    // The upstream starts on that port: the next call goes through.
    let backend = ordergate::backend::Backend::start(
        tokio::net::TcpListener::bind(port).await.unwrap(),
        None,
    )
    .unwrap();
    let b = client.send(Method::POST, "/orders", &[], "").await;
    assert_eq!(b.status, 202);
    drop(backend);
}

#[tokio::test]
async fn a_call_that_can_create_and_that_the_upstream_drops_is_a_502_naming_nothing_inside() {
    // POST can make an order, so it runs in a task of its own; an upstream
    // that drops it, before or amid its answer's head, gives the same fault.
    let up = misbehaving_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    let owner = "2f6c1d7e-8a4b-4e3c-9d5f-1a2b3c4d5e6f";
    for path in ["/reset-before-headers", "/reset-mid-headers"] {
        let a = client
            .send(Method::POST, path, &[("cookie", &cookie(owner))], "{}")
            .await;
        assert_eq!(a.status, 502, "{path}: {a:?}");
        let (kind, message) = a.fault();
        assert_eq!(kind, "badGateway", "{path}");
        assert!(!message.is_empty(), "{path}");
        let text = a.text();
        for inside in [up.to_string().as_str(), "127.0.0.1", "os error", "hyper"] {
            assert!(!text.contains(inside), "{path}: {inside} in {text}");
        }
    }
}
