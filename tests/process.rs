#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real binary: start-up, bad configuration, and a `kill -9` restart
//! that keeps the owner associations (redb store).

mod support;

use http::Method;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ordergate");

/// Starts the binary and waits for its "serving" line; returns the child and
/// the address it listens on.
fn start(config: &std::path::Path) -> (Running, String) {
    let (child, addr, _lines) = start_logged(config);
    (child, addr)
}

/// Like [`start`], and hands over every line the binary prints.
fn start_logged(config: &std::path::Path) -> (Running, String, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ordergate is serving") {
                let listen = line.split("listen").nth(1).map(|r| {
                    r.trim_start_matches(['=', '"', ':'])
                        .split(['"', ' ', ','])
                        .next()
                        .unwrap_or("")
                        .to_owned()
                });
                let _ = tx.send(listen.unwrap_or_default());
            }
            let _ = lines_tx.send(line);
        }
    });
    let child = Running(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the gateway started");
    (child, addr, lines)
}

/// A gateway process that is killed when the test ends, passed or not.
struct Running(Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            ordergate::config::Config::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
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
    std::fs::write(&path, text).unwrap();
    let (mut child, addr, lines) = start_logged(&path);
    let client = HttpClient::new(format!("http://{addr}"));
    let owner = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    let secret_auth = "Basic c2VjcmV0dXNlcjpzZWNyZXRwYXNz";
    let put = client
        .send(
            Method::PUT,
            "/order/account?token=query-secret",
            &[("authorization", secret_auth), ("cookie", &cookie(owner))],
            "{}",
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text());
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
    assert_eq!(access.len(), 2, "{lines:#?}");
    let put_line = &access[0];
    assert_eq!(put_line["method"], "PUT");
    assert_eq!(put_line["path"], "/order/account");
    assert_eq!(put_line["status"], 200);
    assert_eq!(put_line["shorthand"], true);
    assert_eq!(put_line["implicit"], true);
    assert!(put_line["latency_us"].as_u64().unwrap() >= put_line["upstream_us"].as_u64().unwrap());
    assert!(put_line["upstream_us"].as_u64().unwrap() > 0);
    assert_eq!(put_line["owner"].as_str().unwrap().len(), 16);
    assert_eq!(put_line["request_id"], put.header("x-request-id").unwrap());
    assert_eq!(access[1]["status"], 401);
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

/// Waits up to 10 s for a log line containing `text`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, text: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return line,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line with `{text}`");
}

fn hangup(child: &Running) {
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
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

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checked.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).replace(path.to_str().unwrap(), "FILE");
    (out.status.success(), stdout)
}

#[test]
fn check_prints_a_summary_for_a_good_file() {
    let (ok, out) = check(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\n[[server.listeners]]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\nkind = \"memory\"\n",
    );
    assert!(ok, "{out}");
    assert_eq!(
        out,
        "FILE: ok: 2 listener(s) (0 TLS), upstream http://127.0.0.1:1, store memory, 0 rate-limit rule(s), admin 127.0.0.1:0\n"
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
        "store.kind: `cassandra` is not a store kind",
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
