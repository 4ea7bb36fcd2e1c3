#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One open order per owner: 409s, and associations learned and ended.

mod support;

use http::Method;
use ordergate::backend::{Backend, Status};
use std::time::Duration;
use support::*;

async fn explicit_order(env: &Env, owner: Option<&str>) -> (Answer, String) {
    let c = owner.map(cookie);
    let mut headers = vec![("authorization", AUTH)];
    if let Some(c) = &c {
        headers.push(("cookie", c.as_str()));
    }
    let a = env.client.send(Method::POST, "/orders", &headers, "").await;
    assert_eq!(a.status, 202, "{a:?}");
    let id = order_id(a.header("location").unwrap());
    (a, id)
}

#[tokio::test]
async fn second_order_gets_409_without_an_upstream_creation() {
    let env = Env::start().await;
    let (first, id) = explicit_order(&env, None).await;
    // The upstream's Location is rewritten to the public base; its cookie passes.
    assert_eq!(
        first.header("location"),
        Some(format!("{}/orders/{id}", env.public()).as_str())
    );
    let owner = first.owner().expect("upstream's OwnerId cookie");
    let again = env
        .client
        .send(Method::POST, "/orders", &[("cookie", &cookie(&owner))], "")
        .await;
    assert_eq!(again.status, 409);
    let (kind, message) = again.fault();
    assert_eq!(
        (kind.as_str(), message.as_str()),
        (
            "conflict",
            "There is already a new order associated with the same OwnerId"
        )
    );
    assert_eq!(env.creations(), 1);
    // Implicit creation uses the open order rather than making another.
    let put = env
        .client
        .send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(&owner))],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200);
    assert!(
        env.backend
            .state
            .seen()
            .iter()
            .any(|s| s.path == format!("/orders/{id}/account"))
    );
    assert_eq!(env.creations(), 1);
}

#[tokio::test]
async fn after_submit_or_delete_a_new_order_is_allowed() {
    let env = Env::start().await;
    let owner = "948ce0d4-7cf0-43b6-88a5-2b3f1331b689";
    let c = cookie(owner);
    let (_, id) = explicit_order(&env, Some(owner)).await;
    env.client
        .send(
            Method::PUT,
            &format!("/orders/{id}/account"),
            &[("cookie", &c)],
            r#"{"a":1}"#,
        )
        .await;
    let submit = env
        .client
        .send(
            Method::POST,
            &format!("/orders/{id}/action"),
            &[("cookie", &c)],
            r#"{ "action" : "submit" }"#,
        )
        .await;
    assert_eq!(submit.status, 202);
    let (_, id2) = explicit_order(&env, Some(owner)).await;
    assert_ne!(id, id2);
    assert_eq!(
        env.client
            .send(Method::POST, "/orders", &[("cookie", &c)], "")
            .await
            .status,
        409
    );
    let del = env
        .client
        .send(
            Method::DELETE,
            &format!("/orders/{id2}"),
            &[("cookie", &c)],
            "",
        )
        .await;
    assert_eq!(del.status, 204);
    explicit_order(&env, Some(owner)).await;
    assert_eq!(env.creations(), 3);
}

