#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The client side of HTTP/1.1 as the gateway's own codec serves it: kept
//! connections, pipelining, the requests it hands to hyper midway, and the
//! framing of answers as upstreams send them (lengths, chunks, trailers, no
//! body, bodies cut short). Raw bytes over real sockets, both sides.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer as read off the wire.
#[derive(Debug)]
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads bytes into `buf` until `done` says how many of them make a whole
/// unit, failing after 5 s or at the end of the stream.
async fn fill(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut done: impl FnMut(&[u8]) -> Option<usize>,
) -> Option<usize> {
    loop {
        if let Some(n) = done(buf) {
            return Some(n);
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "no answer within 5 s; have {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

/// Reads one answer from `s` (what follows it stays in `buf`); `head`: the
/// request was HEAD. `None` if the stream ends before it is whole.
async fn answer(s: &mut TcpStream, buf: &mut Vec<u8>, head: bool) -> Option<Wire> {
    let mut status = 0;
    let mut headers = Vec::new();
    let len = fill(s, buf, |b| {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut fields);
        match parsed.parse(b).expect("a well-formed answer head") {
            httparse::Status::Complete(n) => {
                status = parsed.code.unwrap();
                headers = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        (h.name.to_owned(), value)
                    })
                    .collect();
                Some(n)
            }
            httparse::Status::Partial => None,
        }
    })
    .await?;
    buf.drain(..len);
    let mut wire = Wire {
        status,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    if head || status == 204 || status == 304 {
        return Some(wire);
    }
    if wire.header("transfer-encoding") == Some("chunked") {
        assert_eq!(wire.count("content-length"), 0, "both framings: {wire:?}");
        loop {
            let line = fill(s, buf, line_end).await?;
            let size = std::str::from_utf8(&buf[..line - 2]).unwrap();
            let size = usize::from_str_radix(size, 16).unwrap();
            buf.drain(..line);
            if size == 0 {
                loop {
                    let line = fill(s, buf, line_end).await?;
                    let text = String::from_utf8_lossy(&buf[..line - 2]).into_owned();
                    buf.drain(..line);
                    match text.split_once(": ") {
                        Some((n, v)) => wire.trailers.push((n.to_owned(), v.to_owned())),
                        None => return Some(wire),
                    }
                }
            }
            fill(s, buf, |b| (b.len() >= size + 2).then_some(size + 2)).await?;
            assert_eq!(&buf[size..size + 2], b"\r\n", "a chunk ends with CRLF");
            wire.body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
        }
    }
    assert_eq!(wire.count("content-length"), 1, "one length: {wire:?}");
    let n: usize = wire.header("content-length").unwrap().parse().unwrap();
    fill(s, buf, |b| (b.len() >= n).then_some(n)).await?;
    wire.body = buf.drain(..n).collect();
    Some(wire)
}

/// Whether the gateway closes `s` within 5 s (anything it still sends is
/// ignored).
async fn closes(s: &mut TcpStream) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn bodiless_requests_on_one_connection_are_answered_in_turn_and_framed() {
    let (gw, _client) = gateway_before(echo_upstream().await, "").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..3 {
        s.write_all(&get(&format!("/a/{i}"))).await.unwrap();
        let a = answer(&mut s, &mut buf, false).await.expect("an answer");
        assert_eq!(a.status, 200, "{a:?}");
        assert_eq!(a.json()["uri"], format!("/a/{i}"));
        assert_eq!(a.count("date"), 1, "{a:?}");
        assert!(a.header("x-request-id").is_some(), "{a:?}");
        assert_eq!(a.header("connection"), None, "{a:?}");
    }
    // HEAD: the length the body would have, and no body: the next answer
    // starts right after the head.
    s.write_all(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let a = answer(&mut s, &mut buf, true).await.unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    s.write_all(&get("/after-head")).await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.json()["uri"], "/after-head", "{a:?}");
    // A request with an empty body of length 0 is one too.
    s.write_all(b"DELETE /zero HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.json()["method"], "DELETE", "{a:?}");
    assert!(buf.is_empty(), "nothing after the answers: {buf:?}");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (gw, _client) = gateway_before(echo_upstream().await, "").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend_from_slice(&get(&format!("/p/{i}")));
    }
    s.write_all(&all).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..5 {
        let a = answer(&mut s, &mut buf, false).await.expect("an answer");
        assert_eq!(a.json()["uri"], format!("/p/{i}"), "{a:?}");
    }
}

#[tokio::test]
async fn requests_left_to_hyper_midway_are_served_and_so_are_those_after() {
    let (gw, _client) = gateway_before(echo_upstream().await, "").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(&get("/before")).await.unwrap();
    assert_eq!(
        answer(&mut s, &mut buf, false).await.unwrap().json()["uri"],
        "/before"
    );
    // A body: a request for hyper, which serves the rest of the connection.
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.json()["body"], "hello", "{a:?}");
    s.write_all(&get("/after")).await.unwrap();
    assert_eq!(
        answer(&mut s, &mut buf, false).await.unwrap().json()["uri"],
        "/after"
    );
}

