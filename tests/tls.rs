#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS termination with certificates made at test time: HTTP/1.1 and HTTP/2
//! over one listener by ALPN, curl --http2, bad certificate files, and the
//! hardening options: certificate rotation on reload (per-core workers
//! included), OCSP stapling, HSTS and the server's TLS 1.2 cipher order.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::PathBuf;
use support::*;

struct Certs {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn certs() -> Certs {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Certs {
        der: ck.cert.der().clone(),
        cert,
        key,
        _dir: dir,
    }
}

async fn tls_gateway(c: &Certs) -> Gateway {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = tls_config_text(gl.local_addr().unwrap(), up, c, "");
    Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await
}

/// A config whose `listen` is TLS with `c`'s files and `options` (more keys
/// of the `tls` table, each starting with a comma).
fn tls_config_text(
    gateway: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    c: &Certs,
    options: &str,
) -> String {
    let tls = format!(
        "tls = {{ cert_path = \"{}\", key_path = \"{}\"{options} }}\n",
        c.cert.display(),
        c.key.display()
    );
    config_text(gateway, upstream, "[store]\nkind = \"memory\"\n")
        .replace("[upstream]", &format!("{tls}[upstream]"))
}

async fn connect(
    gw: &Gateway,
    c: &Certs,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = tls_client_config(c.der.clone(), &[alpn]);
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    tls
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn http1_and_http2_over_one_tls_listener() {
    let c = certs();
    let gw = tls_gateway(&c).await;

    let (mut h1, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(&gw, &c, b"http/1.1").await))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = h1.send_request(get("/x")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_11);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");

    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        TokioIo::new(connect(&gw, &c, b"h2").await),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let resp = h2.send_request(get("/y")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
    }
    // Faults come over TLS in the same shape.
    let resp = h2.send_request(get("/order")).await.unwrap();
    assert_eq!(resp.status(), 401);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["unauthorized"]["guid"], id);
}

#[tokio::test]
async fn curl_speaks_http2_to_the_gateway() {
    let c = certs();
    let gw = tls_gateway(&c).await;
    let port = gw.addr.port();
    let out = tokio::process::Command::new("curl")
        .args(["-s", "-i", "--http2", "--cacert"])
        .arg(&c.cert)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            &format!("https://localhost:{port}/curl"),
        ])
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/2 200"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_is_refused_and_the_gateway_stays_up() {
    let c = certs();
    let gw = tls_gateway(&c).await;
    let out = raw(
        gw.addr,
        &[b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"],
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(!out.contains("HTTP/1.1 200"), "{out}");
    let (mut h1, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(&gw, &c, b"http/1.1").await))
            .await
            .unwrap();
    tokio::spawn(conn);
    assert_eq!(h1.send_request(get("/x")).await.unwrap().status(), 200);
}

#[test]
fn bad_certificate_or_key_files_name_the_key() {
    let c = certs();
    let base = "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"https://x\"\n[server.tls]\ncert_path = \"CERT\"\nkey_path = \"KEY\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    let cfg = |cert: &str, key: &str| {
        ordergate::config::Config::parse(&base.replace("CERT", cert).replace("KEY", key))
    };
    let (cert, key) = (c.cert.to_str().unwrap(), c.key.to_str().unwrap());
    assert!(cfg(cert, key).is_ok());
    assert_eq!(
        cfg("/nonexistent.pem", key).unwrap_err().key,
        "server.tls.cert_path"
    );
    assert_eq!(
        cfg(key, key).unwrap_err().key,
        "server.tls.cert_path",
        "a key is not a certificate"
    );
    assert_eq!(
        cfg(cert, "/nonexistent.pem").unwrap_err().key,
        "server.tls.key_path"
    );
    assert_eq!(
        cfg(cert, cert).unwrap_err().key,
        "server.tls.key_path",
        "a certificate is not a key"
    );
    // A key of another certificate.
    let other = certs();
    assert_eq!(
        cfg(cert, other.key.to_str().unwrap()).unwrap_err().key,
        "server.tls.key_path"
    );
}

