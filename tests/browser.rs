#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A real browser: headless Chromium loads a page from one 127.0.0.1 origin
//! that calls the gateway on another port with `credentials: "include"`,
//! walks implicit creation and `GET /order`, and posts what it saw back to
//! the page's server. And Chromium shows the admin status page while traffic
//! goes through the gateway: the test reads the page's figures from its DOM
//! over the DevTools protocol.

mod support;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;

const CHROMIUM: &str = "/usr/bin/chromium";

const PAGE: &str = r#"<!doctype html><html><body><script>
const gw = "GATEWAY";
async function walk() {
  const out = {};
  try {
    const put = await fetch(gw + "/order/account", {
      method: "PUT", credentials: "include",
      headers: {"Content-Type": "application/json; charset=UTF-8"},
      body: JSON.stringify({currency: "USD", language: "en-US"}),
    });
    out.put = put.status;
    out.putRequestId = put.headers.get("x-request-id");
    const get = await fetch(gw + "/order", {credentials: "include"});
    out.get = get.status;
    out.order = await get.json();
    const again = await fetch(gw + "/orders", {method: "POST", credentials: "include"});
    out.second = again.status;
    out.fault = await again.json();
  } catch (e) {
    out.error = String(e);
  }
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
}
walk();
</script></body></html>"#;

/// Serves the page and receives its result.
async fn page_server(gateway: String) -> (std::net::SocketAddr, mpsc::Receiver<String>) {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(1);
    let page = PAGE.replace("GATEWAY", &gateway);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let (tx, page) = (tx.clone(), page.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (tx, page) = (tx.clone(), page.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let resp = if parts.method == Method::POST && parts.uri.path() == "/result"
                        {
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned()).await;
                            Response::new(Full::new(Bytes::new()))
                        } else if parts.uri.path() == "/" {
                            let mut r = Response::new(Full::new(Bytes::from(page)));
                            r.headers_mut()
                                .insert("content-type", "text/html".parse().unwrap());
                            r
                        } else {
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = http::StatusCode::NOT_FOUND;
                            r
                        };
                        Ok::<_, std::convert::Infallible>(resp)
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

/// Checks that Chromium is there, and starts the emulated backend.
async fn chromium_and_backend() -> ordergate::backend::Backend {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "Chromium is needed: apt-get install chromium (.ci/run does)"
    );
    ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap()
}

#[tokio::test]
async fn a_browser_page_on_another_origin_walks_the_shorthand_with_cookies() {
    let backend = chromium_and_backend().await;
    // The page's origin is known only once its server is bound: bind first.
    let gl = listener().await;
    let gateway = format!("http://{}", gl.local_addr().unwrap());
    let (page, mut results) = page_server(gateway.clone()).await;
    let text = config_text(
        gl.local_addr().unwrap(),
        backend.addr,
        &format!("[store]\nkind = \"memory\"\n[cors]\nallowed_origins = [\"http://{page}\"]\n"),
    );
    let _gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;

    let profile = tempfile::tempdir().unwrap();
    let mut chromium = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("http://{page}/"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), results.recv()).await;
    let _ = chromium.kill();
    let _ = chromium.wait();
    let result = result.expect("the page reported in time").unwrap();
    let v: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["put"], 200, "{v}");
    assert_eq!(
        v["putRequestId"].as_str().map(str::len),
        Some(36),
        "x-request-id exposed: {v}"
    );
    assert_eq!(v["get"], 200, "{v}");
    let links = v["order"]["links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l["rel"] == "alternate"
            && l["href"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{gateway}/orders/"))),
        "{v}"
    );
    // The cookie went with the explicit POST too: the one-open-order rule held.
    assert_eq!(v["second"], 409, "{v}");
    assert_eq!(v["fault"]["conflict"]["code"], 409);
    assert_eq!(backend.state.count(&Method::POST, "/orders"), 1);
}

/// Chromium with the DevTools protocol on, showing `url`.
struct Browser {
    process: std::process::Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let process = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                url,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<u16>().ok()))
            {
                break port;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "DevTools never started"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let devtools = HttpClient::new(format!("http://127.0.0.1:{port}"));
        let ws_url = loop {
            let targets = devtools.get("/json/list", &[]).await.json();
            let page = targets.as_array().unwrap().iter().find(|t| {
                t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
            });
            if let Some(page) = page {
                break page["webSocketDebuggerUrl"].as_str().unwrap().to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no page: {targets}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .unwrap();
        Self {
            process,
            _profile: profile,
            ws,
            next_id: 0,
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> serde_json::Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next_id += 1;
        let id = self.next_id;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": true},
        });
        self.ws.send(Message::text(call.to_string())).await.unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("DevTools answered in time")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = msg {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    return v["result"]["result"]["value"].clone();
                }
            }
        }
    }

    /// The number shown in the element `id` ("1,234" reads 1234), if any.
    async fn figure(&mut self, id: &str) -> Option<f64> {
        let text = self
            .eval(&format!("document.getElementById('{id}').textContent"))
            .await;
        text.as_str()?.replace(',', "").parse().ok()
    }

    /// Polls the figure `id` until `ok` holds of it, for at most 30 s.
    async fn wait_for(&mut self, id: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self.figure(id).await;
            if let Some(v) = seen.filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "#{id} stayed at {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn the_status_page_shows_the_traffic_as_it_goes() {
    let backend = chromium_and_backend().await;
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        backend.addr,
        "[store]\nkind = \"memory\"\n",
    );
    let (gw, admin) =
        Gateway::start_with_admin(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());

    let mut page = Browser::open(&format!("{}/", admin.base())).await;
    let start = page.wait_for("requests-total", |_| true).await;
    assert_eq!(start, 0.0);
    assert_eq!(
        page.eval("document.getElementById('store').textContent")
            .await,
        "healthy"
    );

    // Traffic while the page watches: the figures move.
    client
        .create_implicitly(&[("content-type", "application/json")])
        .await;
    for _ in 0..19 {
        client.get("/orders/none", &[]).await;
    }
    let seen = page.wait_for("requests-total", |n| n >= 20.0).await;
    assert_eq!(seen, 20.0);
    page.wait_for("implicit-creations", |n| n == 1.0).await;
    page.wait_for("open-orders", |n| n == 1.0).await;
    // Rates come from two readings a second apart.
    page.wait_for("rps", |n| n >= 0.0).await;
    for _ in 0..10 {
        client.get("/orders/none", &[]).await;
    }
    page.wait_for("requests-total", |n| n == 30.0).await;
    let config = page
        .eval("document.getElementById('config').textContent")
        .await;
    assert!(
        config
            .as_str()
            .unwrap()
            .contains(&format!("http://{}", backend.addr)),
        "{config}"
    );
    let error = page
        .eval("document.getElementById('error').textContent")
        .await;
    assert_eq!(error, "");
    drop(page);
    gw.stop().await;
}
