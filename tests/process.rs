#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real binary: start-up, bad configuration, and `kill -9` restarts
//! that keep the owner associations (redb store), one at rest and every one
//! acknowledged while implicit creations race; certificate files named
//! relative to the config file, from another working directory.

mod support;

use http::Method;
use std::process::Command;
use std::time::Duration;
use support::process::*;
use support::*;

fn write_config(dir: &std::path::Path, upstream: std::net::SocketAddr) -> std::path::PathBuf {
    let path = dir.join("ordergate.toml");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_base_url = "https://api.example.com"
[upstream]
url = "http://{upstream}"
rewrite_bases = ["{INTERNAL}"]
[store]
kind = "redb"
path = "{}"
"#,
        dir.join("store/owners.redb").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn associations_survive_kill_9_and_restart() {
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), backend.addr);

    let (mut first, addr) = start(&config);
    let client = HttpClient::new(format!("http://{addr}"));
    let (_, owner) = client.create_implicitly(&[("authorization", AUTH)]).await;
    let c = cookie(&owner);
    let before = client.get("/order", &[("cookie", &c)]).await;
    assert_eq!(before.status, 200);
    let alternate = before.json()["links"][1]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        alternate.starts_with("https://api.example.com/orders/"),
        "{alternate}"
    );

    first.kill().unwrap(); // SIGKILL: no chance to flush anything
    first.wait().unwrap();

    let (mut second, addr) = start(&config);
    let client = HttpClient::new(format!("http://{addr}"));
    let after = client.get("/order", &[("cookie", &c)]).await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(after.json()["links"][1]["href"], alternate.as_str());
    assert_eq!(
        client
            .send(Method::POST, "/orders", &[("cookie", &c)], "")
            .await
            .status,
        409
    );
    assert_eq!(backend.state.count(&Method::POST, "/orders"), 1);
    second.kill().unwrap();
    second.wait().unwrap();
}

fn check_refused(config_text: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(key), "`{key}` not named in: {stderr}");
}

#[test]
fn a_bad_config_stops_the_start_naming_the_key() {
    let good = "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n";
    check_refused(
        &good.replace("[upstream]", "colour = 1\n[upstream]"),
        "server.colour",
    );
    check_refused(
        &good.replace("http://127.0.0.1:1", "127.0.0.1:1"),
        "upstream.url",
    );
    check_refused(
        &format!("{good}[store]\nkind = \"cassandra\"\n"),
        "store.kind",
    );
    check_refused(
        &good.replace("listen = \"127.0.0.1:0\"\n", ""),
        "server.listen",
    );
    check_refused("this is not toml", "invalid TOML");
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/ordergate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn every_shipped_config_file_is_valid() {
    // config/bench.toml reads the certificate the load harness writes before
    // a run; a generated one stands in for it here, in a folder of its own.
    const BENCH_TLS_DIR: &str = "/tmp/ordergate-bench-tls/";
    let tmp = tempfile::tempdir().unwrap();
    write_certificate(tmp.path());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let loaded = if text.contains(BENCH_TLS_DIR) {
            let copy = tmp.path().join(path.file_name().unwrap());
            let tls = format!("{}/", tmp.path().join("tls").display());
            std::fs::write(&copy, text.replace(BENCH_TLS_DIR, &tls)).unwrap();
            ordergate::config::Config::load(&copy)
        } else {
            ordergate::config::Config::load(&path)
        };
        loaded.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 4);
}

