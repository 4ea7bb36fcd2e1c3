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
async fn headers_with_underscores_are_not_forwarded() {
    let up = echo_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    let a = client
        .get(
            "/x",
            &[
                ("transfer_encoding", "chunked"),
                ("content_length", "5"),
                ("x_forwarded_for", "6.6.6.6"),
                ("x-kept", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let h = &a.json()["headers"];
    for gone in ["transfer_encoding", "content_length", "x_forwarded_for"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
    assert_eq!(h["x-kept"], "1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(a.json()["body"], "");
}

#[tokio::test]
async fn an_http2_clients_host_is_forwarded_as_x_forwarded_host() {
    let up = echo_upstream().await;
    let (gw, _) = gateway_before(up, "").await;
    // HTTP/2 by prior knowledge: the host travels as the URI's authority,
    // with no Host header.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client
        .get(format!("http://{}/x", gw.addr).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-host"], gw.addr.to_string(), "{h}");
    // The upstream still gets a Host: its own.
    assert_eq!(h["host"], up.to_string(), "{h}");
    // A pooled answer's length (kept out of its header map) reaches the
    // HTTP/2 client too, from the body's exact size.
    let resp = client
        .get(format!("http://{}/html", gw.addr).parse().unwrap())
        .await
        .unwrap();
    let length = resp.headers().get("content-length").cloned();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(!body.is_empty());
    assert_eq!(length.expect("a length"), body.len().to_string().as_str());
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

/// What [`keep_alive_upstream`] has seen.
#[derive(Default)]
struct Seen {
    accepted: std::sync::atomic::AtomicUsize,
    closed_by_peer: std::sync::atomic::AtomicUsize,
}

impl Seen {
    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn closed_by_peer(&self) -> usize {
        self.closed_by_peer
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A keep-alive upstream speaking raw HTTP/1.1, one request at a time per
/// connection, counting connections: `/len`, `/chunked` and `/empty` keep
/// the connection; `/close-after` answers and then closes without saying so
/// (an upstream's own idle timeout); `/conn-close` says `connection: close`;
/// `/eof` has a body that ends with the connection; `/extra` sends a second,
/// unasked-for answer after its own.
async fn keep_alive_upstream() -> (std::net::SocketAddr, std::sync::Arc<Seen>) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(Seen::default());
    let counts = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            counts.accepted.fetch_add(1, SeqCst);
            let counts = std::sync::Arc::clone(&counts);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        counts.closed_by_peer.fetch_add(1, SeqCst);
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let head_only = head.starts_with("HEAD ");
                    let answer: &[u8] = match path.as_str() {
                        "/len" if head_only => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
                        "/len" | "/close-after" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                        "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
                        "/empty" => b"HTTP/1.1 204 No Content\r\n\r\n",
                        "/conn-close" => b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello",
                        "/eof" => b"HTTP/1.1 200 OK\r\n\r\nhello",
                        // A stray second answer nobody asked for.
                        "/extra" => b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray",
                        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
                    };
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                    if path == "/close-after" {
                        // Long enough for the gateway to keep the connection.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        return;
                    }
                    if matches!(path.as_str(), "/conn-close" | "/eof") {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn upstream_connections_are_kept_and_reused() {
    let (up, seen) = keep_alive_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    for round in 0..10 {
        for (method, path, status, body) in [
            (Method::GET, "/len", 200, "hello"),
            (Method::GET, "/chunked", 200, "hello"),
            (Method::GET, "/empty", 204, ""),
            (Method::HEAD, "/len", 200, ""),
        ] {
            let a = client.send(method.clone(), path, &[], "").await;
            assert_eq!(
                (a.status.as_u16(), a.text().as_str()),
                (status, body),
                "{method} {path}, round {round}"
            );
        }
    }
    // One request at a time: one upstream connection carried all 40.
    assert_eq!(seen.accepted(), 1);
}

#[tokio::test]
async fn a_kept_connection_the_upstream_closed_is_replaced_without_a_fault() {
    let (up, seen) = keep_alive_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    for i in 1..=5 {
        // Answered, kept by the gateway, then closed by the upstream.
        assert_eq!(client.get("/close-after", &[]).await.text(), "hello");
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The next request finds the kept connection dead and goes out again.
        let a = client.get("/len", &[]).await;
        assert_eq!(
            (a.status.as_u16(), a.text().as_str()),
            (200, "hello"),
            "round {i}"
        );
        // The first connection, and one more after each close.
        assert_eq!(seen.accepted(), i + 1);
    }
}

#[tokio::test]
async fn answers_that_end_their_connection_are_not_kept() {
    let (up, seen) = keep_alive_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    for i in 1..=3 {
        assert_eq!(client.get("/conn-close", &[]).await.text(), "hello");
        assert_eq!(client.get("/eof", &[]).await.text(), "hello");
        assert_eq!(seen.accepted(), 2 * i);
    }
    // And the pool still works for a keep-alive answer afterwards.
    assert_eq!(client.get("/len", &[]).await.text(), "hello");
    assert_eq!(client.get("/len", &[]).await.text(), "hello");
    assert_eq!(seen.accepted(), 7);
}

#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_pool_idle_timeout() {
    let (up, seen) = keep_alive_upstream().await;
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        up,
        "pool_idle_timeout_secs = 1\n[store]\nkind = \"memory\"",
    );
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    assert_eq!(client.get("/len", &[]).await.text(), "hello");
    assert_eq!(seen.closed_by_peer(), 0);
    // Swept every half timeout: closed between 1 and 1.5 s from now.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.closed_by_peer() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle connection was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.get("/len", &[]).await.text(), "hello");
    assert_eq!(seen.accepted(), 2);
}

#[tokio::test]
async fn bytes_the_upstream_sends_unasked_never_reach_another_request() {
    let (up, seen) = keep_alive_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    for i in 1..=3 {
        assert_eq!(client.get("/extra", &[]).await.text(), "hello");
        // The stray answer waits on the kept connection; the next request
        // must get its own answer, on a connection of its own.
        let a = client.get("/len", &[]).await;
        assert_eq!(
            (a.status.as_u16(), a.text().as_str()),
            (200, "hello"),
            "round {i}"
        );
        let a = client.get("/chunked", &[]).await;
        assert_eq!(a.text(), "hello", "round {i}");
    }
    assert!(seen.accepted() >= 2, "{} connections", seen.accepted());
}

#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, _client) = gateway_before(echo_upstream().await, "").await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /half-closed HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Nothing more to send: the client closes its side and waits.
    s.shutdown().await.unwrap();
    let mut heard = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut heard))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    let heard = String::from_utf8_lossy(&heard);
    assert!(heard.starts_with("HTTP/1.1 200"), "{heard}");
    assert!(heard.contains("/half-closed"), "{heard}");
}

#[tokio::test]
async fn a_body_reaches_an_upstream_that_answers_before_reading_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Answers as soon as the head is in, then echoes the body it reads.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let mut got = read_head(&mut s).await.unwrap();
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        let start = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut body = got.split_off(start);
        let mut buf = [0u8; 1024];
        while body.len() < 11 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the body stopped at {body:?}");
            body.extend_from_slice(&buf[..n]);
        }
        let echo = format!(
            "{:x}\r\n{}\r\n0\r\n\r\n",
            body.len(),
            String::from_utf8_lossy(&body)
        );
        s.write_all(echo.as_bytes()).await.unwrap();
    });
    let (gw, _client) = gateway_before(up, "").await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        .await
        .unwrap();
    // The answer's head comes before the client has sent any body.
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut s))
        .await
        .expect("the upstream's early head is passed on")
        .unwrap();
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"hello world").await.unwrap();
    let mut rest = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        while !rest.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the answer stopped at {rest:?}");
            rest.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the body went on to the upstream, and its echo came back");
    assert!(String::from_utf8_lossy(&rest).contains("hello world"));
}
