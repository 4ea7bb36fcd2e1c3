#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Blame on the right side, and nothing of the inside in a fault: a client's
//! broken framing is its 4xx and reaches no upstream as a 502; an upstream's
//! failure is a 502 that names no address, host or OS error.

mod support;

use std::time::Duration;
use support::*;

const OWNER: &str = "4d84cd13-bbb3-46ba-a40c-8988351e3681";

fn status_of(raw_answer: &str) -> u16 {
    raw_answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The body of a raw chunked answer, its chunks joined.
fn dechunk(answer: &str) -> String {
    let mut rest = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_that_says_nothing_of_the_inside() {
    // A port with nothing behind it.
    let closed = {
        let l = listener().await;
        l.local_addr().unwrap()
    };
    let (_gw, client) = gateway_before(closed, "").await;
    for path in ["/orders/abc", "/accounts/a", "/orders"] {
        let a = client.get(path, &[("cookie", &cookie(OWNER))]).await;
        assert_eq!(a.status, 502, "{path}: {a:?}");
        assert_eq!(a.fault().0, "badGateway");
        let text = a.text().to_lowercase();
        for inside in [
            "127.0.0.1",
            &closed.port().to_string(),
            "refused",
            "os error",
            "tcp",
            "hyper",
        ] {
            assert!(!text.contains(inside), "{path}: `{inside}` in {text}");
        }
    }
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_the_clients_400() {
    let up = echo_upstream().await;
    let (gw, _client) = gateway_before(up, "").await;
    for bad in [
        &b"5\r\nhello\r\nzz\r\n"[..],
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"fffffffffffffffffffff\r\n",
    ] {
        let head = b"POST /accounts/a1 HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n";
        let answer = raw(gw.addr, &[head, bad], Duration::from_secs(3)).await;
        assert_eq!(
            status_of(&answer),
            400,
            "{}: {answer}",
            String::from_utf8_lossy(bad)
        );
        assert!(answer.contains("badRequest"), "{answer}");
    }
}

#[tokio::test]
async fn http_1_1_needs_exactly_one_host_and_connect_is_refused() {
    let up = echo_upstream().await;
    let (gw, _client) = gateway_before(up, "").await;
    let wait = Duration::from_secs(3);
    let none = raw(gw.addr, &[b"GET /accounts/a HTTP/1.1\r\n\r\n"], wait).await;
    assert_eq!(status_of(&none), 400, "{none}");
    assert!(none.contains("badRequest"), "{none}");
    let two = raw(
        gw.addr,
        &[b"GET /accounts/a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"],
        wait,
    )
    .await;
    assert_eq!(status_of(&two), 400, "{two}");
    let connect = raw(
        gw.addr,
        &[b"CONNECT upstream.example:443 HTTP/1.1\r\nHost: upstream.example:443\r\n\r\n"],
        wait,
    )
    .await;
    assert_eq!(status_of(&connect), 405, "{connect}");
    assert!(connect.contains("badMethod"), "{connect}");
    // HTTP/1.0 without Host is fine.
    let old = raw(gw.addr, &[b"GET /accounts/a HTTP/1.0\r\n\r\n"], wait).await;
    assert_eq!(status_of(&old), 200, "{old}");
}

#[tokio::test]
async fn an_absolute_form_target_is_served_for_the_host_it_names() {
    let up = echo_upstream().await;
    let (gw, _client) = gateway_before(up, "").await;
    let answer = raw(
        gw.addr,
        &[b"GET http://gw.example:8080/accounts/a?x=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n"],
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let echoed: serde_json::Value = serde_json::from_str(&dechunk(&answer)).expect(&answer);
    // The upstream gets the origin form, and the host the client named.
    assert_eq!(echoed["uri"], "/accounts/a?x=1");
    assert_eq!(echoed["headers"]["x-forwarded-host"], "gw.example:8080");
}

#[tokio::test]
async fn a_quoted_owner_cookie_is_understood_and_forwarded_unquoted() {
    let up = echo_upstream().await;
    let (_gw, client) = gateway_before(up, "").await;
    let quoted = format!("theme=dark; OwnerId=\"{OWNER}\"");
    let a = client.get("/orders/o1/quote", &[("cookie", &quoted)]).await;
    assert_eq!(a.status, 200, "{a:?}");
    let sent = a.json()["headers"]["cookie"].as_str().unwrap().to_owned();
    assert!(sent.contains(&format!("OwnerId={OWNER}")), "{sent}");
    assert!(!sent.contains('"'), "{sent}");
    assert!(sent.contains("theme=dark"), "{sent}");
}

#[tokio::test]
async fn another_cookie_of_non_ascii_octets_neither_hides_the_owner_nor_is_lost() {
    let up = echo_upstream().await;
    let (gw, _client) = gateway_before(up, "").await;
    // Another application's cookie with UTF-8 in its value (browsers send
    // such octets as they were set), beside a quoted OwnerId that the
    // gateway rewrites on the way up.
    let mut head = b"GET /orders/o1/quote HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\nCookie: name=Jos\xc3\xa9; OwnerId=\"".to_vec();
    head.extend_from_slice(OWNER.as_bytes());
    head.extend_from_slice(b"\"\r\n\r\n");
    let answer = raw(gw.addr, &[&head], Duration::from_secs(3)).await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let echoed: serde_json::Value = serde_json::from_str(&dechunk(&answer)).expect(&answer);
    let sent = echoed["headers"]["cookie"].as_str().unwrap();
    assert_eq!(sent, format!("name=Jos\u{e9}; OwnerId={OWNER}"));
}