fn write_memory_config(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
) -> std::path::PathBuf {
    let path = dir.join("ordergate.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://127.0.0.1\"\ndrain_timeout_secs = 20\n[upstream]\nurl = \"http://{upstream}\"\nrewrite_bases = [\"{INTERNAL}\"]\n[store]\nkind = \"memory\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_0() {
    let upstream = misbehaving_upstream().await; // GET /slow answers after 3 s
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(&write_memory_config(dir.path(), upstream));
    let client = HttpClient::new(format!("http://{addr}"));
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get("/slow", &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "ok");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test]
async fn the_access_log_has_the_fields_and_no_credentials() {
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_memory_config(dir.path(), backend.addr);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[log]\nformat = \"json\"\naccess_log = true\n");
    text.push_str("[[rate_limits.rules]]\nname = \"one-an-hour\"\npaths = [\"/limited\"]\nkey = \"client_ip\"\nrate = 1\nper_secs = \"1h\"\n");
    std::fs::write(&path, text).unwrap();
    let (mut child, addr, lines) = start_logged(&path);
    let client = HttpClient::new(format!("http://{addr}"));
    let owner = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    let secret_auth = "Basic c2VjcmV0dXNlcjpzZWNyZXRwYXNz";
    let put = client
        .send(
            Method::PUT,
            "/order/account?token=query-secret",
            &[
                ("authorization", secret_auth),
                ("cookie", &cookie(owner)),
                ("user-agent", "shop-frontend/2.1"),
            ],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
    assert_ne!(client.get("/limited", &[]).await.status, 429);
    assert_eq!(client.get("/limited", &[]).await.status, 429);
    assert_eq!(
        client
            .get("/order", &[("cookie", "OwnerId=nonsense-cookie-value")])
            .await
            .status,
        401
    );
    // Give the logger a moment to flush, then stop the process.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let lines: Vec<String> = lines.try_iter().collect();
    let access: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "ordergate::access")
        .collect();
    assert_eq!(access.len(), 4, "{lines:#?}");
    let put_line = &access[0];
    assert_eq!(put_line["client_ip"], "127.0.0.1");
    assert_eq!(put_line["user_agent"], "shop-frontend/2.1");
    assert_eq!(put_line["bytes_in"], 2);
    // The rewritten answer streams without a length: no byte count.
    assert!(put_line.get("bytes_out").is_none(), "{put_line}");
    assert_eq!(put_line["upstream_status"], 200);
    assert!(put_line.get("rate_limit_rule").is_none(), "{put_line}");
    let limited = &access[2];
    assert_eq!(limited["status"], 429);
    assert_eq!(limited["rate_limit_rule"], "one-an-hour");
    assert!(limited["bytes_out"].as_u64().unwrap() > 50, "{limited}");
    assert_eq!(limited["bytes_in"], 0);
    assert!(limited.get("upstream_status").is_none(), "{limited}");
    assert!(access[1].get("rate_limit_rule").is_none());
    assert_eq!(put_line["method"], "PUT");
    assert_eq!(put_line["path"], "/order/account");
    assert_eq!(put_line["status"], 200);
    assert_eq!(put_line["shorthand"], true);
    assert_eq!(put_line["implicit"], true);
    assert!(put_line["latency_us"].as_u64().unwrap() >= put_line["upstream_us"].as_u64().unwrap());
    assert!(put_line["upstream_us"].as_u64().unwrap() > 0);
    assert_eq!(put_line["owner"].as_str().unwrap().len(), 16);
    assert_eq!(put_line["request_id"], put.header("x-request-id").unwrap());
    assert_eq!(access[3]["status"], 401);
    let all = lines.join("\n");
    for secret in [
        owner,
        "c2VjcmV0dXNlcjpzZWNyZXRwYXNz",
        "secretuser",
        "query-secret",
        "nonsense-cookie-value",
    ] {
        assert!(
            !all.contains(secret),
            "`{secret}` leaked into the log:\n{all}"
        );
    }
}

#[tokio::test]
async fn sighup_applies_a_new_rate_limit_and_keeps_the_old_config_when_the_new_is_broken() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_memory_config(dir.path(), upstream);
    let base = std::fs::read_to_string(&path).unwrap();
    let with_rate = |rate: &str| {
        format!(
            "{base}[[rate_limits.rules]]\nname = \"reads\"\npaths = [\"/status\"]\nkey = \"client_ip\"\nrate = {rate}\nper_secs = 3600\n"
        )
    };
    std::fs::write(&path, with_rate("1000")).unwrap();
    let (child, addr, lines) = start_logged(&path);
    let client = HttpClient::new(format!("http://{addr}"));
    for _ in 0..3 {
        let r = client.get("/status", &[]).await;
        assert_eq!(r.status, 200);
        assert!(r.header("ratelimit-policy").unwrap().contains("q=1000"));
    }

    // A tighter limit: applied on SIGHUP, without a restart.
    std::fs::write(&path, with_rate("1")).unwrap();
    hangup(&child);
    wait_for_line(&lines, "configuration reloaded");
    let first = client.get("/status", &[]).await;
    assert_eq!(first.status, 200);
    assert!(first.header("ratelimit-policy").unwrap().contains("q=1;"));
    assert_eq!(client.get("/status", &[]).await.status, 429);

    // A broken file: refused, with the problem in the log; the tight limit
    // stays in force and the gateway keeps serving.
    std::fs::write(&path, with_rate("\"plenty\"")).unwrap();
    hangup(&child);
    let refused = wait_for_line(&lines, "reload refused");
    assert!(refused.contains("rate_limits.rules[0].rate"), "{refused}");
    let still = client.get("/status", &[]).await;
    assert_eq!(still.status, 429);
    assert!(still.header("ratelimit-policy").unwrap().contains("q=1;"));
    assert_eq!(client.get("/other", &[]).await.status, 200);
}

