#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Rate limits over real sockets, and the memory of a million keys.

mod support;

use http::Method;
use std::time::Duration;
use support::*;

const A: &str = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
const B: &str = "73adb746-2443-4cc8-879e-886348385b9a";

fn rule(
    name: &str,
    methods: &str,
    paths: &str,
    key: &str,
    rate: u32,
    per: u64,
    burst: u32,
) -> String {
    format!(
        "[[rate_limits.rules]]\nname = \"{name}\"\nmethods = [{methods}]\npaths = [{paths}]\nkey = \"{key}\"\nrate = {rate}\nper_secs = {per}\nburst = {burst}\n"
    )
}

#[tokio::test]
async fn owners_are_limited_apart_and_429_carries_the_headers() {
    let up = echo_upstream().await;
    let (_gw, client) = gateway_before(
        up,
        &rule("reads", "\"GET\"", "\"/things/*\"", "owner", 1, 60, 2),
    )
    .await;
    let get = |owner: &'static str| {
        let client = client.clone();
        async move { client.get("/things/1", &[("cookie", &cookie(owner))]).await }
    };
    let first = get(A).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-policy"), Some("\"reads\";q=1;w=60"));
    assert!(
        first
            .header("ratelimit")
            .unwrap()
            .starts_with("\"reads\";r=1;t="),
        "{first:?}"
    );
    assert_eq!(get(A).await.status, 200);
    let over = get(A).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.fault().0, "overLimit");
    let retry: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(over.header("ratelimit-policy"), Some("\"reads\";q=1;w=60"));
    assert!(
        over.header("ratelimit")
            .unwrap()
            .starts_with("\"reads\";r=0;t=")
    );
    // Another owner has its own bucket; unmatched routes are not limited.
    assert_eq!(get(B).await.status, 200);
    let other = client
        .send(Method::POST, "/things/1", &[("cookie", &cookie(A))], "")
        .await;
    assert_eq!(other.status, 200);
    assert!(other.header("ratelimit").is_none());
}

#[tokio::test]
async fn client_addresses_are_limited_apart_behind_a_trusted_proxy() {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        up,
        &format!(
            "[store]\nkind = \"memory\"\n{}",
            rule("ip", "", "\"*\"", "client_ip", 1, 60, 1)
        ),
    )
    .replace("[server]", "[server]\ntrusted_proxies = [\"127.0.0.1\"]");
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    let from = |ip: &'static str| {
        let client = client.clone();
        async move { client.get("/x", &[("x-forwarded-for", ip)]).await.status }
    };
    assert_eq!(from("203.0.113.1").await, 200);
    assert_eq!(from("203.0.113.1").await, 429);
    assert_eq!(from("203.0.113.2").await, 200);
    // A malformed forwarded address counts against the proxy's own address.
    assert_eq!(from("not-an-ip").await, 200);
    assert_eq!(from("999.1.1.1").await, 429);
}

#[tokio::test]
async fn creation_can_be_stricter_than_reads_and_malformed_keys_are_still_limited() {
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let rules = format!(
        "{}{}",
        rule(
            "create",
            "\"POST\", \"PUT\"",
            "\"/orders\", \"/order/*\"",
            "owner",
            1,
            60,
            1
        ),
        rule("reads", "\"GET\"", "\"/order/*\"", "owner", 100, 1, 100)
    );
    let (_gw, client) = gateway_before(backend.addr, &rules).await;
    let put = client
        .send(
            Method::PUT,
            "/order/account",
            &[("cookie", &cookie(A))],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200);
    for _ in 0..5 {
        assert_eq!(
            client.get("/order", &[("cookie", &cookie(A))]).await.status,
            200
        );
    }
    let again = client
        .send(
            Method::POST,
            "/order/product",
            &[("cookie", &cookie(A))],
            "{}",
        )
        .await;
    assert_eq!(again.status, 429);
    // No cookie, or a garbage one: keyed by the client's address, still limited.
    let first = client.send(Method::POST, "/orders", &[], "").await;
    assert_eq!(first.status, 202);
    assert_eq!(
        client
            .send(
                Method::POST,
                "/orders",
                &[("cookie", "OwnerId=garbage")],
                ""
            )
            .await
            .status,
        429
    );
    assert_eq!(backend.state.count(&Method::POST, "/orders"), 2);
}

#[tokio::test]
async fn a_concurrent_burst_lets_exactly_the_quota_through() {
    let up = echo_upstream().await;
    let (_gw, client) =
        gateway_before(up, &rule("burst", "", "\"*\"", "client_ip", 1, 3600, 7)).await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get("/x", &[]).await.status.as_u16() })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    assert_eq!(ok, 7);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A million distinct keys against a rule capped at 100,000: the key count
/// stays at the cap and the memory with it. Prints the resident set before
/// and after (`cargo test --test rate_limits million -- --nocapture`).
#[test]
fn a_million_distinct_keys_stay_bounded() {
    use ordergate::config::{KeyKind, PathPattern, RuleSpec, Scope};
    use ordergate::guards::rate_limit::{RateLimits, Subject};
    use std::num::NonZeroU32;
    let spec = RuleSpec {
        name: "ip".into(),
        methods: vec![],
        paths: vec![PathPattern::Any],
        key: KeyKind::Header(http::HeaderName::from_static("x-key")),
        rate: NonZeroU32::new(10).unwrap(),
        per: Duration::from_secs(60),
        burst: NonZeroU32::new(10).unwrap(),
        max_keys: 100_000,
        scope: Scope::Local,
    };
    let limits = RateLimits::new(vec![spec]);
    let before = rss_kib();
    let mut headers = http::HeaderMap::new();
    for i in 0..1_000_000u32 {
        headers.insert("x-key", http::HeaderValue::from(i));
        let subject = Subject {
            method: &Method::GET,
            path: "/x",
            headers: &headers,
            owner: None,
            client_ip: None,
        };
        limits.check(&subject).unwrap();
    }
    let after = rss_kib();
    println!(
        "rate-limit keys: 1,000,000 pushed, {} held; VmRSS {before} KiB -> {after} KiB (+{} KiB)",
        limits.keys(),
        after.saturating_sub(before)
    );
    assert!(limits.keys() <= 100_001, "{} keys held", limits.keys());
}
