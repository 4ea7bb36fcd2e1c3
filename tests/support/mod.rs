//! Test harness: the emulated backend and the gateway on ephemeral 127.0.0.1
//! ports, and a small HTTP client over real sockets.
#![allow(dead_code)]

pub mod process;
pub mod redis_server;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ordergate::backend::Backend;
use ordergate::config::Config;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const AUTH: &str = "Basic cXdlQHBhcnRuZXJfYXBpX2RldmVsb3Blcl91c19tYWluOml1MzR0OGhm";
/// The internal base the emulated backend writes, as the real one does.
pub const INTERNAL: &str = "http://coreapi01.ote.chicago.hostway:8092";

pub struct Gateway {
    pub addr: SocketAddr,
    pub base: String,
    /// Sends a new configuration, as SIGHUP does in the binary.
    pub reload: tokio::sync::mpsc::Sender<Config>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Starts the gateway in-process on `listener` (bound by the caller, on
    /// port 0), with the config's TLS if it has one.
    pub async fn start(config: Config, listener: TcpListener) -> Self {
        let bound = ordergate::Bound::single(listener, &config);
        Self::start_bound(config, bound).await
    }

    /// Starts the gateway in-process on `listener`, with an admin listener
    /// of its own; returns a client of the admin endpoints too.
    pub async fn start_with_admin(config: Config, listener: TcpListener) -> (Self, HttpClient) {
        let mut bound = ordergate::Bound::single(listener, &config);
        let al = self::listener().await;
        let admin = HttpClient::new(format!("http://{}", al.local_addr().unwrap()));
        bound.admin = Some(al);
        (Self::start_bound(config, bound).await, admin)
    }

    /// Starts the gateway in-process on listeners bound by the caller.
    pub async fn start_bound(config: Config, bound: ordergate::Bound) -> Self {
        let addr = bound.listeners[0].tcp.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let (reload, reloads) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            ordergate::run(
                config,
                bound,
                async {
                    let _ = rx.await;
                },
                reloads,
            )
            .await
            .unwrap();
        });
        Self {
            addr,
            base: format!("http://{addr}"),
            reload,
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The emulated backend, a gateway with a memory store and `extra` config in
/// front of it, a client of it and one of its admin listener.
pub struct AdminEnv {
    pub backend: Backend,
    pub gateway: Gateway,
    pub client: HttpClient,
    pub admin: HttpClient,
}

pub async fn admin_env(extra: &str) -> AdminEnv {
    let backend = Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        backend.addr,
        &format!("[store]\nkind = \"memory\"\n{extra}"),
    );
    let config = Config::parse(&text).unwrap();
    let (gateway, admin) = Gateway::start_with_admin(config, gl).await;
    let client = HttpClient::new(gateway.base.clone());
    AdminEnv {
        backend,
        gateway,
        client,
        admin,
    }
}

/// A rate-limit rule letting each client IP one request an hour on `path`.
pub fn once_an_hour(name: &str, path: &str) -> String {
    format!(
        "\n[[rate_limits.rules]]\nname = \"{name}\"\npaths = [\"{path}\"]\nkey = \"client_ip\"\nrate = 1\nper_secs = 3600\n"
    )
}

/// The TOML of a gateway config in front of `upstream`, public base taken
/// from the gateway's own listener.
pub fn config_text(gateway: SocketAddr, upstream: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{gateway}"
public_base_url = "http://{gateway}"
max_request_body_bytes = 65536
[upstream]
url = "http://{upstream}"
rewrite_bases = ["{INTERNAL}"]
response_timeout_ms = 5000
{extra}
"#
    )
}

/// Backend + gateway (memory store unless `store` says otherwise).
pub struct Env {
    pub backend: Backend,
    pub gateway: Gateway,
    pub client: HttpClient,
}

impl Env {
    pub async fn start() -> Self {
        Self::with_store("[store]\nkind = \"memory\"").await
    }

    pub async fn with_store(store: &str) -> Self {
        let backend = Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
        let gl = listener().await;
        let config =
            Config::parse(&config_text(gl.local_addr().unwrap(), backend.addr, store)).unwrap();
        let gateway = Gateway::start(config, gl).await;
        let client = HttpClient::new(gateway.base.clone());
        Self {
            backend,
            gateway,
            client,
        }
    }

    pub fn public(&self) -> &str {
        &self.gateway.base
    }

    pub fn creations(&self) -> usize {
        self.backend.state.count(&Method::POST, "/orders")
    }

    /// The first request the backend saw that `which` picks.
    pub fn seen(
        &self,
        which: impl Fn(&ordergate::backend::Seen) -> bool,
    ) -> Option<ordergate::backend::Seen> {
        self.backend.state.seen().into_iter().find(|s| which(s))
    }
}

/// One emulated backend and `n` gateway replicas in front of it, each
/// started with `extra` (a `[store]` table and whatever else).
pub struct Replicas {
    pub backend: Backend,
    pub gateways: Vec<Gateway>,
    pub clients: Vec<HttpClient>,
}