#[test]
fn check_prints_a_summary_for_a_good_file() {
    let (ok, out) = check(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\n[[server.listeners]]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\nkind = \"memory\"\n",
    );
    assert!(ok, "{out}");
    assert_eq!(
        out,
        "FILE: ok: 2 listener(s) (0 TLS), upstream http://127.0.0.1:1, store memory, 0 rate-limit rule(s), admin 127.0.0.1:0, workers shared\n"
    );
}

#[test]
fn check_reports_every_problem_with_its_key() {
    let (ok, out) = check(
        r#"
[server]
listen = "127.0.0.1:0"
public_base_url = "http://x"
colour = "blue"
tls = { cert_path = "/nonexistent/cert.pem", key_path = "/nonexistent/key.pem" }
[upstream]
url = "http://127.0.0.1:1"
ca_file = "/nonexistent/ca.pem"
connect_timeout_ms = 0
[store]
kind = "cassandra"
[[rate_limits.rules]]
name = "reads"
paths = ["/orders?page=2"]
key = "owner"
rate = 5
per_secs = 60
[[rate_limits.rules]]
name = "reads"
paths = ["/orders"]
key = "nobody"
rate = 5
per_secs = 60
shape = "round"
"#,
    );
    assert!(!ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    for key in [
        "server.colour: unknown field",
        "rate_limits.rules[1].shape: unknown field",
        "server.tls.cert_path: cannot read certificates from /nonexistent/cert.pem",
        "upstream.ca_file: only used with an https:// upstream.url",
        "upstream.connect_timeout_ms: must be greater than 0",
        "store.kind: unknown variant `cassandra`, expected one of `redb`, `memory`, `redis`",
        "rate_limits.rules[0].paths: `/orders?page=2` can never match",
        "rate_limits.rules[1].name: `reads` names another rule too",
        "rate_limits.rules[1].key: `nobody` is not",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("FILE: {key}"))),
            "`{key}` not in:\n{out}"
        );
    }
    assert_eq!(lines.len(), 10, "one line per problem and a count:\n{out}");
    assert_eq!(lines.last(), Some(&"FILE: 9 problem(s)"), "{out}");
}

/// The Redis password lives only in the environment: the gateway
/// authenticates with it and stores associations, `check` names the
/// variable but never prints the password, and without it Redis refuses.
#[tokio::test]
async fn a_redis_password_only_in_the_environment() {
    const SECRET: &str = "s3cret-only-in-env";
    let redis = support::redis_server::RedisServer::start_with_password(SECRET).await;
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordergate.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://127.0.0.1\"\n[upstream]\nurl = \"http://{}\"\nrewrite_bases = [\"{INTERNAL}\"]\n[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"envtest:\"\ncommand_timeout_ms = 300\nconnect_timeout_ms = 300\n",
        backend.addr,
        redis.url()
    );
    assert!(!text.contains(SECRET));
    std::fs::write(&path, text).unwrap();

    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .env("ORDERGATE_STORE__PASSWORD", SECRET)
        .env("ORDERGATE_UPSTREAM__CONNECT_TIMEOUT_MS", "1500ms")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("store.password: set by ORDERGATE_STORE__PASSWORD"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "upstream.connect_timeout_ms: set by ORDERGATE_UPSTREAM__CONNECT_TIMEOUT_MS = 1500ms"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains(SECRET), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));

    let put = |addr: String| async move {
        HttpClient::new(format!("http://{addr}"))
            .send(
                Method::PUT,
                "/order/account",
                &[("authorization", AUTH)],
                r#"{"currency":"USD"}"#,
            )
            .await
    };
    // Without the password Redis refuses the gateway: 503, nothing stored.
    let (without, addr, _) = start_with_env(&path, &[]);
    assert_eq!(put(addr).await.status, 503);
    drop(without);
    assert!(redis.keys().await.is_empty());

    let (with, addr, lines) = start_with_env(&path, &[("ORDERGATE_STORE__PASSWORD", SECRET)]);
    let answer = put(addr).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let keys = redis.keys().await;
    assert!(
        keys.iter().any(|k| k.starts_with("envtest:")),
        "no association stored: {keys:?}"
    );
    drop(with);
    let printed: Vec<String> = lines.try_iter().collect();
    assert!(
        printed
            .iter()
            .any(|l| l.contains("ORDERGATE_STORE__PASSWORD")),
        "{printed:?}"
    );
    assert!(!printed.iter().any(|l| l.contains(SECRET)));
}