/// Certificates of a new client with its own roots (no session to resume),
/// as seen in a handshake with `addr`.
async fn handshake(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap()
}

fn peer_cert(
    tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> rustls::pki_types::CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// Trusts every certificate of `roots`.
fn client_trusting(roots: &[&Certs]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.der.clone()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// Polls new handshakes until `seen` holds of one (a reload applies
/// asynchronously), for at most 5 s.
async fn until_a_new_handshake<F>(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    seen: F,
) -> bool
where
    F: Fn(&tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> bool,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if seen(&handshake(addr, std::sync::Arc::clone(&config)).await) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_reload_rotates_the_certificate_and_open_connections_keep_working() {
    let (a, b, c) = (certs(), certs(), certs());
    let up = echo_upstream().await;
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    // The running files, rewritten in place below.
    let dir = tempfile::tempdir().unwrap();
    let live = Certs {
        _dir: tempfile::tempdir().unwrap(),
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
        der: a.der.clone(),
    };
    std::fs::copy(&a.cert, &live.cert).unwrap();
    std::fs::copy(&a.key, &live.key).unwrap();
    let text = tls_config_text(addr, up, &live, "");
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let trust = client_trusting(&[&a, &b, &c]);

    let open = handshake(addr, std::sync::Arc::clone(&trust)).await;
    assert_eq!(peer_cert(&open), a.der);
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(open))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = h1.send_request(get("/before")).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();

    // New content at the same paths.
    std::fs::copy(&b.cert, &live.cert).unwrap();
    std::fs::copy(&b.key, &live.key).unwrap();
    gw.reload
        .send(ordergate::config::Config::parse(&text).unwrap())
        .await
        .unwrap();
    assert!(
        until_a_new_handshake(addr, std::sync::Arc::clone(&trust), |t| peer_cert(t)
            == b.der)
        .await,
        "new handshakes get the new certificate"
    );
    // The connection opened before goes on, with the certificate it had.
    let resp = h1.send_request(get("/after")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["uri"], "/after", "{body}");

    // Other paths.
    let moved = tls_config_text(addr, up, &c, "");
    gw.reload
        .send(ordergate::config::Config::parse(&moved).unwrap())
        .await
        .unwrap();
    assert!(
        until_a_new_handshake(addr, std::sync::Arc::clone(&trust), |t| peer_cert(t)
            == c.der)
        .await,
        "a changed certificate path applies on reload"
    );
    assert_eq!(h1.send_request(get("/still")).await.unwrap().status(), 200);
}

/// `ordergate_worker_connections_total` of workers 0 and 1.
async fn accepted_by_worker(admin: &HttpClient) -> [u64; 2] {
    let page = admin.get("/metrics", &[]).await.text();
    [0, 1].map(|w| {
        let prefix = format!("ordergate_worker_connections_total{{worker=\"{w}\"}} ");
        page.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |n| n.trim().parse().unwrap())
    })
}

/// `n` new TLS connections (each a new client: no session to resume), one
/// GET each; the certificate each saw.
async fn tls_gets(
    addr: std::net::SocketAddr,
    roots: &[&Certs],
    n: usize,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let mut seen = Vec::with_capacity(n);
    for i in 0..n {
        let tls = handshake(addr, client_trusting(roots)).await;
        let cert = peer_cert(&tls);
        let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let path = format!("/tls/{i}");
        let resp = h1.send_request(get(&path)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["uri"], path.as_str(), "{body}");
        seen.push(cert);
    }
    seen
}

#[tokio::test]
async fn per_core_workers_serve_tls_and_each_gets_the_rotated_certificate() {
    let (a, b) = (certs(), certs());
    let up = echo_upstream().await;
    let per_core = |c: &Certs| {
        tls_config_text("127.0.0.1:0".parse().unwrap(), up, c, "").replace(
            "[server]\n",
            "[server]\nworker_mode = \"per_core\"\nworkers = 2\n",
        ) + "[admin]\nlisten = \"127.0.0.1:0\"\n"
    };
    let config = ordergate::config::Config::parse(&per_core(&a)).unwrap();
    // Port 0 is chosen once and bound again for the second worker.
    let bound = ordergate::Bound::bind(&config).await.unwrap();
    assert_eq!(bound.other_workers.len(), 1);
    let addr = bound.listeners[0].tcp.local_addr().unwrap();
    assert_eq!(bound.other_workers[0][0].tcp.local_addr().unwrap(), addr);
    let admin = HttpClient::new(format!(
        "http://{}",
        bound.admin.as_ref().unwrap().local_addr().unwrap()
    ));
    let gw = Gateway::start_bound(config, bound).await;

    assert!(
        tls_gets(addr, &[&a, &b], 40)
            .await
            .iter()
            .all(|c| *c == a.der)
    );
    let before = accepted_by_worker(&admin).await;
    assert!(before.iter().all(|n| *n > 0), "{before:?}");

    let rotated = ordergate::config::Config::parse(&per_core(&b)).unwrap();
    gw.reload.send(rotated).await.unwrap();
    assert!(
        until_a_new_handshake(addr, client_trusting(&[&a, &b]), |t| peer_cert(t) == b.der).await,
        "new handshakes get the new certificate"
    );
    let counted = accepted_by_worker(&admin).await;
    // Both workers take some of these (SO_REUSEPORT hashes each new
    // connection's ports), and every one gets the new certificate.
    let seen = tls_gets(addr, &[&a, &b], 40).await;
    assert!(
        seen.iter().all(|c| *c == b.der),
        "an old certificate after the reload"
    );
    let after = accepted_by_worker(&admin).await;
    assert!(
        (0..2).all(|w| after[w] > counted[w]),
        "{counted:?} then {after:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn hsts_on_answers_over_tls_only() {
    let c = certs();
    let up = echo_upstream().await;
    let (tl, pl) = (listener().await, listener().await);
    let (secure, plain) = (tl.local_addr().unwrap(), pl.local_addr().unwrap());
    let text = |options: &str| {
        tls_config_text(secure, up, &c, options).replace(
            "[upstream]",
            &format!("[[server.listeners]]\nlisten = \"{plain}\"\n[upstream]"),
        )
    };
    let hsts = text(", hsts_max_age_secs = 31536000, hsts_include_subdomains = true");
    let config = ordergate::config::Config::parse(&hsts).unwrap();
    let bound = ordergate::Bound {
        listeners: vec![
            ordergate::server::Listener {
                tls: config.server.listeners[0].tls.clone(),
                tcp: tl,
            },
            ordergate::server::Listener { tcp: pl, tls: None },
        ],
        admin: None,
        other_workers: Vec::new(),
    };
    let gw = Gateway::start_bound(config, bound).await;

    let tls_answer = || async {
        let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
            connect(&gw, &c, b"http/1.1").await,
        ))
        .await
        .unwrap();
        tokio::spawn(conn);
        h1.send_request(get("/x")).await.unwrap()
    };
    let resp = tls_answer().await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    // Faults too.
    let (mut h1, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(&gw, &c, b"http/1.1").await))
            .await
            .unwrap();
    tokio::spawn(conn);
    let fault = h1.send_request(get("/order")).await.unwrap();
    assert_eq!(fault.status(), 401);
    assert!(fault.headers().contains_key("strict-transport-security"));

    let plain_answer = HttpClient::new(format!("http://{plain}"))
        .get("/x", &[])
        .await;
    assert_eq!(plain_answer.status, 200);
    assert_eq!(plain_answer.header("strict-transport-security"), None);

    // Off again after a reload without it.
    gw.reload
        .send(ordergate::config::Config::parse(&text("")).unwrap())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = tls_answer().await;
    while last.headers().contains_key("strict-transport-security")
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        last = tls_answer().await;
    }
    assert!(!last.headers().contains_key("strict-transport-security"));
}

