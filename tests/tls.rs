#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS termination with certificates made at test time: HTTP/1.1 and HTTP/2
//! over one listener by ALPN, curl --http2, and bad certificate files.

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
    let tls = format!(
        "[server.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n",
        c.cert.display(),
        c.key.display()
    );
    let text = config_text(
        gl.local_addr().unwrap(),
        up,
        &format!("[store]\nkind = \"memory\"\n{tls}"),
    );
    // [server.tls] must follow the [server] keys: move it there.
    let text = text
        .replace(&tls, "")
        .replace("[upstream]", &format!("{tls}[upstream]"));
    Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await
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
