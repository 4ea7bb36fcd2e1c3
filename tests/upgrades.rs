#![allow(clippy::unwrap_used, clippy::expect_used)]
//! HTTP/1.1 upgrades through the gateway: a WebSocket echo tunnelled to an
//! upstream that switches protocols, over plain and TLS listeners (wss),
//! closed from either side or when idle, counted in the metrics; upstreams
//! that refuse the upgrade; requests that only look like upgrades, and
//! HTTP/2 clients, which get no tunnel.

mod support;

use futures_util::{SinkExt, StreamExt};
use ordergate::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use support::{Gateway, HttpClient, echo_upstream, listener, raw, tls_client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// A certificate for `localhost`, with its files.
struct Cert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        cert,
        key,
        _dir: dir,
    }
}

/// The gateway in front of `upstream` on a TLS listener with `c`'s files.
async fn tls_gateway(upstream: SocketAddr, c: &Cert) -> (Gateway, HttpClient) {
    let tls = format!(
        "tls = {{ cert_path = {:?}, key_path = {:?} }}",
        c.cert.display().to_string(),
        c.key.display().to_string()
    );
    gateway_to(&format!("url = \"http://{upstream}\""), &tls).await
}

/// A TLS connection to the gateway that negotiated `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    c: &Cert,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(tls_client_config(c.der.clone(), &[alpn]))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

#[tokio::test]
async fn websocket_echo_through_the_gateways_tls_listener_until_the_client_closes() {
    let (upstream, mut events) = ws_upstream(Ws::Echo).await;
    let c = cert();
    let (gw, admin) = tls_gateway(upstream, &c).await;
    let tls = tls_connect(gw.addr, &c, b"http/1.1").await;
    let (mut ws, resp) = tokio_tungstenite::client_async("wss://localhost/chat", tls)
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(next_event(&mut events).await, "open");
    ws.send(Message::text("over wss")).await.unwrap();
    assert_eq!(next_frame(&mut ws).await, Message::text("over wss"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut ws).await,
        Message::binary(vec![0u8, 1, 2, 255])
    );
    assert_eq!(metric(&admin, "ordergate_tunnels").await, 1.0);
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 1.0);
    // The client's close frame goes through; the upstream answers it and
    // ends, and the client's connection ends after the answer.
    ws.close(None).await.unwrap();
    assert_eq!(next_event(&mut events).await, "ended");
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        let mut rest = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            rest.push(m);
        }
        rest
    })
    .await
    .expect("the client's connection ends in time");
    assert!(rest.iter().all(|m| m.is_close()), "{rest:?}");
    assert_eq!(metric_becomes(&admin, "ordergate_tunnels", 0.0).await, 0.0);
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 1.0);
}

/// An upstream that answers every request 200 and reports its path and
/// headers.
async fn recording_upstream() -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, http::HeaderMap)>,
) {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let _ = tx.send((req.uri().path().to_owned(), req.headers().clone()));
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from_static(b"plain"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// HTTP/2 frame types and flags used below (RFC 9113 §6).
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;
const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// A HEADERS block of literal fields (never indexed in HPACK's table, no
/// Huffman coding), so that any field, even one HTTP/2 forbids, is sent as
/// written: what a client other than hyper's may put on the wire.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend(name.as_bytes());
        block.push(value.len() as u8);
        block.extend(value.as_bytes());
    }
    block
}

/// The next frame from the server: type, flags, stream, payload; answers a
/// SETTINGS frame with its acknowledgement and notes whether it enabled
/// extended CONNECT (RFC 8441, WebSocket over HTTP/2).
async fn h2_read<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    io: &mut S,
    extended_connect: &mut bool,
) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut head))
        .await
        .expect("a frame in time")
        .unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.unwrap();
    let (kind, flags) = (head[3], head[4]);
    if kind == SETTINGS && flags & 0x1 == 0 {
        for s in payload.chunks(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            if id == SETTINGS_ENABLE_CONNECT_PROTOCOL {
                *extended_connect = value == 1;
            }
        }
        io.write_all(&h2_frame(SETTINGS, 0x1, 0, &[]))
            .await
            .unwrap();
    }
    assert_ne!(kind, GOAWAY, "the connection was closed: {payload:?}");
    (kind, flags, stream, payload)
}