/// Accepts any certificate and keeps the OCSP response stapled to it.
#[derive(Debug)]
struct OcspRecorder(std::sync::Mutex<Vec<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for OcspRecorder {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.0.lock().unwrap().push(ocsp_response.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn recording_client(
    recorder: &std::sync::Arc<OcspRecorder>,
    version: &'static rustls::SupportedProtocolVersion,
) -> std::sync::Arc<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::clone(recorder) as _)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

#[tokio::test]
async fn the_ocsp_response_is_stapled_and_reloads_with_the_certificate() {
    let c = certs();
    let dir = tempfile::tempdir().unwrap();
    let ocsp = dir.path().join("ocsp.der");
    // DER OCSPResponse SEQUENCEs; only their bytes matter to the server.
    let (first, second) = (
        vec![0x30, 0x03, 0x0a, 0x01, 0x00],
        vec![0x30, 0x03, 0x0a, 0x01, 0x03],
    );
    std::fs::write(&ocsp, &first).unwrap();
    let up = echo_upstream().await;
    let gl = listener().await;
    let addr = gl.local_addr().unwrap();
    let text = tls_config_text(
        addr,
        up,
        &c,
        &format!(", ocsp_path = \"{}\"", ocsp.display()),
    );
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let recorder = std::sync::Arc::new(OcspRecorder(Default::default()));
        let tls = handshake(addr, recording_client(&recorder, version)).await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        assert_eq!(
            *recorder.0.lock().unwrap(),
            std::slice::from_ref(&first),
            "{version:?}"
        );
    }

    std::fs::write(&ocsp, &second).unwrap();
    gw.reload
        .send(ordergate::config::Config::parse(&text).unwrap())
        .await
        .unwrap();
    let recorder = std::sync::Arc::new(OcspRecorder(Default::default()));
    let client = recording_client(&recorder, &rustls::version::TLS13);
    assert!(
        until_a_new_handshake(addr, client, |_| recorder
            .0
            .lock()
            .unwrap()
            .last()
            .is_some_and(|r| *r == second))
        .await
    );

    // Without ocsp_path nothing is stapled.
    let plain = tls_gateway(&c).await;
    let recorder = std::sync::Arc::new(OcspRecorder(Default::default()));
    handshake(
        plain.addr,
        recording_client(&recorder, &rustls::version::TLS13),
    )
    .await;
    assert_eq!(*recorder.0.lock().unwrap(), [Vec::<u8>::new()]);
}

#[tokio::test]
async fn tls12_suite_follows_the_server_order_unless_told_otherwise() {
    let c = certs();
    // The client prefers AES-128; the server's order (rustls' default)
    // puts AES-256 first.
    let client = {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = vec![
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(c.der.clone()).unwrap();
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let suite = |options: &'static str| {
        let client = std::sync::Arc::clone(&client);
        let c = &c;
        async move {
            let up = echo_upstream().await;
            let gl = listener().await;
            let addr = gl.local_addr().unwrap();
            let text = tls_config_text(addr, up, c, options);
            let _gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
            let tls = handshake(addr, client).await;
            tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
        }
    };
    assert_eq!(
        suite("").await,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );
    assert_eq!(
        suite(", prefer_server_cipher_order = false").await,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    // A configured order wins over the client's.
    assert_eq!(
        suite(", cipher_suites = [\"TLS13_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]").await,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
}

#[test]
fn bad_tls_options_name_the_key() {
    let c = certs();
    let up: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let gw: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let key_of = |options: &str| {
        ordergate::config::Config::parse(&tls_config_text(gw, up, &c, options))
            .map(|_| String::new())
            .unwrap_or_else(|e| e.key)
    };
    assert_eq!(key_of(""), "");
    assert_eq!(
        key_of(", cipher_suites = [\"TLS_RSA_WITH_RC4_128_SHA\"]"),
        "server.tls.cipher_suites"
    );
    assert_eq!(key_of(", cipher_suites = []"), "server.tls.cipher_suites");
    assert_eq!(
        key_of(", ocsp_path = \"/nonexistent.der\""),
        "server.tls.ocsp_path"
    );
    // A PEM file is not a DER OCSP response.
    assert_eq!(
        key_of(&format!(", ocsp_path = \"{}\"", c.cert.display())),
        "server.tls.ocsp_path"
    );
    assert_eq!(
        key_of(", hsts_include_subdomains = true"),
        "server.tls.hsts_include_subdomains"
    );
}
