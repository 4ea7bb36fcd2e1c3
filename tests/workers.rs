#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `server.worker_mode = "per_core"`: the real binary with two workers, each
//! on its own SO_REUSEPORT sockets, seen from outside: the kernel spreads
//! new connections over both, a reload reaches both, SIGTERM drains both,
//! and what the configuration and the start refuse.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::process::*;
use support::*;

/// A two-worker gateway in front of `upstream`, with an admin listener.
fn write_per_core_config(
    dir: &std::path::Path,
    upstream: std::net::SocketAddr,
) -> std::path::PathBuf {
    let path = dir.join("ordergate.toml");
    std::fs::write(&path, per_core_text(&format!("http://{upstream}"))).unwrap();
    path
}

fn per_core_text(upstream_url: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://127.0.0.1\"\nworker_mode = \"per_core\"\nworkers = 2\ndrain_timeout_secs = 20\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"{upstream_url}\"\n[store]\nkind = \"memory\"\n"
    )
}

/// `ordergate_worker_connections_total` of each worker, from `/metrics`.
async fn accepted_by_worker(admin: &HttpClient) -> Vec<u64> {
    let page = admin.get("/metrics", &[]).await.text();
    (0..2)
        .map(|w| {
            let prefix = format!("ordergate_worker_connections_total{{worker=\"{w}\"}} ");
            page.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map_or(0, |n| n.trim().parse().unwrap())
        })
        .collect()
}

/// `n` GETs of `path_of(i)`, each on a new connection (a new client, so
/// nothing is reused), 20 at a time; their answers in order.
async fn on_new_connections(
    addr: &str,
    n: usize,
    path_of: impl Fn(usize) -> String,
) -> Vec<(String, Answer)> {
    let mut answers = Vec::with_capacity(n);
    for start in (0..n).step_by(20) {
        let batch: Vec<_> = (start..(start + 20).min(n))
            .map(|i| {
                let path = path_of(i);
                let client = HttpClient::new(format!("http://{addr}"));
                tokio::spawn(async move {
                    let answer = client.get(&path, &[]).await;
                    (path, answer)
                })
            })
            .collect();
        for task in batch {
            answers.push(task.await.unwrap());
        }
    }
    answers
}

/// The threads of process `pid` whose name starts like a worker's (Linux
/// cuts thread names to 15 bytes), once there are `expected` of them or
/// after 2 s (a new thread names itself as it starts).
#[cfg(target_os = "linux")]
async fn worker_threads(pid: u32, expected: usize) -> usize {
    let count = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("ordergate-work"))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while count() != expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    count()
}

#[tokio::test]
async fn two_workers_each_take_new_connections_and_answer_them_right() {
    let upstream = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, lines) = start_logged(&write_per_core_config(dir.path(), upstream));
    let admin = HttpClient::new(format!("http://{}", admin_addr(&lines)));
    #[cfg(target_os = "linux")]
    assert_eq!(worker_threads(child.id(), 2).await, 2);

    let answers = on_new_connections(&addr, 200, |i| format!("/spread/{i}?n={i}")).await;
    for (path, answer) in &answers {
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        // The echo upstream names the request it got: this one's.
        assert_eq!(answer.json()["uri"], path.as_str(), "{answer:?}");
    }
    // SO_REUSEPORT picks a worker's socket by a hash of the connection's
    // 4-tuple; 200 connections from 200 client ports all landing on one of
    // two sockets has a chance of 2 in 2^200: both must have taken some.
    let accepted = accepted_by_worker(&admin).await;
    assert_eq!(accepted.iter().sum::<u64>(), 200, "{accepted:?}");
    assert!(accepted.iter().all(|n| *n > 0), "{accepted:?}");
    drop(child);
}

