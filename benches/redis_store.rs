//! The Redis owner store against redb: a store lookup alone, and the
//! shorthand `GET /order` through the whole gateway (in-process, over
//! loopback, in front of the emulated backend), with a harness figure of the
//! CPU per request of the gateway process and of redis-server.
//!
//! Run with `cargo bench --bench redis_store`. Starts its own `redis-server`
//! on a free 127.0.0.1 port; without one installed it says so and measures
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ordergate::config::{Config, OnRedisError, RedisConfig};
use ordergate::owners::{OrderId, OwnerId, OwnerStore, RedbStore, RedisStore};
use ordergate::redis_pool::RedisPool;
use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INTERNAL: &str = "http://coreapi01.ote.chicago.hostway:8092";
const ORDER: &str = "00000145ffa79d31de17529f007f000000010001";
const OWNER: &str = "4d84cd13-bbb3-46ba-a40c-8988351e3681";

struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Self { port, child });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) of a process so far, from /proc.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn redis_config(url: &str) -> RedisConfig {
    RedisConfig {
        url: url.to_owned(),
        ca_pem: None,
        password: None,
        key_prefix: "bench:".into(),
        pool_size: 4,
        order_cache: 65_536,
        connect_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
        lease_ttl: Duration::from_secs(10),
        on_error: OnRedisError::FailClosed,
    }
}

fn store_get(c: &mut Criterion, redis: &RedisServer) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let order = OrderId::parse(ORDER).unwrap();
    let owner = OwnerId::parse(OWNER).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("owners.redb")).unwrap();
    let config = redis_config(&redis.url());
    let shared = rt.block_on(async {
        let store = RedisStore::new(RedisPool::new(&config).unwrap(), &config);
        store.put(owner, &order, 1).await.unwrap();
        redb.put(owner, &order, 1).await.unwrap();
        store
    });
    let mut g = c.benchmark_group("store");
    g.bench_function("redb/get", |b| {
        b.iter(|| rt.block_on(redb.get(black_box(owner))))
    });
    g.bench_function("redis/get", |b| {
        b.iter(|| rt.block_on(shared.get(black_box(owner))))
    });
    g.bench_function("redis/put", |b| {
        b.iter(|| rt.block_on(shared.put(black_box(owner), &order, 2)))
    });
    g.finish();
}

struct Stack {
    _backend: ordergate::backend::Backend,
    _gateway: support::Gateway,
    base: String,
}

/// Backend + gateway with `store`, and an owner with an open order.
async fn stack(store: &str, client: &Client<HttpConnector, Full<Bytes>>) -> Stack {
    let bl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = ordergate::backend::Backend::start(bl, Some(INTERNAL.to_owned())).unwrap();
    let gl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = gl.local_addr().unwrap();
    let text = format!(
        "[server]\nlisten = \"{addr}\"\npublic_base_url = \"http://{addr}\"\n[upstream]\nurl = \"http://{}\"\nrewrite_bases = [\"{INTERNAL}\"]\n[log]\naccess_log = false\n{store}\n",
        backend.addr
    );
    let gateway = support::Gateway::start(Config::parse(&text).unwrap(), gl).await;
    let base = format!("http://{addr}");
    let put = send(client, Method::PUT, &format!("{base}/order/account")).await;
    assert_eq!(put, 200);
    Stack {
        _backend: backend,
        _gateway: gateway,
        base,
    }
}

async fn send(client: &Client<HttpConnector, Full<Bytes>>, method: Method, url: &str) -> u16 {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("cookie", format!("OwnerId={OWNER}"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

fn shorthand_get(c: &mut Criterion, redis: &RedisServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let dir = tempfile::tempdir().unwrap();
    let redb_table = format!(
        "[store]\nkind = \"redb\"\npath = \"{}\"",
        dir.path().join("owners.redb").display()
    );
    let redis_table = format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nkey_prefix = \"bench-stack:\"",
        redis.url()
    );
    let stacks = rt.block_on(async {
        vec![
            ("redb", stack(&redb_table, &client).await),
            ("redis", stack(&redis_table, &client).await),
        ]
    });
    let mut g = c.benchmark_group("shorthand GET /order");
    for (name, stack) in &stacks {
        let url = format!("{}/order", stack.base);
        g.bench_function(*name, |b| {
            b.iter(|| rt.block_on(send(&client, Method::GET, &url)))
        });
    }
    g.finish();

    // The harness figure: sequential requests, wall time and CPU per request
    // of this process (client, gateway and emulated backend) and of Redis.
    // Only under `cargo bench`: `cargo test --all-targets` runs each bench
    // once, as a test.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    const N: u32 = 5_000;
    let me = std::process::id();
    for (name, stack) in &stacks {
        let url = format!("{}/order", stack.base);
        let (cpu0, redis0, t0) = (cpu(me), cpu(redis.child.id()), Instant::now());
        rt.block_on(async {
            for _ in 0..N {
                assert_eq!(send(&client, Method::GET, &url).await, 200);
            }
        });
        let wall = t0.elapsed() / N;
        let process = (cpu(me) - cpu0) / N;
        let server = (cpu(redis.child.id()) - redis0) / N;
        println!(
            "harness: shorthand GET /order, {name} store, {N} sequential requests: {:.1} µs/request wall, {:.1} µs CPU/request in the process, {:.1} µs CPU/request in redis-server",
            wall.as_secs_f64() * 1e6,
            process.as_secs_f64() * 1e6,
            server.as_secs_f64() * 1e6,
        );
    }
}

fn benches(c: &mut Criterion) {
    let Some(redis) = RedisServer::start() else {
        eprintln!("redis_store bench skipped: redis-server is not installed or did not start");
        return;
    };
    store_get(c, &redis);
    shorthand_get(c, &redis);
}

criterion_group!(redis_benches, benches);
criterion_main!(redis_benches);
