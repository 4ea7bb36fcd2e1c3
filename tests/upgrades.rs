#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP/1.1 upgrades through the gateway: a WebSocket echo tunnelled to an
//! upstream that switches protocols, closed from either side or when idle,
//! counted in the metrics; upstreams that refuse the upgrade; requests that
//! only look like upgrades.

mod support;

use futures_util::{SinkExt, StreamExt};
use ordergate::config::Config;
use std::net::SocketAddr;
use std::time::Duration;
use support::{Gateway, HttpClient, echo_upstream, listener, raw};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// What a WebSocket upstream does with each connection.
#[derive(Clone, Copy)]
enum Ws {
    /// Echoes every text or binary message until the client closes.
    Echo,
    /// Sends "bye" and drops the connection without a close frame.
    SayByeAndDrop,
}

/// A WebSocket upstream; every connection it accepts is counted on the
/// returned channel once the handshake is done, and again when it ends.
async fn ws_upstream(
    mode: Ws,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    let _ = tx.send("handshake failed");
                    return;
                };
                let _ = tx.send("open");
                match mode {
                    Ws::Echo => {
                        while let Some(Ok(m)) = ws.next().await {
                            if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                                break;
                            }
                        }
                    }
                    Ws::SayByeAndDrop => {
                        let _ = ws.send(Message::text("bye")).await;
                    }
                }
                drop(ws);
                let _ = tx.send("ended");
            });
        }
    });
    (addr, rx)
}

/// The gateway in front of `upstream`, with an admin listener and `server`
/// keys of its own.
async fn gateway(upstream: SocketAddr, server: &str) -> (Gateway, HttpClient) {
    gateway_to(&format!("url = \"http://{upstream}\""), server).await
}

/// The gateway with `upstream` keys of its own.
async fn gateway_to(upstream: &str, server: &str) -> (Gateway, HttpClient) {
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    let text = format!(
        r#"
[server]
listen = "{addr}"
public_base_url = "http://{addr}"
{server}
[upstream]
{upstream}
response_timeout_ms = 5000
[store]
kind = "memory"
"#
    );
    Gateway::start_with_admin(Config::parse(&text).unwrap(), gl).await
}

/// The value of a metric without labels.
async fn metric(admin: &HttpClient, name: &str) -> f64 {
    let text = admin.get("/metrics", &[]).await.text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{text}"))
}

/// Waits (bounded) until the metric has the value; returns the last seen.
async fn metric_becomes(admin: &HttpClient, name: &str, want: f64) -> f64 {
    let mut seen = metric(admin, name).await;
    for _ in 0..100 {
        if seen == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        seen = metric(admin, name).await;
    }
    seen
}

async fn next_event(rx: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the upstream saw something in time")
        .unwrap()
}

#[tokio::test]
async fn websocket_echo_through_the_gateway_until_the_client_closes() {
    let (upstream, mut events) = ws_upstream(Ws::Echo).await;
    let (gw, admin) = gateway(upstream, "").await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(next_event(&mut events).await, "open");
    for text in ["hello", "again"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = next_frame(&mut ws).await;
        assert_eq!(back, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let back = ws.next().await.unwrap().unwrap();
    assert_eq!(back.into_data().as_ref(), &[0u8, 1, 2, 255]);
    assert_eq!(metric(&admin, "ordergate_tunnels").await, 1.0);
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 1.0);
    // The client goes away without a close frame: the upstream sees the end.
    drop(ws);
    assert_eq!(next_event(&mut events).await, "ended");
    assert_eq!(metric_becomes(&admin, "ordergate_tunnels", 0.0).await, 0.0);
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 1.0);
}

#[tokio::test]
async fn websocket_echo_through_an_https_upstream() {
    // The upstream speaks TLS: the gateway reaches it through hyper-util's
    // client rather than its own pool.
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ck.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let l = listener().await;
    let upstream = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (gw, admin) = gateway_to(
        &format!(
            "url = \"https://{upstream}\"\nca_file = \"{}\"",
            ca.display()
        ),
        "",
    )
    .await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("over tls")).await.unwrap();
    let back = next_frame(&mut ws).await;
    assert_eq!(back, Message::text("over tls"));
    assert_eq!(metric(&admin, "ordergate_tunnels").await, 1.0);
    drop(ws);
    assert_eq!(metric_becomes(&admin, "ordergate_tunnels", 0.0).await, 0.0);
}

#[tokio::test]
async fn the_upstream_closing_ends_the_tunnel() {
    let (upstream, mut events) = ws_upstream(Ws::SayByeAndDrop).await;
    let (gw, admin) = gateway(upstream, "").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr))
        .await
        .unwrap();
    let bye = next_frame(&mut ws).await;
    assert_eq!(bye, Message::text("bye"));
    assert_eq!(next_event(&mut events).await, "open");
    assert_eq!(next_event(&mut events).await, "ended");
    // The client sees its connection end, with no close frame.
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the client sees the end in time");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    assert_eq!(metric_becomes(&admin, "ordergate_tunnels", 0.0).await, 0.0);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_the_idle_timeout() {
    let (upstream, mut events) = ws_upstream(Ws::Echo).await;
    let (gw, admin) = gateway(upstream, "idle_timeout_ms = 300").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/chat", gw.addr))
        .await
        .unwrap();
    ws.send(Message::text("one")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("one"));
    assert_eq!(next_event(&mut events).await, "open");
    // Nothing more is sent: the gateway closes both sides.
    assert_eq!(next_event(&mut events).await, "ended");
    let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the client sees the end in time");
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    assert_eq!(metric_becomes(&admin, "ordergate_tunnels", 0.0).await, 0.0);
}