#[tokio::test]
async fn a_reload_reaches_every_worker_and_sigterm_drains_them_all() {
    // Before the reload, the echo upstream (JSON); after it, the other one,
    // whose `/ok` is the text `ok` and whose `/slow` takes 3 s.
    let before = echo_upstream().await;
    let after = misbehaving_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_per_core_config(dir.path(), before);
    let (mut child, addr, lines) = start_logged(&path);
    let admin = HttpClient::new(format!("http://{}", admin_addr(&lines)));
    for (_, answer) in on_new_connections(&addr, 20, |_| "/ok".to_owned()).await {
        assert_eq!(answer.json()["uri"], "/ok", "{answer:?}");
    }

    std::fs::write(&path, per_core_text(&format!("http://{after}"))).unwrap();
    hangup(&child);
    wait_for_line(&lines, "configuration reloaded");
    let accepted_before = accepted_by_worker(&admin).await;
    for (_, answer) in on_new_connections(&addr, 100, |_| "/ok".to_owned()).await {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.text(),
            "ok",
            "an answer from the old upstream: {answer:?}"
        );
    }
    // Every worker took some of those connections (see above), and each
    // answered from the new upstream: the reload reached both.
    let accepted_after = accepted_by_worker(&admin).await;
    for w in 0..2 {
        assert!(
            accepted_after[w] > accepted_before[w],
            "worker {w}: {accepted_before:?} then {accepted_after:?}"
        );
    }

    // Slow requests on several connections (most likely on both workers),
    // then SIGTERM: each finishes, and the process exits 0.
    let in_flight: Vec<_> = (0..6)
        .map(|_| {
            let client = HttpClient::new(format!("http://{addr}"));
            tokio::spawn(async move { client.get("/slow", &[]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(&child);
    for request in in_flight {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.text(), "ok");
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

/// An upstream that holds every request for 300 ms, then answers `ok` and
/// closes; and the most requests it held at once.
async fn holding_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::clone(&most);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (now, most) = (Arc::clone(&now), Arc::clone(&most));
            tokio::spawn(async move {
                if read_head(&mut s).await.is_none() {
                    return;
                }
                most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn the_upstream_connection_cap_holds_for_all_workers_together() {
    let (upstream, most) = holding_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_per_core_config(dir.path(), upstream);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("[upstream]", "[upstream]\nmax_connections = 2"),
    )
    .unwrap();
    let (child, addr, lines) = start_logged(&path);
    let admin = HttpClient::new(format!("http://{}", admin_addr(&lines)));
    // 24 at once: each worker gets several (see above), more than the cap.
    let requests: Vec<_> = (0..24)
        .map(|_| {
            let client = HttpClient::new(format!("http://{addr}"));
            tokio::spawn(async move { client.get("/held", &[]).await })
        })
        .collect();
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let accepted = accepted_by_worker(&admin).await;
    assert!(accepted.iter().all(|n| *n > 0), "{accepted:?}");
    // Caps of 2 per worker would let up to 4 through at once.
    assert_eq!(most.load(Ordering::SeqCst), 2);
    drop(child);
}

#[test]
fn a_port_in_use_is_one_start_error_naming_the_address() {
    // Held without SO_REUSEPORT: the workers' sockets cannot join it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ordergate.toml");
    let text = per_core_text("http://127.0.0.1:1").replace(
        "listen = \"127.0.0.1:0\"\npublic",
        &format!("listen = \"{addr}\"\npublic"),
    );
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("error: cannot listen on {addr}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn check_names_the_worker_mode_and_refuses_bad_values_by_key() {
    let (ok, out) = check(&per_core_text("http://127.0.0.1:1"));
    assert!(ok, "{out}");
    assert!(out.trim_end().ends_with(", workers per_core x2"), "{out}");

    let (ok, out) =
        check(&per_core_text("http://127.0.0.1:1").replace("workers = 2", "workers = 0"));
    assert!(!ok);
    assert!(
        out.contains("server.workers: must be greater than 0"),
        "{out}"
    );

    let (ok, out) =
        check(&per_core_text("http://127.0.0.1:1").replace("\"per_core\"", "\"forked\""));
    assert!(!ok);
    assert!(
        out.contains("server.worker_mode: `forked` is not \"shared\" or \"per_core\""),
        "{out}"
    );
}