/// Every line up to the first containing `text` (10 s at most).
fn lines_until(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => {
                seen.push(line);
                return seen;
            }
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no log line with `{text}` in {seen:#?}");
}

#[tokio::test]
async fn sighup_applies_the_log_format_and_level() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_memory_config(dir.path(), upstream);
    let base = std::fs::read_to_string(&path).unwrap();
    let with_log = |log: &str| format!("{base}[log]\n{log}\n");
    std::fs::write(&path, with_log("format = \"text\"")).unwrap();
    let (child, addr, lines) = start_logged(&path);
    let client = HttpClient::new(format!("http://{addr}"));

    assert_eq!(client.get("/a", &[]).await.status, 200);
    let text_line = wait_for_line(&lines, "ordergate::access");
    assert!(!text_line.starts_with('{'), "{text_line}");

    // JSON from the reload on: the reload's own line is JSON already.
    std::fs::write(&path, with_log("format = \"json\"")).unwrap();
    hangup(&child);
    let reloaded = wait_for_line(&lines, "configuration reloaded");
    let v: serde_json::Value = serde_json::from_str(&reloaded).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(client.get("/b", &[]).await.status, 200);
    let access = wait_for_line(&lines, "ordergate::access");
    let v: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(v["path"], "/b");

    // A level that turns the access log off, applied on SIGHUP.
    std::fs::write(
        &path,
        with_log("format = \"json\"\nlevel = \"info,ordergate::access=off\""),
    )
    .unwrap();
    hangup(&child);
    wait_for_line(&lines, "configuration reloaded");
    assert_eq!(client.get("/c", &[]).await.status, 200);
    // A broken file marks the point in the log after the request.
    std::fs::write(&path, with_log("level = \"ordergate=loud\"")).unwrap();
    hangup(&child);
    let seen = lines_until(&lines, "reload refused");
    assert!(seen.last().unwrap().contains("log.level"), "{seen:#?}");
    assert!(
        !seen.iter().any(|l| l.contains("ordergate::access")),
        "{seen:#?}"
    );
}

#[tokio::test]
async fn the_log_level_changes_on_the_admin_listener() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_memory_config(dir.path(), upstream);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&path, text).unwrap();
    let (_child, addr, lines) = start_logged(&path);
    let admin_line = wait_for_line(&lines, "admin endpoints are serving");
    let admin_addr = admin_line
        .split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let admin = HttpClient::new(format!("http://{admin_addr}"));
    let client = HttpClient::new(format!("http://{addr}"));
    assert_eq!(admin.get("/log/level", &[]).await.text(), "info\n");

    let warn = admin.send(Method::PUT, "/log/level", &[], "warn").await;
    assert_eq!(warn.status, 200);
    assert_eq!(warn.text(), "warn\n");
    assert_eq!(client.get("/quiet", &[]).await.status, 200);
    // Back to info: the change's own line marks the point after the request.
    let info = admin
        .send(Method::PUT, "/log/level", &[], "ordergate=info,warn")
        .await;
    assert_eq!(info.status, 200);
    let seen = lines_until(&lines, "log level changed");
    assert!(
        !seen.iter().any(|l| l.contains("ordergate::access")),
        "{seen:#?}"
    );
    assert_eq!(client.get("/loud", &[]).await.status, 200);
    let access = wait_for_line(&lines, "ordergate::access");
    assert!(access.contains("/loud"), "{access}");

    let bad = admin
        .send(Method::PUT, "/log/level", &[], "ordergate=loud")
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        admin.get("/log/level", &[]).await.text(),
        "ordergate=info,warn\n"
    );
}

