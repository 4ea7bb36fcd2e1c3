#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Request limits over real sockets: heads, bodies that never finish, slow
//! clients, connection cap.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(server_extra: &str) -> (Gateway, HttpClient) {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"")
        .replace("[server]", &format!("[server]\n{server_extra}"));
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    (gw, client)
}

#[tokio::test]
async fn oversized_heads_get_a_431_fault() {
    let (_gw, client) = gateway("max_header_bytes = 16384\nmax_headers = 20").await;
    let big = "v".repeat(20_000);
    let a = client.get("/x", &[("x-big", &big)]).await;
    assert_eq!(a.status, 431);
    assert_eq!(a.fault().0, "requestHeaderFieldsTooLarge");
    let names: Vec<String> = (0..25).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let a = client.get("/x", &headers).await;
    assert_eq!(a.status, 431);
    assert_eq!(a.fault().0, "requestHeaderFieldsTooLarge");
    // Within the limits all is well.
    assert_eq!(client.get("/x", &headers[..10]).await.status, 200);
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_a_408() {
    let (gw, client) = gateway("body_idle_timeout_ms = 300").await;
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: {}\r\ncontent-length: 100\r\n\r\n0123456789",
        gw.addr
    );
    let out = raw(gw.addr, &[head.as_bytes()], Duration::from_secs(10)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("requestTimeout"), "{out}");
    // The same when the gateway reads the body itself (an order action).
    let head = format!(
        "POST /orders/o1/action HTTP/1.1\r\nhost: {}\r\ncontent-length: 100\r\n\r\n{{\"act",
        gw.addr
    );
    let out = raw(gw.addr, &[head.as_bytes()], Duration::from_secs(10)).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert_eq!(client.get("/x", &[]).await.status, 200);
}

#[tokio::test]
async fn a_client_sending_headers_a_byte_at_a_time_is_cut_off() {
    let (gw, client) = gateway("header_read_timeout_ms = 500").await;
    let request = format!(
        "GET /x HTTP/1.1\r\nhost: {}\r\nx-slow: {}\r\n\r\n",
        gw.addr,
        "s".repeat(40)
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for b in request.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Bounded: the whole request would take ~7 s at this pace.
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        sent < request.len() || read.is_ok(),
        "the connection stayed open"
    );
    assert!(
        !String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "the slow request was served"
    );
    assert_eq!(client.get("/x", &[]).await.status, 200);
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_503_at_once_and_counted() {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"")
        .replace("[server]", "[server]\nmax_connections = 2");
    let (gw, admin) =
        Gateway::start_with_admin(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let request = format!("GET /x HTTP/1.1\r\nhost: {}\r\n\r\n", gw.addr);
    // Two open keep-alive connections fill the slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    // More are answered at once with a 503 fault and closed, one after the
    // other: the accept loop does not wait for a slot.
    for _ in 0..5 {
        let out = raw(gw.addr, &[request.as_bytes()], Duration::from_secs(5)).await;
        assert!(out.starts_with("HTTP/1.1 503"), "{out}");
        assert!(out.contains("retry-after: 1\r\n"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let fault: serde_json::Value = serde_json::from_str(body).unwrap();
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: "))
            .unwrap();
        assert_eq!(fault["serviceUnavailable"]["guid"], id, "{out}");
        assert_eq!(fault["serviceUnavailable"]["code"], 503);
    }
    let metrics = admin.get("/metrics", &[]).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "ordergate_connections_refused_total{reason=\"over_capacity\"} 5"),
        "{metrics}"
    );
    // A slot given back is used again.
    drop(held.pop());
    let closing = request.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = raw(gw.addr, &[closing.as_bytes()], Duration::from_secs(5)).await;
        if out.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was not used: {out}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn head_limit_below_hypers_minimum_is_refused() {
    let text = config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        "",
    )
    .replace("[server]", "[server]\nmax_header_bytes = 100");
    let e = ordergate::config::Config::parse(&text).unwrap_err();
    assert_eq!(e.key, "server.max_header_bytes");
}