impl Replicas {
    pub async fn start(n: usize, extra: &str) -> Self {
        let backend = Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
        let mut gateways = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..n {
            let gl = listener().await;
            let config =
                Config::parse(&config_text(gl.local_addr().unwrap(), backend.addr, extra)).unwrap();
            let gateway = Gateway::start(config, gl).await;
            clients.push(HttpClient::new(gateway.base.clone()));
            gateways.push(gateway);
        }
        Self {
            backend,
            gateways,
            clients,
        }
    }

    pub fn creations(&self) -> usize {
        self.backend.state.count(&Method::POST, "/orders")
    }
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The OwnerId of the answer's Set-Cookie headers.
    pub fn owner(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            c.strip_prefix("OwnerId=")
                .map(|rest| rest.split(';').next().unwrap().to_owned())
        })
    }

    /// Asserts the documented fault shape and returns (type, message).
    pub fn fault(&self) -> (String, String) {
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=UTF-8"),
            "{self:?}"
        );
        let v = self.json();
        let obj = v.as_object().expect("fault is an object");
        assert_eq!(obj.len(), 1, "{v}");
        let (kind, inner) = obj.iter().next().unwrap();
        assert_eq!(inner["code"], self.status.as_u16(), "{v}");
        assert!(
            inner["message"].is_string() && inner["details"].is_string(),
            "{v}"
        );
        // Every fault, the gateway's or the upstream's, carries the request id.
        assert_eq!(inner["guid"].as_str(), self.header("x-request-id"), "{v}");
        (kind.clone(), inner["message"].as_str().unwrap().to_owned())
    }
}

#[derive(Clone)]
pub struct HttpClient {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    /// `http://host:port` of the server it talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn new(base: String) -> Self {
        Self {
            base,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(20), self.client.request(req))
                .await
                .expect("answer in time")
                .expect("request sent");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, path, headers, "").await
    }

    /// An implicit creation through the shorthand (`PUT /order/account`,
    /// as in the walkthrough) with `headers`: asserts its 200 and the
    /// `OwnerId` it sets, and returns the answer and that owner.
    pub async fn create_implicitly(&self, headers: &[(&str, &str)]) -> (Answer, String) {
        let put = self
            .send(
                Method::PUT,
                "/order/account",
                headers,
                r#"{"currency": "USD", "language": "en-US"}"#,
            )
            .await;
        assert_eq!(put.status, 200, "implicit creation: {put:?}");
        let owner = put
            .owner()
            .expect("the OwnerId cookie of an implicit creation");
        (put, owner)
    }

    /// A creation as a side effect (`PUT …/emailEncryption`, the
    /// otherproduct page) with `headers`: asserts its 202, and returns the
    /// answer, the owner it set and the order id of its `Location`.
    pub async fn create_by_side_effect(
        &self,
        headers: &[(&str, &str)],
    ) -> (Answer, String, String) {
        let put = self
            .send(
                Method::PUT,
                "/accounts/acct999999/exchange/myexchangedomain.com/emailEncryption",
                headers,
                r#"{"adminEmail": "someone@somewhere.com"}"#,
            )
            .await;
        assert_eq!(put.status, 202, "side-effect creation: {put:?}");
        let owner = put.owner().expect("the OwnerId cookie of a creation");
        let id = order_id(put.header("location").expect("the order's Location"));
        (put, owner, id)
    }
}

pub fn cookie(owner: &str) -> String {
    format!("OwnerId={owner}")
}

