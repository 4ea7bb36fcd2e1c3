#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Edge operation in-process: metrics and health on the admin listener,
//! several listeners, the idle timeout, an HTTPS (and HTTP/2) upstream, the
//! whole-request timeout, and a configuration swapped while serving.

mod support;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ordergate::backend::Backend;
use ordergate::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The value of one sample line of a Prometheus text page (0 if absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The edge API's contract as kept in the repository.
fn contract_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi/ordergate.yaml")
}

const PER_OWNER_RULE: &str = r#"
[[rate_limits.rules]]
name = "orders-per-owner"
methods = ["POST"]
paths = ["/orders"]
key = "owner"
rate = 1
per_secs = 3600
"#;

#[tokio::test]
async fn metrics_count_what_happened() {
    let env = admin_env(PER_OWNER_RULE).await;
    let before = env.admin.get("/metrics", &[]).await;
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .contains("openmetrics")
    );
    let before = before.text();

    // An implicit creation through the shorthand.
    let (_, owner) = env
        .client
        .create_implicitly(&[
            ("authorization", AUTH),
            ("content-type", "application/json"),
        ])
        .await;
    let c = cookie(&owner);
    // Two reads through the shorthand.
    for _ in 0..2 {
        let r = env.client.get("/order", &[("cookie", &c)]).await;
        assert_eq!(r.status, 200);
    }
    // A second open order: 409; then over the rule's quota: 429.
    let conflict = env
        .client
        .send(Method::POST, "/orders", &[("cookie", &c)], "")
        .await;
    assert_eq!(conflict.status, 409);
    let limited = env
        .client
        .send(Method::POST, "/orders", &[("cookie", &c)], "")
        .await;
    assert_eq!(limited.status, 429);
    // A path the gateway refuses.
    let bad = env.client.get("/orders/%2e%2e/x", &[]).await;
    assert_eq!(bad.status, 400);

    let after = env.admin.get("/metrics", &[]).await.text();
    let moved = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(moved("ordergate_implicit_creations_total"), 1.0);
    assert_eq!(moved("ordergate_open_order_conflicts_total"), 1.0);
    assert_eq!(
        moved("ordergate_rate_limited_total{rule=\"orders-per-owner\"}"),
        1.0
    );
    assert_eq!(
        moved("ordergate_requests_total{route=\"shorthand\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        moved("ordergate_requests_total{route=\"orders\",status=\"409\"}"),
        1.0
    );
    assert_eq!(
        moved("ordergate_requests_total{route=\"orders\",status=\"429\"}"),
        1.0
    );
    assert_eq!(
        moved("ordergate_requests_total{route=\"invalid\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        moved("ordergate_request_duration_seconds_count{route=\"shorthand\"}"),
        3.0
    );
    // Upstream exchanges: the creation, two reads, the 409's status check.
    assert!(moved("ordergate_upstream_duration_seconds_count") >= 4.0);
    assert_eq!(sample(&after, "ordergate_open_orders"), 1.0);
    assert_eq!(env.backend.state.count(&Method::POST, "/orders"), 1);

    // Health and readiness; anything else is not there.
    assert_eq!(env.admin.get("/healthz", &[]).await.status, 200);
    assert_eq!(env.admin.get("/readyz", &[]).await.status, 200);
    assert_eq!(env.admin.get("/nothing", &[]).await.status, 404);
    let post = env.admin.send(Method::POST, "/metrics", &[], "x").await;
    assert_eq!(post.status, 405);
    // The admin endpoints are not on the public listener.
    assert_ne!(env.client.get("/metrics", &[]).await.text(), after);
    env.gateway.stop().await;
}

#[tokio::test]
async fn admin_serves_the_edge_contract() {
    let env = admin_env("").await;
    let contract = env.admin.get("/openapi.yaml", &[]).await;
    assert_eq!(contract.status, 200);
    assert_eq!(
        contract.header("content-type"),
        Some("application/yaml; charset=utf-8")
    );
    let text = contract.text();
    assert_eq!(text, std::fs::read_to_string(contract_path()).unwrap());
    assert!(text.contains("\nopenapi: 3.1.0\n"), "{}", &text[..200]);
    let head = env.admin.send(Method::HEAD, "/openapi.yaml", &[], "").await;
    assert_eq!(head.status, 200);
    // Not on the public listener: there the path is the upstream's, and
    // the emulated backend has no such resource.
    let public = env.client.get("/openapi.yaml", &[]).await;
    assert_eq!(public.status, 404);
    assert!(
        public.json()["itemNotFound"].is_object(),
        "{}",
        public.text()
    );
    env.gateway.stop().await;
}

#[tokio::test]
async fn upstream_errors_are_counted_by_kind() {
    let up = misbehaving_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"\n")
        .replace("response_timeout_ms = 5000", "response_timeout_ms = 300");
    let config = Config::parse(&text).unwrap();
    let (gw, admin) = Gateway::start_with_admin(config, gl).await;
    let client = HttpClient::new(gw.base.clone());
    assert_eq!(client.get("/slow", &[]).await.status, 504);
    assert_eq!(client.get("/invalid-http", &[]).await.status, 502);
    assert_eq!(client.get("/invalid-http", &[]).await.status, 502);
    let page = admin.get("/metrics", &[]).await.text();
    assert_eq!(
        sample(&page, "ordergate_upstream_errors_total{kind=\"timeout\"}"),
        1.0
    );
    assert_eq!(
        sample(&page, "ordergate_upstream_errors_total{kind=\"protocol\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &page,
            "ordergate_requests_total{route=\"other\",status=\"502\"}"
        ),
        2.0
    );
    gw.stop().await;
}