const WS_HEAD: &str = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The JSON the echo upstream answered with, from a raw answer (whose body
/// is chunked: the gateway rewrites JSON as it streams).
fn echoed(answer: &str) -> serde_json::Value {
    let (head, mut rest) = answer.split_once("\r\n\r\n").expect("an answer");
    let mut body = String::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
    } else {
        body = rest.to_owned();
    }
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[tokio::test]
async fn an_upstream_that_does_not_switch_is_answered_as_usual() {
    let upstream = echo_upstream().await;
    let (gw, admin) = gateway(upstream, "").await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!("GET /chat HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\n{WS_HEAD}\r\n");
    use tokio::io::AsyncWriteExt;
    s.write_all(head.as_bytes()).await.unwrap();
    let first = read_answer(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // The upstream was asked to upgrade, with the headers that ask it.
    let json = echoed(&first);
    assert_eq!(json["headers"]["connection"], "upgrade");
    assert_eq!(json["headers"]["upgrade"], "websocket");
    // The client's connection carries on as plain HTTP.
    s.write_all(b"GET /again HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let second = read_answer(&mut s).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert_eq!(echoed(&second)["uri"], "/again");
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 0.0);
}

#[tokio::test]
async fn an_upstream_refusal_reaches_the_client_as_a_fault() {
    // An upstream that answers every upgrade with 400.
    let l = listener().await;
    let upstream = l.local_addr().unwrap();
    tokio::spawn(refusing_upstream(l));
    let (gw, admin) = gateway(upstream, "").await;
    let answer =
        raw(
            gw.addr,
            &[format!(
                "GET /chat HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, close\r\n{WS_HEAD}\r\n"
            )
            .as_bytes()],
            Duration::from_secs(5),
        )
        .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("No WebSocket here"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("upgrade: websocket"),
        "{answer}"
    );
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 0.0);
}

async fn refusing_upstream(l: TcpListener) {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((stream, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                let body = r#"{"type":"badRequest","message":"No WebSocket here"}"#;
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(400)
                        .header("content-type", "application/json")
                        .body(Full::new(bytes::Bytes::from(body)))
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::test]
async fn requests_that_only_look_like_upgrades_are_forwarded_plainly() {
    let upstream = echo_upstream().await;
    let (gw, admin) = gateway(upstream, "").await;
    let send = |head: String| async move {
        raw(gw.addr, &[head.as_bytes()], Duration::from_secs(5)).await
    };
    // Upgrade without `Connection: upgrade`: not an upgrade request.
    let answer = send(format!(
        "GET /a HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n{WS_HEAD}\r\n"
    ))
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = echoed(&answer);
    assert!(json["headers"].get("upgrade").is_none(), "{json}");
    assert!(json["headers"].get("connection").is_none(), "{json}");
    // An upgrade with a body: forwarded as an ordinary request, body and all.
    let answer = send(format!(
        "POST /b HTTP/1.1\r\nHost: gw\r\nConnection: upgrade, close\r\n{WS_HEAD}Content-Length: 5\r\n\r\nhello"
    ))
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = echoed(&answer);
    assert_eq!(json["body"], "hello");
    assert!(json["headers"].get("upgrade").is_none(), "{json}");
    // An upgrade to HTTP/2 (curl --http2 sends it): ignored.
    let answer = send(
        "GET /c HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
            .to_owned(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = echoed(&answer);
    assert!(json["headers"].get("upgrade").is_none(), "{json}");
    assert!(json["headers"].get("http2-settings").is_none(), "{json}");
    // HTTP/1.0 has no upgrades.
    let answer = send(format!(
        "GET /d HTTP/1.0\r\nHost: gw\r\nConnection: upgrade\r\n{WS_HEAD}\r\n"
    ))
    .await;
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
    assert!(echoed(&answer)["headers"].get("upgrade").is_none());
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 0.0);
}

#[tokio::test]
async fn upgrades_on_the_orders_routes_are_refused_with_a_fault() {
    let (upstream, mut events) = ws_upstream(Ws::Echo).await;
    let (gw, _admin) = gateway(upstream, "").await;
    for path in [
        "/order",
        "/orders/0b7a6f7e-3c2d-4e5f-8a9b-1c2d3e4f5a6b/",
        "/orders",
    ] {
        let answer = raw(
            gw.addr,
            &[format!(
                "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: upgrade, close\r\n{WS_HEAD}\r\n"
            )
            .as_bytes()],
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("Protocol upgrades"), "{path}: {answer}");
    }
    // Nothing reached the upstream.
    assert!(events.try_recv().is_err());
}

/// Reads one answer (chunked, or with a `Content-Length`) from `s`.
async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                if head
                    .to_ascii_lowercase()
                    .contains("transfer-encoding: chunked")
                {
                    if body.ends_with("0\r\n\r\n") {
                        break;
                    }
                    continue;
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .expect("a Content-Length");
                if body.len() >= len {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer in time");
    String::from_utf8_lossy(&buf).into_owned()
}

/// The next frame the client gets, within 10 s.
async fn next_frame<S>(ws: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}