/// The order id at the end of an `…/orders/<id>[/]` URL.
pub fn order_id(url: &str) -> String {
    let after = url.split("/orders/").nth(1).expect("an /orders/ URL");
    after
        .trim_end_matches('/')
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// An upstream that answers every request with what it received, as JSON
/// (`/json` answers a body full of internal URLs, `/redirect` a 302 to one,
/// `/big` 4 MiB of text in chunks).
pub async fn echo_upstream() -> SocketAddr {
    use hyper_util::rt::TokioIo;
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = match body.collect().await {
                            Ok(b) => b.to_bytes(),
                            Err(_) => Bytes::new(),
                        };
                        let mut resp = http::Response::builder();
                        let out: Bytes = match parts.uri.path() {
                            "/json" => {
                                resp = resp.header("content-type", "application/json");
                                serde_json::to_vec(&serde_json::json!({
                                "self": format!("http://{addr}/orders/1/"),
                                "nested": {"list": [format!("{INTERNAL}/accounts/a?x=1"), "http://elsewhere.example/x"]},
                                "text": format!("see {INTERNAL}/x"),
                                "lookalike": format!("{INTERNAL}9/x"),
                            }))
                            .unwrap()
                            .into()
                            }
                            "/redirect" => {
                                resp = resp
                                    .status(302)
                                    .header("location", format!("{INTERNAL}/orders/9?y=1"));
                                Bytes::new()
                            }
                            "/html" => {
                                resp = resp.header("content-type", "text/html");
                                Bytes::from(format!("<a href=\"{INTERNAL}/x\">x</a>"))
                            }
                            "/big" => Bytes::from(vec![b'x'; 4 << 20]),
                            _ => {
                                resp = resp.header("content-type", "application/json");
                                let headers: serde_json::Map<String, serde_json::Value> = parts
                                    .headers
                                    .keys()
                                    .map(|k| {
                                        let all: Vec<_> = parts
                                            .headers
                                            .get_all(k)
                                            .iter()
                                            .map(|v| {
                                                String::from_utf8_lossy(v.as_bytes()).into_owned()
                                            })
                                            .collect();
                                        (
                                            k.as_str().to_owned(),
                                            serde_json::Value::from(all.join(", ")),
                                        )
                                    })
                                    .collect();
                                serde_json::to_vec(&serde_json::json!({
                                    "method": parts.method.as_str(),
                                    "uri": parts.uri.to_string(),
                                    "headers": headers,
                                    "body": String::from_utf8_lossy(&body),
                                }))
                                .unwrap()
                                .into()
                            }
                        };
                        Ok::<_, std::convert::Infallible>(resp.body(Full::new(out)).unwrap())
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Gateway (memory store) in front of an arbitrary upstream.
pub async fn gateway_before(upstream: SocketAddr, extra: &str) -> (Gateway, HttpClient) {
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        upstream,
        &format!("[store]\nkind = \"memory\"\n{extra}"),
    );
    let gateway = Gateway::start(Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gateway.base.clone());
    (gateway, client)
}

/// Sends raw bytes on a new connection and reads until the peer closes or
/// `wait` passes.
pub async fn raw(addr: SocketAddr, parts: &[&[u8]], wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for p in parts {
        if s.write_all(p).await.is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads from `s` up to the end of a request head (and whatever came with
/// it); `None` when the connection ends or fails first.
pub async fn read_head(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// An upstream that misbehaves on purpose, speaking raw bytes over TCP: the
/// request path picks the answer (see [`bad_answer`]). Every connection
/// serves one request and closes.
pub async fn misbehaving_upstream() -> SocketAddr {
    use tokio::io::AsyncWriteExt;
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Some(head) = read_head(&mut s).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                match bad_answer(&path) {
                    Some(Bad::Bytes(bytes)) => {
                        let _ = s.write_all(&bytes).await;
                    }
                    Some(Bad::Slow(d)) => {
                        tokio::time::sleep(d).await;
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
                    }
                    Some(Bad::Partial(bytes)) => {
                        let _ = s.write_all(&bytes).await;
                        let _ = s.flush().await;
                    }
                    None => {}
                }
                drop(s);
            });
        }
    });
    addr
}

pub enum Bad {
    Bytes(Vec<u8>),
    Partial(Vec<u8>),
    Slow(std::time::Duration),
}

fn answer(status: &str, content_type: Option<&str>, body: &[u8]) -> Bad {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        out.push_str(&format!("content-type: {ct}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    Bad::Bytes(bytes)
}

/// The canned answers of [`misbehaving_upstream`], by path.
pub fn bad_answer(path: &str) -> Option<Bad> {
    Some(match path {
        "/ok" => answer("200 OK", Some("text/plain"), b"ok"),
        "/html" => answer(
            "503 Service Unavailable",
            Some("text/html"),
            b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><h1>down</h1></body></html>",
        ),
        "/text" => answer("500 Internal Server Error", Some("text/plain"), b"database is on fire\n"),
        "/empty" => answer("404 Not Found", None, b""),
        "/error-json" => answer("400 Bad Request", Some("application/json"), br#"{"error": "quantity must be positive"}"#),
        "/error-object" => answer("422 Unprocessable Entity", Some("application/json"), br#"{"error": {"message": "nested message"}}"#),
        "/message-json" => answer("409 Conflict", Some("application/json"), br#"{"message": "plain message"}"#),
        "/invalid-json" => answer("500 Internal Server Error", Some("application/json"), b"{\"broken\": "),
        "/shaped" => answer(
            "400 Bad Request",
            Some("application/json; charset=UTF-8"),
            br#"{"computeFault": {"message": "Account has not been set", "code": 400, "details": ""}}"#,
        ),
        "/shaped-guid" => answer(
            "409 Conflict",
            Some("application/json"),
            br#"{"conflict": {"guid": "bfb2988f-d745-4b2a-9eff-f2deed3451db", "message": "A domain in the order contains a restricted word", "code": 409, "details": ""}}"#,
        ),
        "/huge" => answer("500 Internal Server Error", Some("text/plain"), &vec![b'z'; 1 << 20]),
        "/reset-before-headers" => return None,
        "/reset-mid-headers" => Bad::Partial(b"HTTP/1.1 200 OK\r\ncontent-ty".to_vec()),
        "/reset-mid-error-body" => {
            Bad::Partial(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100\r\n\r\nonly part".to_vec())
        }
        "/reset-mid-body" => Bad::Partial(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part".to_vec()),
        "/invalid-http" => Bad::Bytes(b"SMTP READY\r\n\r\n".to_vec()),
        "/slow" => Bad::Slow(std::time::Duration::from_secs(3)),
        _ => answer("200 OK", Some("text/plain"), b"other"),
    })
}

/// A rustls client config trusting only `root`, offering `alpn`.
pub fn tls_client_config(
    root: rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    std::sync::Arc::new(config)
}