#[tokio::test]
async fn readiness_turns_off_while_draining() {
    let up = misbehaving_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"\n");
    let config = Config::parse(&text).unwrap();
    let (gw, admin) = Gateway::start_with_admin(config, gl).await;
    let client = HttpClient::new(gw.base.clone());
    assert_eq!(admin.get("/readyz", &[]).await.status, 200);
    // A slow request (3 s) keeps the gateway draining after the stop.
    let slow = tokio::spawn(async move { client.get("/slow", &[]).await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(gw.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ready = admin.get("/readyz", &[]).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.text(), "draining\n");
    assert_eq!(slow.await.unwrap(), 200);
    stopping.await.unwrap();
}

#[tokio::test]
async fn several_listeners_serve_the_same_gateway() {
    let c = test_ca();
    let backend = Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_base_url = "http://127.0.0.1:8080"
[[server.listeners]]
listen = "127.0.0.1:0"
[[server.listeners]]
listen = "127.0.0.1:0"
tls = {{ cert_path = "{}", key_path = "{}" }}
[upstream]
url = "http://{}"
rewrite_bases = ["{INTERNAL}"]
[store]
kind = "memory"
"#,
        c.leaf_cert.display(),
        c.leaf_key.display(),
        backend.addr
    );
    let config = Config::parse(&text).unwrap();
    let bound = ordergate::Bound::bind(&config).await.unwrap();
    let addrs: Vec<SocketAddr> = bound
        .listeners
        .iter()
        .map(|l| l.tcp.local_addr().unwrap())
        .collect();
    assert_eq!(addrs.len(), 3);
    let gw = Gateway::start_bound(config, bound).await;

    // Implicit creation on the first, seen on the second (plain) and third (TLS).
    let first = HttpClient::new(format!("http://{}", addrs[0]));
    let created = first.send(Method::POST, "/order", &[], "").await;
    assert!(created.status.is_success());
    let c_owner = cookie(&created.owner().unwrap());
    let second = HttpClient::new(format!("http://{}", addrs[1]));
    let view = second.get("/order", &[("cookie", &c_owner)]).await;
    assert_eq!(view.status, 200);

    let tls = tls_client_config(c.ca_der.clone(), &[b"h2"]);
    let (status, body, version) = https_get(&tls, addrs[2], "/order", Some(&c_owner)).await;
    assert_eq!((status, version), (200, http::Version::HTTP_2));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json, view.json());
    // Plain HTTP on the TLS listener is not served.
    let raw_answer = raw(
        addrs[2],
        &[b"GET /order HTTP/1.1\r\nhost: x\r\n\r\n"],
        Duration::from_secs(2),
    )
    .await;
    assert!(!raw_answer.starts_with("HTTP/1.1 200"), "{raw_answer}");
    gw.stop().await;
}

#[tokio::test]
async fn a_quiet_connection_is_closed_after_the_idle_timeout() {
    let up = misbehaving_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"\n").replace(
        "max_request_body_bytes",
        "idle_timeout_ms = 400\nmax_request_body_bytes",
    );
    let gw = Gateway::start(Config::parse(&text).unwrap(), gl).await;

    // One request, then silence: the connection is closed.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the idle connection was not closed");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A request slower than the idle timeout still gets its whole answer.
    let slow = raw(
        gw.addr,
        &[b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"],
        Duration::from_secs(8),
    )
    .await;
    assert!(slow.starts_with("HTTP/1.1 200"), "{slow}");
    assert!(slow.ends_with("ok"), "{slow}");
    gw.stop().await;
}

// --- An HTTPS upstream -------------------------------------------------------