#[test]
fn without_arguments_it_prints_help() {
    let out = Command::new(BIN).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(out.status.code(), Some(0 | 2)), "{:?}", out.status);
    assert!(text.contains("Usage: ordergate"), "{text}");
    assert!(text.contains("check"), "{text}");
    assert!(!text.contains("error"), "{text}");
}

#[test]
fn completions_and_the_manual_page() {
    let bash = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(script.contains("_ordergate()"), "{script}");
    assert!(script.contains("completions"));
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH ordergate 1"), "{page}");
    let help = Command::new(BIN)
        .args(["check", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--config <FILE>") && help.contains("The TOML configuration file"),
        "{help}"
    );
    let help = Command::new(BIN).args(["demo", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--config <FILE>") && help.contains("The gateway's TOML"),
        "{help}"
    );
}

/// A user error: one `error:` line on stderr, exit status 1 or 2, no
/// backtrace even when one is asked for.
fn user_error(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(1 | 2)), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("Caused by"));
    stderr
}

#[test]
fn user_errors_are_one_line_without_a_backtrace() {
    let bad_flag = user_error(&["--bogus"]);
    assert!(bad_flag.contains("--bogus"), "{bad_flag}");
    let missing = user_error(&["--config", "/nonexistent/gw.toml"]);
    assert!(missing.contains("/nonexistent/gw.toml"), "{missing}");
    assert!(missing.contains("cannot read"), "{missing}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = 5\n").unwrap();
    let bad = user_error(&["--config", path.to_str().unwrap()]);
    assert!(
        bad.contains("server.listen") && bad.contains("upstream"),
        "{bad}"
    );
    let health = user_error(&["health", "--url", "http://127.0.0.1:1/healthz"]);
    assert!(health.contains("127.0.0.1:1"), "{health}");
}

#[tokio::test]
async fn a_locked_store_file_is_named_once() {
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), backend.addr);
    let (_first, _) = start(&config);
    let second =
        tokio::task::spawn_blocking(move || user_error(&["--config", config.to_str().unwrap()]))
            .await
            .unwrap();
    let file = dir.path().join("store/owners.redb");
    assert!(second.contains(file.to_str().unwrap()), "{second}");
    assert!(second.contains("in use"), "{second}");
    assert_eq!(second.matches("owner store").count(), 1, "{second}");
}

#[test]
fn check_warns_of_another_store_kinds_keys_and_takes_units() {
    let (ok, out) = check(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\nmax_request_body_bytes = \"1MB\"\nidle_timeout_ms = \"2m\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\nkind = \"memory\"\npath = \"data/owners.redb\"\n",
    );
    assert!(ok, "{out}");
    assert!(
        out.starts_with(
            "FILE: warning: store.path: ignored: used with kind = \"redb\", not \"memory\"\n"
        ),
        "{out}"
    );
    assert!(out.contains("FILE: ok:"), "{out}");
}

