#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Slow and bursty clients over real sockets: hundreds of clients that send
//! a byte a second (HTTP/1, HTTP/2 prior knowledge) or nothing at all are
//! closed by the connection deadlines while others are served; a stalled
//! TLS handshake and a silent client end at their own deadlines; an HTTP/2
//! connection kept busy by pings but without requests ends at the idle
//! timeout; and a burst of a thousand connects is absorbed by the listen
//! backlog.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Raises the open-file limit towards `want`; the number of descriptors the
/// test may count on.
fn fd_budget(want: u64) -> u64 {
    let _ = rlimit::increase_nofile_limit(want);
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    soft
}

/// A plain upstream answering every request 200, on a listener with a deep
/// backlog so that the gateway's own connections to it never wait.
async fn wide_upstream() -> std::net::SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = socket.listen(4096).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// The gateway bound the way the binary binds it (`Bound::bind`, with the
/// configured listen backlog), in front of `upstream`.
async fn gateway(upstream: std::net::SocketAddr, server_extra: &str) -> Gateway {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://127.0.0.1\"\n{server_extra}\n[upstream]\nurl = \"http://{upstream}\"\n[store]\nkind = \"memory\"\n"
    );
    let config = ordergate::config::Config::parse(&text).unwrap();
    let bound = ordergate::Bound::bind(&config).await.unwrap();
    Gateway::start_bound(config, bound).await
}