/// A test CA, a certificate for `localhost` signed by it, and both as files.
struct TestCa {
    _dir: tempfile::TempDir,
    ca_cert: PathBuf,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    leaf_cert: PathBuf,
    leaf_key: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

fn test_ca() -> TestCa {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ordergate test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_cert = dir.path().join("ca.pem");
    let leaf_cert = dir.path().join("leaf.pem");
    let leaf_key_path = dir.path().join("leaf.key");
    std::fs::write(&ca_cert, ca.pem()).unwrap();
    std::fs::write(&leaf_cert, leaf.pem()).unwrap();
    std::fs::write(&leaf_key_path, leaf_key.serialize_pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        )
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TestCa {
        ca_der: ca.der().clone(),
        _dir: dir,
        ca_cert,
        leaf_cert,
        leaf_key: leaf_key_path,
        server: Arc::new(server),
    }
}

/// One GET over TLS (HTTP/2 if negotiated): status, body, version.
async fn https_get(
    config: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Bytes, http::Version) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut req = Request::builder()
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let req = req.body(Full::new(Bytes::new())).unwrap();
    let resp = if h2 {
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    let version = resp.version();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body, version)
}

/// An upstream answering `{"version", "path"}`, over TLS with `tls`, or
/// plain (HTTP/1.1 or HTTP/2 prior knowledge) without.
async fn version_upstream(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body = serde_json::json!({
                            "version": format!("{:?}", req.version()),
                            "path": req.uri().path(),
                        });
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .unwrap(),
                        )
                    });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(tls) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await
                        else {
                            return;
                        };
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    addr
}