/// A client's submit in chunks, split across writes: the gateway reads it
/// whole to see the action, forwards it with its length instead of its
/// chunking, and the owner's open order ends. A chunk longer than it says
/// is the client's fault, and the order stays open.
#[tokio::test]
async fn a_chunked_submit_in_pieces_is_read_whole_and_ends_the_order() {
    let env = Env::start().await;
    let owner = "5f1d8a3e-2c4b-4e6f-9a7b-0c1d2e3f4a5b";
    let c = cookie(owner);
    let (_, id) = explicit_order(&env, Some(owner)).await;
    env.client
        .send(
            Method::PUT,
            &format!("/orders/{id}/account"),
            &[("cookie", &c)],
            r#"{"a":1}"#,
        )
        .await;
    let head = format!(
        "POST /orders/{id}/action HTTP/1.1\r\nHost: gateway\r\nCookie: {c}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    );
    let bad = raw(
        env.gateway.addr,
        &[
            head.as_bytes(),
            b"4\r\n{ \"action\": \"submit\" }\r\n0\r\n\r\n",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("The request body could not be read"), "{bad}");
    assert_eq!(
        env.client
            .send(Method::POST, "/orders", &[("cookie", &c)], "")
            .await
            .status,
        409,
        "the order is still open"
    );
    let answer = raw(
        env.gateway.addr,
        &[
            head.as_bytes(),
            b"b\r\n{ \"action\" \r\n",
            b"c\r\n: \"submit\" }\r\n",
            b"0\r\n\r\n",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let seen = env
        .seen(|s| s.method == Method::POST && s.path == format!("/orders/{id}/action"))
        .expect("the submit reached the upstream");
    assert_eq!(seen.headers["content-length"], "23");
    assert!(!seen.headers.contains_key("transfer-encoding"));
    // The association ended: the owner may open another order.
    let (_, id2) = explicit_order(&env, Some(owner)).await;
    assert_ne!(id, id2);
}

#[tokio::test]
async fn a_failed_submit_keeps_the_order() {
    let env = Env::start().await;
    let owner = "948ce0d4-7cf0-43b6-88a5-2b3f1331b689";
    let c = cookie(owner);
    let (_, id) = explicit_order(&env, Some(owner)).await;
    // No account: the upstream refuses the submit with its computeFault.
    let s = env
        .client
        .send(
            Method::POST,
            &format!("/orders/{id}/action"),
            &[("cookie", &c)],
            r#"{"action":"submit"}"#,
        )
        .await;
    assert_eq!(s.status, 400);
    assert_eq!(
        s.fault(),
        (
            "computeFault".to_owned(),
            "Account has not been set".to_owned()
        )
    );
    assert_eq!(
        env.client
            .send(Method::POST, "/orders", &[("cookie", &c)], "")
            .await
            .status,
        409
    );
}

#[tokio::test]
async fn association_is_learned_from_a_side_effect_creation() {
    let env = Env::start().await;
    let (put, owner, id) = env
        .client
        .create_by_side_effect(&[("authorization", AUTH)])
        .await;
    assert!(put.header("location").unwrap().starts_with(env.public()));
    let c = cookie(&owner);
    let g = env.client.get("/order", &[("cookie", &c)]).await;
    assert_eq!(g.status, 200);
    assert_eq!(
        g.json()["links"][1]["href"],
        format!("{}/orders/{id}/", env.public())
    );
    assert_eq!(
        g.json()["order"]["Account"],
        format!("{}/accounts/acct999999", env.public())
    );
    assert_eq!(
        env.client
            .send(Method::POST, "/orders", &[("cookie", &c)], "")
            .await
            .status,
        409
    );
}

#[tokio::test]
async fn an_order_closed_behind_the_gateways_back_is_never_held_against_the_owner() {
    let env = Env::start().await;
    let owner = "73adb746-2443-4cc8-879e-886348385b9a";
    let c = cookie(owner);
    let (_, id) = explicit_order(&env, Some(owner)).await;
    // A back-office tool submits the order; the gateway did not see it.
    env.backend.state.set_status(&id, Status::Processing);
    let (_, id2) = explicit_order(&env, Some(owner)).await;
    assert_ne!(id, id2);
    // And the shorthand stops resolving to an order closed behind its back.
    env.backend.state.set_status(&id2, Status::Completed);
    let g = env.client.get("/order", &[("cookie", &c)]).await;
    assert_eq!(g.status, 404);
    // Nothing left: a plain POST creates without a check.
    let seen = env.backend.state.seen().len();
    explicit_order(&env, Some(owner)).await;
    assert_eq!(env.backend.state.seen().len(), seen + 1);
}

#[tokio::test]
async fn a_free_mailbox_order_arrives_submitted_and_blocks_nothing() {
    let env = Env::start().await;
    let owner = "f9cafb10-2e85-4b1a-bd69-1b1a91437d50";
    let c = cookie(owner);
    let m = env
        .client
        .send(
            Method::POST,
            "/accounts/acct999999/exchange/myexchangedomain.com/mailboxes",
            &[("cookie", &c)],
            r#"{"admin": 0}"#,
        )
        .await;
    assert_eq!(m.status, 202);
    assert_eq!(
        env.client.get("/order", &[("cookie", &c)]).await.status,
        404
    );
    explicit_order(&env, Some(owner)).await;
}

#[tokio::test]
async fn explicit_reads_end_orders_the_upstream_closed_or_lost() {
    let env = Env::start().await;
    let owner = "73adb746-2443-4cc8-879e-886348385b9a";
    let c = cookie(owner);
    let (_, id) = explicit_order(&env, Some(owner)).await;
    env.backend.state.set_status(&id, Status::Processing);
    let e = env
        .client
        .get(&format!("/orders/{id}"), &[("cookie", &c)])
        .await;
    assert_eq!(e.json()["order"]["Status"], "Processing");
    assert_eq!(
        e.json()["links"][0]["href"],
        format!("{}/orders/{id}/", env.public())
    );
    // Ended by the read: the next POST is not checked upstream first.
    let seen = env.backend.state.seen().len();
    explicit_order(&env, Some(owner)).await;
    assert_eq!(env.backend.state.seen().len(), seen + 1);
}

#[tokio::test]
async fn upstream_unreachable_is_a_502_fault() {
    let env = Env::start().await;
    env.backend.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    drop(env.backend);
    let a = env.client.get("/orders/abc", &[]).await;
    // The listener is gone with the backend task: connection refused.
    assert_eq!(a.status, 502, "{a:?}");
    assert_eq!(a.fault().0, "badGateway");
}

#[tokio::test]
async fn an_order_read_many_times_is_still_seen_to_close() {
    let env = Env::start().await;
    let owner = "5d4bd0a4-6f0e-4c7b-9a57-3f1f2c1e9b21";
    let c = cookie(owner);
    let (_, id) = explicit_order(&env, Some(owner)).await;
    let explicit = format!("/orders/{id}");
    // The same order, read again and again unchanged, gives the same views.
    let short = env.client.get("/order", &[("cookie", &c)]).await;
    let long = env.client.get(&explicit, &[("cookie", &c)]).await;
    assert_eq!(short.status, 200);
    assert_eq!(long.status, 200);
    for _ in 0..3 {
        let again = env.client.get("/order", &[("cookie", &c)]).await;
        assert_eq!(again.json(), short.json());
        assert_eq!(again.header("content-type"), short.header("content-type"));
        let again = env.client.get(&explicit, &[("cookie", &c)]).await;
        assert_eq!(again.json(), long.json());
    }
    assert_eq!(short.json()["order"]["Status"], "new");
    // Closed behind the gateway's back: the next read of either kind sees it.
    env.backend.state.set_status(&id, Status::Processing);
    let g = env.client.get(&explicit, &[("cookie", &c)]).await;
    assert_eq!(g.json()["order"]["Status"], "Processing");
    assert_eq!(
        env.client.get("/order", &[("cookie", &c)]).await.status,
        404
    );
    // A new order for the owner, read through the shorthand, then closed.
    let (_, id2) = explicit_order(&env, Some(owner)).await;
    assert_ne!(id, id2);
    for _ in 0..3 {
        let g = env.client.get("/order", &[("cookie", &c)]).await;
        assert_eq!(g.json()["order"]["Status"], "new");
    }
    env.backend.state.set_status(&id2, Status::Completed);
    assert_eq!(
        env.client.get("/order", &[("cookie", &c)]).await.status,
        404
    );
}

/// A relay to `to` that holds each piece of the upstream's answer for
/// `hold` before passing it on: an upstream that answers slowly.
async fn slow_relay(to: std::net::SocketAddr, hold: Duration) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_upstream, mut to_upstream) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_upstream).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = from_upstream.read(&mut buf).await {
                    tokio::time::sleep(hold).await;
                    if to_client.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// How long [`behind_slow_relay`]'s relay holds each piece of an answer.
const HOLD: Duration = Duration::from_millis(400);

/// The emulated backend, and a gateway in front of it through a relay
/// that holds its answers for [`HOLD`].
async fn behind_slow_relay() -> (Backend, Gateway, HttpClient) {
    let backend = Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let (gateway, client) = gateway_before(slow_relay(backend.addr, HOLD).await, "").await;
    (backend, gateway, client)
}

/// After a client left before its `POST /orders` (as `owner`) was
/// answered: the upstream made one order, and once the upstream's answer
/// (held by the relay) has reached the gateway, the owner's order is known
/// and open: the next `POST /orders` is a 409.
async fn assert_learned(backend: &Backend, client: &HttpClient, owner: &str) {
    for _ in 0..50 {
        if backend.state.count(&Method::POST, "/orders") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backend.state.count(&Method::POST, "/orders"), 1);
    tokio::time::sleep(HOLD * 2).await;
    let again = client
        .send(
            Method::POST,
            "/orders",
            &[("authorization", AUTH), ("cookie", &cookie(owner))],
            "",
        )
        .await;
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(backend.state.count(&Method::POST, "/orders"), 1);
}

#[tokio::test]
async fn a_creation_is_learned_when_the_client_leaves_before_the_answer() {
    let (backend, gateway, client) = behind_slow_relay().await;
    let owner = "7b1f7e0e-4a8e-4c64-9a62-0d5c3f0e2b11";
    // The client sends its POST and is gone long before the answer comes.
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nCookie: OwnerId={owner}\r\nContent-Length: 0\r\n\r\n"
    );
    let heard = raw(gateway.addr, &[head.as_bytes()], Duration::from_millis(100)).await;
    assert_eq!(heard, "", "the client left before any answer");
    assert_learned(&backend, &client, owner).await;
}

#[tokio::test]
async fn an_http2_creation_is_learned_when_the_client_leaves_before_the_answer() {
    let (backend, gateway, client) = behind_slow_relay().await;
    let owner = "0c9d5e1a-3b7f-4f2e-8d61-5a4b3c2d1e0f";
    // HTTP/2 by prior knowledge; the client closes the connection (and so
    // every stream on it) before the answer comes.
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::post(format!("http://{}/orders", gateway.addr))
        .header("authorization", AUTH)
        .header("cookie", cookie(owner))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_millis(100), send.send_request(req)).await;
    assert!(answer.is_err(), "the client left before any answer");
    drop(send);
    driver.abort();
    assert_learned(&backend, &client, owner).await;
}
