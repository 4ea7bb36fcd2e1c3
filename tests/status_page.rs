#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The status page of the admin listener: the page itself, the figures of
//! `/status.json` moving with the traffic, the configuration summary without
//! secrets, and the admin token on every admin route. (Chromium reading the
//! page's figures: tests/browser.rs.)

mod support;

use base64::Engine;
use http::Method;
use ordergate::config::Config;
use support::*;

const TOKEN: &str = "s3cret-admin-token-0123";

#[tokio::test]
async fn status_json_follows_the_traffic() {
    let AdminEnv {
        backend,
        gateway: gw,
        client,
        admin,
    } = admin_env(&once_an_hour("status-reads", "/status")).await;
    let before = admin.get("/status.json", &[]).await;
    assert_eq!(before.status, 200);
    assert_eq!(before.header("content-type"), Some("application/json"));
    let before = before.json();
    assert_eq!(before["version"], env!("CARGO_PKG_VERSION"));
    assert!(before["uptime_secs"].as_f64().unwrap() >= 0.0);
    assert_eq!(before["requests_total"], 0);
    assert_eq!(
        before["latency_ms"]["gateway"]["p50"],
        serde_json::Value::Null
    );

    // An implicit creation, a 409, a read and a 429.
    let (_, owner) = client
        .create_implicitly(&[("content-type", "application/json")])
        .await;
    let owner = cookie(&owner);
    let again = client
        .send(Method::POST, "/orders", &[("cookie", &owner)], "")
        .await;
    assert_eq!(again.status, 409);
    let first = client.get("/status", &[]).await.status;
    assert_ne!(first, 429);
    assert_eq!(client.get("/status", &[]).await.status, 429);

    let s = admin.get("/status.json", &[]).await.json();
    assert_eq!(s["requests_total"], 4, "{s}");
    assert_eq!(s["requests"]["shorthand"]["total"], 1);
    assert_eq!(s["requests"]["orders"]["client_errors"], 1);
    assert_eq!(s["requests"]["other"]["total"], 2);
    assert_eq!(
        s["requests"]["other"]["client_errors"],
        1 + u64::from(first.is_client_error())
    );
    assert_eq!(s["requests"]["other"]["server_errors"], 0);
    assert_eq!(s["rate_limited"]["status-reads"], 1);
    assert_eq!(s["orders"]["implicit_creations"], 1);
    assert_eq!(s["orders"]["conflicts"], 1);
    assert_eq!(s["orders"]["open"], 1);
    let gateway = &s["latency_ms"]["gateway"];
    assert_eq!(gateway["count"], 4);
    let (p50, p99) = (
        gateway["p50"].as_f64().unwrap(),
        gateway["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{gateway}");
    let buckets: u64 = gateway["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[1].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 4);
    assert!(s["latency_ms"]["upstream"]["count"].as_u64().unwrap() >= 2);
    // The plain upstream's pool keeps the connection it used.
    assert!(s["upstream"]["connections"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(s["upstream"]["errors"]["connect"], 0);
    assert_eq!(s["store"]["kind"], "memory");
    assert_eq!(s["store"]["healthy"], true);
    assert_eq!(s["redis"], serde_json::Value::Null);
    assert_eq!(
        s["config"]["upstream"]["url"],
        format!("http://{}", backend.addr)
    );
    assert_eq!(s["config"]["rate_limits"][0]["name"], "status-reads");
    assert!(s["uptime_secs"].as_f64().unwrap() >= before["uptime_secs"].as_f64().unwrap());
    gw.stop().await;
}

#[tokio::test]
async fn the_page_is_self_contained() {
    let AdminEnv {
        backend: _backend,
        gateway: _gw,
        client: _client,
        admin,
    } = admin_env("").await;
    let page = admin.get("/", &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = page.text();
    assert!(html.contains("id=\"requests-total\""));
    assert!(html.contains("fetch(\"status.json\""));
    // Nothing loaded from elsewhere.
    for outside in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "@import",
        "url(http",
    ] {
        assert!(!html.contains(outside), "{outside}");
    }
}

#[test]
fn the_configuration_summary_has_no_secrets() {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://gw.example\"\n[upstream]\nurl = \"http://svc:upstream-pass@10.0.0.1:8092\"\n[store]\nkind = \"redis\"\nurl = \"redis://ops:redis-pass@127.0.0.1:6379/0\"\nkey_prefix = \"og:\"\n[admin]\nlisten = \"127.0.0.1:9901\"\ntoken = \"{TOKEN}\"\n"
    );
    let config = Config::parse(&text).unwrap();
    let summary = ordergate::telemetry::status::summary(&config);
    let shown = summary.to_string();
    for secret in ["redis-pass", "upstream-pass", TOKEN, "redis://"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert_eq!(summary["upstream"]["url"], "http://10.0.0.1:8092");
    assert_eq!(summary["store"]["kind"], "redis");
    assert_eq!(summary["store"]["key_prefix"], "og:");
    assert_eq!(summary["admin"]["token"], "set");
    assert!(!format!("{config:?}").contains(TOKEN));
}

#[tokio::test]
async fn the_admin_token_guards_every_admin_route() {
    let admin_table = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n");
    let AdminEnv {
        backend,
        gateway: gw,
        client: _client,
        admin,
    } = admin_env(&admin_table).await;
    let bearer = format!("Bearer {TOKEN}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{TOKEN}"))
    );
    let wrong = format!("Bearer {TOKEN}x");
    for path in ["/", "/status.json", "/metrics", "/healthz", "/readyz"] {
        let none = admin.get(path, &[]).await;
        assert_eq!(none.status, 401, "{path}");
        let challenges: Vec<_> = none
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            challenges,
            [
                "Bearer realm=\"ordergate admin\"",
                "Basic realm=\"ordergate admin\""
            ]
        );
        assert!(!none.text().contains("ordergate_"), "{path}");
        assert_eq!(
            admin.get(path, &[("authorization", &wrong)]).await.status,
            401
        );
        assert_eq!(
            admin.get(path, &[("authorization", &bearer)]).await.status,
            200,
            "{path}"
        );
        assert_eq!(
            admin.get(path, &[("authorization", &basic)]).await.status,
            200,
            "{path}"
        );
    }
    // A token too short to be one is refused.
    let short = Config::parse(&config_text(
        "127.0.0.1:0".parse().unwrap(),
        backend.addr,
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"short\"\n",
    ))
    .unwrap_err();
    assert_eq!(short.key, "admin.token");

    // A reload without it opens the admin routes again.
    let text = config_text(gw.addr, backend.addr, "[store]\nkind = \"memory\"\n");
    gw.reload.send(Config::parse(&text).unwrap()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while admin.get("/healthz", &[]).await.status == 401 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(admin.get("/healthz", &[]).await.status, 200);
}