#[tokio::test]
async fn a_later_head_in_pieces_is_read_on_and_one_that_stalls_gets_a_408() {
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), echo_upstream().await, "")
        .replace("[server]", "[server]\nheader_read_timeout_ms = 600")
        + "[store]\nkind = \"memory\"\n";
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(&get("/first")).await.unwrap();
    answer(&mut s, &mut buf, false).await.unwrap();
    s.write_all(b"GET /in-pieces HTTP/1.1\r\nHo").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.write_all(b"st: x\r\n\r\n").await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.json()["uri"], "/in-pieces", "{a:?}");
    s.write_all(&get("/then")).await.unwrap();
    assert_eq!(
        answer(&mut s, &mut buf, false).await.unwrap().json()["uri"],
        "/then"
    );
    // The rest of this head never comes.
    s.write_all(b"GET /stalled HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let a = answer(&mut s, &mut buf, false).await.expect("an answer");
    assert_eq!(a.status, 408, "{a:?}");
    let fault = a.json();
    let inner = fault.as_object().and_then(|o| o.values().next()).unwrap();
    assert_eq!(inner["code"], 408, "{a:?}");
    assert_eq!(inner["guid"].as_str(), a.header("x-request-id"), "{a:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(closes(&mut s).await);
}

#[tokio::test]
async fn connection_close_is_honoured_both_ways() {
    let (gw, _client) = gateway_before(echo_upstream().await, "").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.json()["uri"], "/last", "{a:?}");
    assert_eq!(a.header("connection"), Some("close"), "{a:?}");
    assert!(closes(&mut s).await);
    assert!(
        !String::from_utf8_lossy(&buf).contains("/never"),
        "a request after the close was served"
    );
}

/// An upstream that answers each request head on a kept connection with
/// `answer(path)`, raw.
async fn scripted_upstream(answer: fn(&str) -> Vec<u8>) -> SocketAddr {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut s).await {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let bytes = answer(&path);
                    if s.write_all(&bytes).await.is_err() {
                        return;
                    }
                    if path.starts_with("/cut") {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn scripted(path: &str) -> Vec<u8> {
    match path {
        // No length: chunks, with a trailer.
        "/chunked" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 42\r\n\r\n".to_vec(),
        "/no-content" => b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-Kind: none\r\n\r\n".to_vec(),
        "/not-modified" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec(),
        "/dated" => b"HTTP/1.1 200 OK\r\nDate: Tue, 01 Dec 2026 10:00:00 GMT\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        "/cut" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly part".to_vec(),
        "/huge" => {
            let mut answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 33554432\r\n\r\n".to_vec();
            answer.resize(answer.len() + (32 << 20), b'h');
            answer
        }
        // Hop-by-hop fields, one named by `Connection` after it came.
        "/hop" => b"HTTP/1.1 200 OK\r\nX-Hop: 1\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        // Named before it came, and chunked in another case.
        "/hop-first" => b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: Chunked\r\nX-Kept: 1\r\nConnection: keep-alive\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
        "/cut-chunked" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
        _ => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nfine.".to_vec(),
    }
}

#[tokio::test]
async fn answers_are_framed_as_the_upstream_sent_them() {
    let (gw, _client) = gateway_before(scripted_upstream(scripted).await, "").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();

    s.write_all(&get("/chunked")).await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.body, b"hello world", "{a:?}");
    assert_eq!(a.header("transfer-encoding"), Some("chunked"), "{a:?}");
    // `Trailer` is hop-by-hop: the client was told of none, and gets none.
    assert!(a.trailers.is_empty(), "{a:?}");
    assert_eq!(a.header("trailer"), None, "{a:?}");

    s.write_all(&get("/no-content")).await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.count("content-length"), 0, "{a:?}");
    assert_eq!(a.count("transfer-encoding"), 0, "{a:?}");
    assert_eq!(a.header("x-kind"), Some("none"), "{a:?}");

    s.write_all(&get("/not-modified")).await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.status, 304, "{a:?}");
    assert_eq!(a.count("transfer-encoding"), 0, "{a:?}");

    s.write_all(&get("/dated")).await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.count("date"), 1, "{a:?}");
    assert_eq!(a.body, b"ok");

    for path in ["/hop", "/hop-first"] {
        s.write_all(&get(path)).await.unwrap();
        let a = answer(&mut s, &mut buf, false).await.unwrap();
        assert_eq!(a.body, b"ok", "{path}: {a:?}");
        assert_eq!(a.header("x-kept"), Some("1"), "{path}: {a:?}");
        for gone in ["x-hop", "keep-alive", "proxy-connection", "upgrade"] {
            assert_eq!(a.header(gone), None, "{path}: {gone} passed on: {a:?}");
        }
        assert_eq!(a.count("connection"), 0, "{path}: {a:?}");
    }

    // Still in step: a plain answer after all of them.
    s.write_all(&get("/plain")).await.unwrap();
    let a = answer(&mut s, &mut buf, false).await.unwrap();
    assert_eq!(a.body, b"fine.", "{a:?}");
    assert!(buf.is_empty(), "bytes beyond the answers: {buf:?}");
}

