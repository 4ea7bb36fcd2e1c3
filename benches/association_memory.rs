//! Memory per association and the hot lookup of the redb owner store.
//!
//! For each N (`ASSOCIATION_MEMORY_N`, default `100000,1000000`) a child
//! process writes N associations into a fresh redb file in large transactions,
//! and a second child opens that file as the gateway does
//! ([`RedbStore::open`]) and reports its resident set before and after, in
//! bytes per owner. Separate processes, so that what the writer allocated is not
//! counted against the reader. A third child makes `ASSOCIATION_MEMORY_PUTS`
//! (default 20000) associations one `put` at a time, each committed to the
//! file as a request would, to show the write path's slope too.
//! Then criterion times the hot lookups (`get`, `owner_of` hit and miss) on a
//! store holding the largest N.
//!
//! Run with `cargo bench --bench association_memory`. Under `cargo test`
//! (no `--bench` argument) it runs as a quick smoke test with 1,000
//! associations and 100 puts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group};
use ordergate::owners::{OrderId, OwnerId, OwnerStore, RedbStore};
use redb::{Database, TableDefinition};
use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The layout of `src/owners/redb_store.rs`, written here in bulk: one
/// transaction per owner would take the disk's sync time a million times.
const OWNERS: TableDefinition<u128, (&str, u64)> = TableDefinition::new("owners");
const ORDERS: TableDefinition<&str, u128> = TableDefinition::new("orders");

const MODE: &str = "ASSOCIATION_MEMORY_MODE";

/// A spread of owner ids, the same in every process.
fn owner(i: u64) -> OwnerId {
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    OwnerId::from_u128(((next() as u128) << 64) | next() as u128)
}

/// Order ids shaped as the upstream's: 40 lowercase hex digits.
fn order(i: u64) -> String {
    format!(
        "00000145{:016x}{:016x}",
        i.wrapping_mul(0x2545_f491_4f6c_dd1d),
        i
    )
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn prefill(path: &Path, n: u64) {
    let db = Database::create(path).unwrap();
    let mut i = 0;
    while i < n {
        let txn = db.begin_write().unwrap();
        {
            let mut owners = txn.open_table(OWNERS).unwrap();
            let mut orders = txn.open_table(ORDERS).unwrap();
            for j in i..(i + 100_000).min(n) {
                let o = order(j);
                let key = owner(j).as_u128();
                owners.insert(key, (o.as_str(), 1_000 + j)).unwrap();
                orders.insert(o.as_str(), key).unwrap();
            }
        }
        txn.commit().unwrap();
        i += 100_000;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the file as the gateway does and reports the resident set it costs.
fn measure(path: &Path, n: u64) {
    let rt = runtime();
    let before = rss_bytes();
    let started = Instant::now();
    let store = RedbStore::open(path).unwrap();
    let opened = started.elapsed();
    let after = rss_bytes();
    rt.block_on(async {
        assert_eq!(store.count().await.unwrap(), Some(n));
        // Every association is there, both ways.
        for i in (0..n).step_by((n / 1000).max(1) as usize) {
            let a = store.get(owner(i)).await.unwrap().unwrap();
            assert_eq!(a.order.as_str(), order(i));
            assert_eq!(a.touched_ms, 1_000 + i);
            assert_eq!(store.owner_of(&a.order).await.unwrap(), Some(owner(i)));
        }
    });
    println!(
        "open {n:>8} associations: RSS {:>6.1} -> {:>6.1} MiB, {:>5.1} bytes per owner, opened in {:.2?}",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / n as f64,
        opened,
    );
}

/// Makes `n` associations through the store, one committed `put` each.
fn puts(path: &Path, n: u64) {
    let rt = runtime();
    let store = RedbStore::open(path).unwrap();
    let before = rss_bytes();
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            let o = OrderId::parse(&order(i)).unwrap();
            store.put(owner(i), &o, 1_000 + i).await.unwrap();
        }
        assert_eq!(store.count().await.unwrap(), Some(n));
    });
    let after = rss_bytes();
    println!(
        "put  {n:>8} associations: RSS {:>6.1} -> {:>6.1} MiB, {:>5.1} bytes per owner, in {:.2?}",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / n as f64,
        started.elapsed(),
    );
}

fn child(mode: &str, path: &Path, n: u64) {
    let status = Command::new(std::env::current_exe().unwrap())
        .env(MODE, mode)
        .env("ASSOCIATION_MEMORY_PATH", path)
        .env("ASSOCIATION_MEMORY_COUNT", n.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "{mode} {n}: {status}");
}

fn counts(var: &str, default: &str) -> Vec<u64> {
    std::env::var(var)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The default counts: the bench's, or a smoke test's under `cargo test`.
fn default_counts() -> (&'static str, &'static str) {
    if std::env::args().any(|a| a == "--bench") {
        ("100000,1000000", "20000")
    } else {
        ("1000", "100")
    }
}

fn lookups(c: &mut Criterion) {
    let n = counts("ASSOCIATION_MEMORY_N", default_counts().0)
        .into_iter()
        .max()
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owners.redb");
    prefill(&path, n);
    let store = RedbStore::open(&path).unwrap();
    let rt = runtime();
    let hot = owner(n / 2);
    let hot_order = OrderId::parse(&order(n / 2)).unwrap();
    let unknown = OrderId::parse(&order(n + 7)).unwrap();
    let mut group = c.benchmark_group(format!("redb store, {n} associations"));
    group.bench_function("get (hit)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(store.get(black_box(hot)).await.unwrap()) })
    });
    group.bench_function("owner_of (hit)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(store.owner_of(black_box(&hot_order)).await.unwrap()) })
    });
    group.bench_function("owner_of (untracked)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(store.owner_of(black_box(&unknown)).await.unwrap()) })
    });
    group.finish();
}

criterion_group!(benches, lookups);

fn main() {
    if let Ok(mode) = std::env::var(MODE) {
        let path = std::path::PathBuf::from(std::env::var("ASSOCIATION_MEMORY_PATH").unwrap());
        let n: u64 = std::env::var("ASSOCIATION_MEMORY_COUNT")
            .unwrap()
            .parse()
            .unwrap();
        match mode.as_str() {
            "prefill" => prefill(&path, n),
            "measure" => measure(&path, n),
            "puts" => puts(&path, n),
            other => panic!("unknown mode {other}"),
        }
        return;
    }
    let (associations, puts) = default_counts();
    for n in counts("ASSOCIATION_MEMORY_N", associations) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners.redb");
        child("prefill", &path, n);
        child("measure", &path, n);
    }
    for n in counts("ASSOCIATION_MEMORY_PUTS", puts) {
        let dir = tempfile::tempdir().unwrap();
        child("puts", &dir.path().join("owners.redb"), n);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