#[tokio::test]
async fn an_http2_client_over_tls_gets_no_tunnel() {
    // HTTP/2 has no Upgrade (RFC 9113 §8.6). A client that negotiated h2
    // by ALPN and sends the upgrade headers anyway (hyper's client would
    // strip them) sends a malformed request: its stream is reset with
    // PROTOCOL_ERROR before the gateway sees it. WebSocket over HTTP/2
    // (extended CONNECT) is not offered, and trying it is reset the same
    // way. Nothing reaches the upstream, no tunnel opens, and the
    // connection goes on serving.
    let (upstream, mut seen) = recording_upstream().await;
    let c = cert();
    let (gw, admin) = tls_gateway(upstream, &c).await;
    let mut io = tls_connect(gw.addr, &c, b"h2").await;
    let ws = [
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let get = |path| {
        vec![
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path),
        ]
    };
    let mut upgrade = get("/chat");
    upgrade.extend([("connection", "upgrade"), ("upgrade", "websocket")]);
    upgrade.extend(ws);
    let mut only_upgrade = get("/chat");
    only_upgrade.extend([("upgrade", "websocket")]);
    only_upgrade.extend(ws);
    let mut connect = vec![
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/chat"),
    ];
    connect.extend(ws);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(SETTINGS, 0, 0, &[]));
    out.extend(h2_frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        1,
        &hpack(&upgrade),
    ));
    out.extend(h2_frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        3,
        &hpack(&only_upgrade),
    ));
    out.extend(h2_frame(HEADERS, END_HEADERS, 5, &hpack(&connect)));
    io.write_all(&out).await.unwrap();

    let mut extended_connect = false;
    let mut reset = Vec::new();
    while reset.len() < 3 {
        let (kind, _, stream, payload) = h2_read(&mut io, &mut extended_connect).await;
        assert!(
            kind != HEADERS && kind != DATA,
            "stream {stream} was answered"
        );
        if kind == RST_STREAM {
            let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
            assert_eq!(code, PROTOCOL_ERROR, "stream {stream}");
            reset.push(stream);
        }
    }
    reset.sort_unstable();
    assert_eq!(reset, [1, 3, 5]);
    assert!(
        !extended_connect,
        "the gateway offers no WebSocket over HTTP/2"
    );

    // The same connection serves an ordinary request, which alone reaches
    // the upstream, with the WebSocket's other headers and no upgrade.
    let mut plain = get("/after");
    plain.extend(ws);
    io.write_all(&h2_frame(
        HEADERS,
        END_STREAM | END_HEADERS,
        7,
        &hpack(&plain),
    ))
    .await
    .unwrap();
    let mut status = None;
    let mut body: Vec<u8> = Vec::new();
    loop {
        let (kind, flags, stream, payload) = h2_read(&mut io, &mut extended_connect).await;
        assert!(kind != RST_STREAM, "stream {stream} reset");
        if stream != 7 {
            continue;
        }
        if kind == HEADERS {
            // `:status: 200` comes first, as index 8 of HPACK's static table.
            status = payload.first().copied();
        }
        if kind == DATA {
            body.extend(&payload);
        }
        if flags & END_STREAM != 0 {
            break;
        }
    }
    assert_eq!(status, Some(0x88), "a 200 answer");
    assert_eq!(body, b"plain");
    let (path, headers) = seen
        .try_recv()
        .expect("the plain request reached the upstream");
    assert_eq!(path, "/after");
    assert!(headers.get("upgrade").is_none(), "{headers:?}");
    assert!(headers.get("connection").is_none(), "{headers:?}");
    assert_eq!(headers["sec-websocket-version"], "13");
    assert!(
        seen.try_recv().is_err(),
        "only the plain request went upstream"
    );
    assert_eq!(metric(&admin, "ordergate_tunnels_opened_total").await, 0.0);
    assert_eq!(metric(&admin, "ordergate_tunnels").await, 0.0);
}
