#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Transparent proxying: methods, paths, headers and bodies go through;
//! hop-by-hop headers do not; upstream URLs are rewritten.

mod support;

use http::Method;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn everything_end_to_end_passes_unchanged() {
    let up = echo_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "PURGE"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let a = client
            .send(
                method,
                "/accounts/a%20b/things?q=1&r=%2F&q=2",
                &[
                    ("x-custom", "v1"),
                    ("authorization", AUTH),
                    ("cookie", "a=1; OwnerId=zzz"),
                    ("accept", "text/plain"),
                ],
                "body \u{e9} bytes",
            )
            .await;
        assert_eq!(a.status, 200, "{m}");
        let v = a.json();
        assert_eq!(v["method"], m);
        assert_eq!(v["uri"], "/accounts/a%20b/things?q=1&r=%2F&q=2");
        assert_eq!(v["headers"]["x-custom"], "v1");
        assert_eq!(v["headers"]["authorization"], AUTH);
        assert_eq!(v["headers"]["cookie"], "a=1; OwnerId=zzz");
        assert_eq!(v["headers"]["accept"], "text/plain");
        assert_eq!(v["body"], "body \u{e9} bytes");
        assert_eq!(
            v["headers"]["x-request-id"],
            a.header("x-request-id").unwrap()
        );
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarded_headers_set() {
    let up = echo_upstream().await;
    let (gw, client) = gateway_before(up, "").await;
    let a = client
        .get(
            "/x",
            &[
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic eA=="),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    let h = &a.json()["headers"];
    for gone in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
    // An untrusted client's forwarded headers are replaced.
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], gw.addr.to_string());
}

#[tokio::test]
async fn trusted_proxies_extend_forwarded_headers() {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"")
        .replace("[server]", "[server]\ntrusted_proxies = [\"127.0.0.1\"]");
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    let a = client
        .get(
            "/x",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    let h = &a.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn upstream_urls_are_rewritten_in_location_and_json_only() {
    let up = echo_upstream().await;
    let (gw, client) = gateway_before(up, "").await;
    let public = gw.base.clone();
    let r = client.get("/redirect", &[]).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some(format!("{public}/orders/9?y=1").as_str())
    );
    let j = client.get("/json", &[]).await.json();
    assert_eq!(j["self"], format!("{public}/orders/1/"));
    assert_eq!(j["nested"]["list"][0], format!("{public}/accounts/a?x=1"));
    assert_eq!(j["nested"]["list"][1], "http://elsewhere.example/x");
    // Only whole URL values on the base are rewritten.
    assert_eq!(j["text"], format!("see {INTERNAL}/x"));
    assert_eq!(j["lookalike"], format!("{INTERNAL}9/x"));
    // Non-JSON bodies are not touched.
    assert_eq!(
        client.get("/html", &[]).await.text(),
        format!("<a href=\"{INTERNAL}/x\">x</a>")
    );
}

#[tokio::test]
async fn large_bodies_stream_through_intact() {
    let up = echo_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    let a = client.get("/big", &[]).await;
    assert_eq!(a.body.len(), 4 << 20);
    assert!(a.body.iter().all(|b| *b == b'x'));
    // A request body just under the limit goes through whole.
    let body = "y".repeat(65536);
    let e = client.send(Method::POST, "/echo", &[], &body).await;
    assert_eq!(e.json()["body"].as_str().unwrap().len(), 65536);
}

#[tokio::test]
async fn oversized_bodies_get_413_announced_or_streamed() {
    let up = echo_upstream().await;
    let (gw, client) = gateway_before(up, "").await;
    let a = client
        .send(Method::POST, "/echo", &[], &"y".repeat(65537))
        .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.fault().0, "requestEntityTooLarge");
    // Chunked, no length announced: refused once the count passes the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 40000, "z".repeat(40000));
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        gw.addr
    );
    let out = raw(
        gw.addr,
        &[
            head.as_bytes(),
            chunk.as_bytes(),
            chunk.as_bytes(),
            b"0\r\n\r\n",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    assert!(out.contains("requestEntityTooLarge"), "{out}");
    // Shorthand actions read their body with the same limit.
    let owner = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    let s = client
        .send(
            Method::POST,
            "/order/action",
            &[("cookie", &cookie(owner))],
            &"y".repeat(70000),
        )
        .await;
    assert_eq!(s.status, 413);
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_and_the_gateway_stays_up() {
    let up = echo_upstream().await;
    let (gw, client) = gateway_before(up, "").await;
    let out = raw(
        gw.addr,
        &[b"NOT HTTP AT ALL\r\n\r\n"],
        Duration::from_secs(5),
    )
    .await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    let out = raw(
        gw.addr,
        &[b"GET /x HTTP/1.1\r\nhost: a\r\ncontent-length: zz\r\n\r\n"],
        Duration::from_secs(5),
    )
    .await;
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    assert_eq!(client.get("/x", &[]).await.status, 200);
}

#[tokio::test]
async fn a_capped_upstream_serves_every_request_in_turn() {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        up,
        "max_connections = 1\n[store]\nkind = \"memory\"",
    );
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    // A streamed body holds no slot once its head is sent.
    let big = client.get("/big", &[]).await;
    assert_eq!(big.body.len(), 4 << 20);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let client = client.clone();
        calls.spawn(async move { client.get(&format!("/c/{i}"), &[]).await });
    }
    let answers = tokio::time::timeout(Duration::from_secs(20), calls.join_all())
        .await
        .expect("every call answered");
    assert!(answers.iter().all(|a| a.status == 200));
}