#[derive(Clone, Copy, Debug)]
enum Slow {
    /// An HTTP/1 request head, a byte a second.
    Http1,
    /// The HTTP/2 preface, a byte a second.
    Http2Preface,
    /// The HTTP/2 preface and SETTINGS at once, then HEADERS a byte a second.
    Http2Headers,
    /// Nothing at all.
    Silent,
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Plays one slow client until the gateway closes the connection, or
/// `give_up` passes; how long the connection lived, if it was closed.
async fn slow_client(
    addr: std::net::SocketAddr,
    kind: Slow,
    give_up: Duration,
) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let trickle: Vec<u8> = match kind {
        Slow::Http1 => b"GET /x HTTP/1.1\r\nhost: gw\r\nx-slow: aaaaaaaaaaaaaaaa\r\n\r\n".to_vec(),
        Slow::Http2Preface => PREFACE.to_vec(),
        Slow::Http2Headers => {
            s.write_all(PREFACE).await.unwrap();
            s.write_all(SETTINGS).await.unwrap();
            // A HEADERS frame header announcing a 40-byte block, stream 1.
            vec![0, 0, 40, 1, 4, 0, 0, 0, 1, 0x82, 0x86, 0x84]
        }
        Slow::Silent => Vec::new(),
    };
    let mut next = trickle.iter();
    let mut buf = [0u8; 4096];
    loop {
        if opened.elapsed() > give_up {
            return None;
        }
        if let Some(b) = next.next()
            && s.write_all(&[*b]).await.is_err()
        {
            return Some(opened.elapsed());
        }
        // Read what the gateway sends (a 408 fault, HTTP/2 SETTINGS) until
        // it closes; a second between bytes.
        let second = Instant::now() + Duration::from_secs(1);
        loop {
            match tokio::time::timeout_at(second.into(), s.read(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_slow_clients_are_closed_on_time_while_others_are_served() {
    // Each slow client holds two descriptors in this process (both ends).
    let clients: usize = if fd_budget(4096) >= 2048 { 500 } else { 200 };
    let header_timeout = Duration::from_secs(1);
    let up = wide_upstream().await;
    let gw = gateway(up, "header_read_timeout_ms = 1000").await;
    let limit = header_timeout + Duration::from_secs(2);

    let mut slow = tokio::task::JoinSet::new();
    let kinds = [
        Slow::Http1,
        Slow::Http2Preface,
        Slow::Http2Headers,
        Slow::Silent,
    ];
    for i in 0..clients {
        let kind = kinds[i % kinds.len()];
        let addr = gw.addr;
        slow.spawn(async move { (kind, slow_client(addr, kind, limit).await) });
    }
    // Meanwhile an ordinary client keeps being served, until every slow
    // one has ended.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ordinary = tokio::spawn({
        let client = HttpClient::new(gw.base.clone());
        let done = std::sync::Arc::clone(&done);
        async move {
            let mut served = 0;
            while served < 3 || !done.load(std::sync::atomic::Ordering::SeqCst) {
                let a = client.get("/x", &[]).await;
                assert_eq!(a.status, 200, "{a:?}");
                served += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            served
        }
    });
    let results = tokio::time::timeout(Duration::from_secs(30), slow.join_all())
        .await
        .expect("every slow client ends");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = ordinary
        .await
        .expect("every ordinary request was served 200");
    let mut longest = Duration::ZERO;
    for (kind, lived) in &results {
        let lived =
            lived.unwrap_or_else(|| panic!("a {kind:?} client was still open after {limit:?}"));
        longest = longest.max(lived);
    }
    assert_eq!(results.len(), clients);
    println!(
        "{clients} slow clients closed, the last after {longest:?}; {served} ordinary requests served meanwhile"
    );
}

/// The kernel's count of connections dropped because a listen queue was
/// full (machine-wide; Linux only).
fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names
        .split_whitespace()
        .position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_simultaneous_connects_are_all_served() {
    // Four descriptors a connection here: client, gateway, and both ends of
    // the gateway's own connection upstream.
    let clients: usize = if fd_budget(8192) >= 4500 { 1000 } else { 200 };
    let up = wide_upstream().await;
    let gw = gateway(up, "").await;
    let overflows_before = listen_overflows();
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(clients));
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let go = std::sync::Arc::clone(&go);
        let addr = gw.addr;
        runs.spawn(async move {
            go.wait().await;
            let started = Instant::now();
            let mut s = TcpStream::connect(addr).await.ok()?;
            let connected = started.elapsed();
            s.write_all(b"GET /x HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.ok()?;
            out.starts_with(b"HTTP/1.1 200")
                .then(|| (connected, started.elapsed()))
        });
    }
    let results = tokio::time::timeout(Duration::from_secs(60), runs.join_all())
        .await
        .expect("every connect ends");
    let overflows = listen_overflows()
        .zip(overflows_before)
        .map(|(after, before)| after - before);
    let served: Vec<(Duration, Duration)> = results.into_iter().flatten().collect();
    assert_eq!(
        served.len(),
        clients,
        "some connections were not served 200"
    );
    let p = |mut v: Vec<Duration>, q: usize| {
        v.sort();
        v[(v.len() * q / 100).saturating_sub(1)]
    };
    let connects: Vec<Duration> = served.iter().map(|s| s.0).collect();
    let answers: Vec<Duration> = served.iter().map(|s| s.1).collect();
    // A handshake the kernel dropped for want of backlog is retried after 1 s.
    let retried = connects
        .iter()
        .filter(|t| **t >= Duration::from_secs(1))
        .count();
    println!(
        "{clients} simultaneous connects: listen queue overflows (machine-wide) {overflows:?}; connect p50 {:?} p99 {:?} max {:?} ({retried} took 1 s or more); connect-to-answer p50 {:?} p99 {:?} max {:?}",
        p(connects.clone(), 50),
        p(connects.clone(), 99),
        p(connects, 100),
        p(answers.clone(), 50),
        p(answers.clone(), 99),
        p(answers, 100),
    );
}

/// The gateway in front of `upstream` on a listener bound here, with an
/// admin listener; `server_extra` and `tables` go into the config.
async fn gateway_with_admin(
    upstream: std::net::SocketAddr,
    server_extra: &str,
    tables: &str,
) -> (Gateway, HttpClient) {
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    let text = format!(
        "[server]\nlisten = \"{addr}\"\npublic_base_url = \"http://{addr}\"\n{server_extra}\n[upstream]\nurl = \"http://{upstream}\"\n[store]\nkind = \"memory\"\n{tables}"
    );
    Gateway::start_with_admin(ordergate::config::Config::parse(&text).unwrap(), gl).await
}

/// The count of `ordergate_connections_refused_total` for `reason`.
async fn refused(admin: &HttpClient, reason: &str) -> u64 {
    let text = admin.get("/metrics", &[]).await.text();
    let prefix = format!("ordergate_connections_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_stalled_tls_handshake_ends_at_its_own_deadline() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let up = wide_upstream().await;
    let (gw, admin) = gateway_with_admin(
        up,
        &format!(
            "tls = {{ cert_path = \"{}\", key_path = \"{}\" }}\ntls_handshake_timeout_ms = 300\nheader_read_timeout_ms = 20000",
            cert.display(),
            key.display()
        ),
        "",
    )
    .await;
    // The first bytes of a ClientHello, then nothing.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"\x16\x03\x01\x00\xa5\x01").await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the stalled handshake was not ended");
    assert_eq!(refused(&admin, "tls_handshake_timeout").await, 1);
    // A silent client is ended by the first-byte deadline.
    let (gw, admin) = gateway_with_admin(
        up,
        "first_byte_timeout_ms = 200\nheader_read_timeout_ms = 20000",
        "",
    )
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "the silent connection was not ended");
    assert_eq!(refused(&admin, "first_byte_timeout").await, 1);
}

#[tokio::test]
async fn an_http2_connection_without_requests_is_closed_though_pings_keep_it_busy() {
    let up = wide_upstream().await;
    let (gw, admin) = gateway_with_admin(
        up,
        "idle_timeout_ms = 600\nhttp2_keep_alive_interval_ms = 100\nhttp2_keep_alive_timeout_ms = 1000",
        "",
    )
    .await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/x", gw.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The gateway's pings keep bytes moving; the connection ends all the
    // same once it has had no request for the idle timeout.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    // It was served, not refused.
    assert_eq!(refused(&admin, "header_timeout").await, 0);
}