/// One implicit creation over a fresh connection; the owner the answer's
/// Set-Cookie names when it was a 2xx, `Err` when the gateway could not be
/// reached or cut the exchange short (as when it is killed).
async fn create_implicitly(addr: &str, cookie: Option<&str>) -> Result<Option<String>, ()> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = http::Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{addr}/order/account"))
        .header("authorization", AUTH)
        .header("content-type", "application/json");
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"currency":"USD"}"#,
        )))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let (parts, body) = resp.into_parts();
    // The answer counts only once it has arrived whole.
    http_body_util::BodyExt::collect(body)
        .await
        .map_err(|_| ())?;
    if !parts.status.is_success() {
        return Ok(None);
    }
    Ok(parts.headers.get_all("set-cookie").iter().find_map(|v| {
        let v = v.to_str().ok()?;
        Some(v.strip_prefix("OwnerId=")?.split(';').next()?.to_owned())
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_association_survives_kill_9_under_concurrent_creations() {
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), backend.addr);
    let (mut first, addr) = start(&config);

    // Creations race on many connections, some with an OwnerId of the
    // client's own choosing, some with none; every owner a 2xx names is an
    // association the client was told about.
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..24 {
        let (addr, told) = (addr.clone(), std::sync::Arc::clone(&told));
        workers.spawn(async move {
            for _ in 0..200 {
                let own = (w % 2 == 0).then(|| cookie(&uuid::Uuid::new_v4().to_string()));
                match create_implicitly(&addr, own.as_deref()).await {
                    Ok(Some(owner)) => told.lock().unwrap().push(owner),
                    Ok(None) => {}
                    Err(()) => return,
                }
            }
        });
    }
    // Kill it mid-load: once some creations were acknowledged, while the
    // others are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while told.lock().unwrap().len() < 60 {
        assert!(std::time::Instant::now() < deadline, "no load got through");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    tokio::time::timeout(Duration::from_secs(30), workers.join_all())
        .await
        .expect("the workers stop once the gateway is gone");
    let told = told.lock().unwrap().clone();

    let (_second, addr) = start(&config);
    let client = HttpClient::new(format!("http://{addr}"));
    let mut lost = Vec::new();
    for owner in &told {
        let a = client.get("/order", &[("cookie", &cookie(owner))]).await;
        if a.status != 200 {
            lost.push(format!("{owner}: {}", a.status));
            continue;
        }
        // The same order: the one the backend made for this owner.
        let alternate = a.json()["links"][1]["href"].as_str().unwrap().to_owned();
        let order = backend.state.order(&order_id(&alternate)).unwrap();
        assert_eq!(&order.owner, owner, "{alternate}");
    }
    assert!(
        lost.is_empty(),
        "{} of {} lost: {lost:?}",
        lost.len(),
        told.len()
    );
    println!(
        "{} acknowledged associations, all found after kill -9; {} orders created in all",
        told.len(),
        backend.state.count(&Method::POST, "/orders")
    );
}

/// A certificate and its key for `localhost`, written to `dir/tls/`; its DER.
fn write_certificate(dir: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::write(dir.join("tls/cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("tls/key.pem"), ck.signing_key.serialize_pem()).unwrap();
    ck.cert.der().clone()
}

/// The certificate a new TLS client trusting `roots` (with no session to
/// resume) sees at `addr`, after a request over that connection was
/// answered 200.
async fn certificate_served(
    addr: &str,
    roots: &[&rustls::pki_types::CertificateDer<'static>],
) -> rustls::pki_types::CertificateDer<'static> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut trust = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    trust.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(trust))
        .connect(name, tcp)
        .await
        .unwrap();
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut h1, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/over-tls")
        .header("host", "localhost")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(h1.send_request(req).await.unwrap().status(), 200);
    cert
}

#[tokio::test]
async fn relative_certificate_paths_are_read_from_the_config_files_folder_at_start_and_on_sighup() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_certificate(dir.path());
    let path = dir.path().join("ordergate.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"https://localhost\"\ntls = {{ cert_path = \"tls/cert.pem\", key_path = \"tls/key.pem\" }}\n[upstream]\nurl = \"http://{upstream}\"\n[store]\nkind = \"memory\"\n"
        ),
    )
    .unwrap();
    // Started elsewhere: `tls/` does not exist in its working directory.
    let elsewhere = tempfile::tempdir().unwrap();
    let (child, listen, lines) = start_in(&path, elsewhere.path());
    let addr = listen.strip_prefix("https://").unwrap().to_owned();
    let second_dir = tempfile::tempdir().unwrap();
    let second = write_certificate(second_dir.path());
    let trust = [&first, &second];
    assert_eq!(certificate_served(&addr, &trust).await, first);

    // The rotated files, at the same relative paths: a SIGHUP reads them
    // from the config file's folder too.
    for f in ["tls/cert.pem", "tls/key.pem"] {
        std::fs::copy(second_dir.path().join(f), dir.path().join(f)).unwrap();
    }
    hangup(&child);
    wait_for_line(&lines, "configuration reloaded");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while certificate_served(&addr, &trust).await != second {
        assert!(
            std::time::Instant::now() < deadline,
            "new handshakes get the rotated certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