/// A gateway whose upstream is `url`, with `upstream_keys` added to
/// `[upstream]`.
async fn gateway_to(url: &str, upstream_keys: &str) -> (Gateway, HttpClient) {
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    let text = format!(
        r#"
[server]
listen = "{addr}"
public_base_url = "http://{addr}"
[upstream]
url = "{url}"
{upstream_keys}
[store]
kind = "memory"
"#
    );
    let gw = Gateway::start(Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    (gw, client)
}

#[tokio::test]
async fn https_upstream_with_a_configured_ca() {
    let c = test_ca();
    let up = version_upstream(Some(Arc::clone(&c.server))).await;
    let url = format!("https://localhost:{}", up.port());
    let ca = format!("ca_file = \"{}\"", c.ca_cert.display());

    let (gw, client) = gateway_to(&url, &ca).await;
    let r = client.get("/status", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/1.1");
    assert_eq!(r.json()["path"], "/status");
    gw.stop().await;

    // HTTP/2 to the upstream, negotiated by ALPN.
    let (gw, client) = gateway_to(&url, &format!("{ca}\nhttp2 = true")).await;
    let r = client.get("/status", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/2.0");
    gw.stop().await;

    // Without the test CA (webpki roots only) the certificate is not trusted:
    // a normalised 502, not a hang or a bare error.
    let (gw, client) = gateway_to(&url, "").await;
    let r = client.get("/status", &[]).await;
    assert_eq!(r.status, 502);
    let (kind, message) = r.fault();
    assert_eq!(kind, "badGateway");
    assert!(!message.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn http2_prior_knowledge_to_a_plain_upstream() {
    let up = version_upstream(None).await;
    let (gw, client) = gateway_to(&format!("http://{up}"), "http2 = true").await;
    let r = client.get("/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], "HTTP/2.0");
    gw.stop().await;

    let (gw, client) = gateway_to(&format!("http://{up}"), "").await;
    assert_eq!(client.get("/x", &[]).await.json()["version"], "HTTP/1.1");
    gw.stop().await;
}

#[tokio::test]
async fn bad_upstream_tls_settings_are_named() {
    let c = test_ca();
    let base = "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\n[upstream]\n";
    let problems = |upstream: &str| -> Vec<String> {
        Config::check(&format!("{base}{upstream}"))
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    let p = problems("url = \"https://localhost:1\"\nca_file = \"/nonexistent.pem\"\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("upstream.ca_file: cannot read"), "{p:?}");
    let p = problems(&format!(
        "url = \"https://localhost:1\"\nca_file = \"{}\"\n",
        c.leaf_key.display()
    ));
    assert!(p[0].starts_with("upstream.ca_file: "), "{p:?}");
    let p = problems(&format!(
        "url = \"http://localhost:1\"\nca_file = \"{}\"\n",
        c.ca_cert.display()
    ));
    assert_eq!(
        p,
        ["upstream.ca_file: only used with an https:// upstream.url"]
    );
    let p = problems(
        "url = \"http://localhost:1\"\nresponse_timeout_ms = 5000\nrequest_timeout_ms = 1000\n",
    );
    assert_eq!(
        p,
        ["upstream.request_timeout_ms: must not be shorter than upstream.response_timeout_ms"]
    );
}

#[tokio::test]
async fn the_whole_upstream_exchange_has_a_deadline() {
    // Headers in time, then the body stalls: past request_timeout_ms the
    // client's answer breaks off instead of hanging.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let (gw, _) = gateway_to(
        &format!("http://{up}"),
        "response_timeout_ms = 300\nrequest_timeout_ms = 600",
    )
    .await;
    let started = std::time::Instant::now();
    let answer = raw(
        gw.addr,
        &[b"GET /stall HTTP/1.1\r\nhost: x\r\n\r\n"],
        Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("part"), "{answer}");
    assert!(
        took < Duration::from_secs(5),
        "the connection was closed at the deadline, not left open ({took:?})"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_new_configuration_applies_without_dropping_connections() {
    let backend = Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    let text = |rate: u32| {
        config_text(
            addr,
            backend.addr,
            &format!(
                "[store]\nkind = \"memory\"\n[[rate_limits.rules]]\nname = \"reads\"\npaths = [\"/status\"]\nkey = \"client_ip\"\nrate = {rate}\nper_secs = 3600\n"
            ),
        )
    };
    let gw = Gateway::start(Config::parse(&text(1000)).unwrap(), gl).await;

    // One keep-alive connection, used before and after the reload.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut conn, driver) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(driver);
    let get = || {
        Request::builder()
            .uri("/status")
            .header("host", "x")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    for _ in 0..3 {
        let r = conn.send_request(get()).await.unwrap();
        assert_ne!(r.status(), 429);
        assert!(
            r.headers()["ratelimit-policy"]
                .to_str()
                .unwrap()
                .contains("q=1000")
        );
        r.into_body().collect().await.unwrap();
    }
    // The same rules with another change: the counts carry on.
    let remaining = |r: &http::Response<hyper::body::Incoming>| -> String {
        let state = r.headers()["ratelimit"].to_str().unwrap();
        state.split(';').nth(1).unwrap().to_owned()
    };
    let same_rules = text(1000).replace("response_timeout_ms = 5000", "response_timeout_ms = 4000");
    gw.reload
        .send(Config::parse(&same_rules).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = conn.send_request(get()).await.unwrap();
    assert_eq!(remaining(&r), "r=996");
    r.into_body().collect().await.unwrap();
    // A changed rule starts afresh, with its new quota.
    gw.reload
        .send(Config::parse(&text(1)).unwrap())
        .await
        .unwrap();
    let mut statuses = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !statuses.contains(&429) && std::time::Instant::now() < deadline {
        let r = conn.send_request(get()).await.unwrap();
        statuses.push(r.status().as_u16());
        r.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(conn.is_ready(), "the connection stayed open");
    gw.stop().await;
}

/// Process figures, build info and the connection gauges on `/metrics`.
#[tokio::test]
async fn metrics_show_the_process_build_and_connections() {
    let env = admin_env("").await;
    let page = env.admin.get("/metrics", &[]).await.text();
    assert!(
        sample(&page, "ordergate_process_resident_memory_bytes") > 1e6,
        "{page}"
    );
    assert!(sample(&page, "ordergate_process_open_fds") >= 3.0, "{page}");
    assert!(
        page.contains("ordergate_process_cpu_seconds_total "),
        "{page}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        page.lines().any(|l| l.starts_with(&format!(
            "ordergate_build_info{{version=\"{version}\",commit=\""
        )) && l.ends_with("} 1")),
        "{page}"
    );
    assert_eq!(sample(&page, "ordergate_tunnels"), 0.0);
    assert_eq!(sample(&page, "ordergate_client_connections"), 0.0, "{page}");
    assert_eq!(sample(&page, "ordergate_upstream_pool_connections"), 0.0);

    // Two client connections held open, one request through each: both are
    // counted, and the upstream connection the requests used stays pooled.
    let addr: SocketAddr = env
        .gateway
        .base
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /status HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 "), "{:?}", &buf[..n]);
        held.push(s);
    }
    let page = env.admin.get("/metrics", &[]).await.text();
    assert_eq!(sample(&page, "ordergate_client_connections"), 2.0, "{page}");
    assert!(
        sample(&page, "ordergate_upstream_pool_connections") >= 1.0,
        "{page}"
    );
    drop(held);
    // Closed connections leave the gauge once the server sees them go.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = env.admin.get("/metrics", &[]).await.text();
        if sample(&page, "ordergate_client_connections") == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