#[tokio::test]
async fn an_answer_cut_short_upstream_ends_the_client_connection() {
    let (gw, _client) = gateway_before(scripted_upstream(scripted).await, "").await;
    for path in ["/cut", "/cut-chunked"] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        let mut buf = Vec::new();
        s.write_all(&get(path)).await.unwrap();
        // Either a fault (the cut came before the head left) or a head and
        // a body that never completes: never a whole answer of the wrong
        // length, and never a connection left open for the next request.
        match answer(&mut s, &mut buf, false).await {
            None => {}
            Some(a) => assert!(a.status >= 500, "{path}: a whole answer {a:?}"),
        }
        assert!(closes(&mut s).await, "{path}");
    }
}

/// A gateway in front of `upstream` with `server` keys added.
async fn gateway_with(upstream: SocketAddr, server: &str) -> Gateway {
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), upstream, "")
        .replace("[server]", &format!("[server]\n{server}"))
        + "[store]\nkind = \"memory\"\n";
    Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answer_is_closed_after_the_idle_timeout() {
    let gw = gateway_with(scripted_upstream(scripted).await, "idle_timeout_ms = 400").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&get("/huge")).await.unwrap();
    // 32 MiB on their way, and the client reads none of them for a while.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after 10 s of reading"
    );
    assert!(
        got.len() < 32 << 20,
        "the whole answer came ({} bytes): the gateway waited for the client for ever",
        got.len()
    );
}

#[tokio::test]
async fn the_first_head_keeps_its_deadline_from_the_accept() {
    let gw = gateway_with(echo_upstream().await, "header_read_timeout_ms = 1000").await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = std::time::Instant::now();
    // An empty line, in two pieces: never a request head.
    s.write_all(b"\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    s.write_all(b"\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let a = answer(&mut s, &mut buf, false).await.expect("an answer");
    assert_eq!(a.status, 408, "{a:?}");
    // By the first deadline (1 s from the accept), not a second one
    // counted from the last bytes (1.9 s).
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(1700),
        "answered after {waited:?}"
    );
}

#[tokio::test]
async fn a_connection_waiting_for_its_next_request_is_held_to_the_header_read_timeout() {
    let gw = gateway_with(
        echo_upstream().await,
        "header_read_timeout_ms = 400\nidle_timeout_ms = 60000",
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = Vec::new();
    s.write_all(&get("/one")).await.unwrap();
    answer(&mut s, &mut buf, false).await.expect("an answer");
    // Then nothing: closed by the header read timeout, not the idle one.
    assert!(closes(&mut s).await, "still open 5 s later");
}
