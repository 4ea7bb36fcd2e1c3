#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A real browser: headless Chromium loads a page from one 127.0.0.1 origin
//! that calls the gateway on another port with `credentials: "include"`,
//! walks implicit creation and `GET /order`, and posts what it saw back to
//! the page's server.

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

#[tokio::test]
async fn a_browser_page_on_another_origin_walks_the_shorthand_with_cookies() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "Chromium is needed: apt-get install chromium (.ci/run does)"
    );
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
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
