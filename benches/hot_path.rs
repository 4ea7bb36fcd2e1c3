//! Criterion benches of the per-request work: cookie parsing, path
//! resolution, URL rewriting, store lookups, and the whole stack in-process.
//!
//! Run with `cargo bench --bench hot_path`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use ordergate::config::FaultTypes;
use ordergate::faults::normalise;
use ordergate::owners::{MemoryStore, OrderId, OwnerId, OwnerStore, RedbStore, owner_from_headers};
use ordergate::route::{Route, classify, explicit_path};
use ordergate::upstream::rewrite::Rewriter;
use std::hint::black_box;

const INTERNAL: &str = "http://coreapi01.ote.chicago.hostway:8092";
const ORDER: &str = "00000145ffa79d31de17529f007f000000010001";

fn cookies(c: &mut Criterion) {
    let mut h = HeaderMap::new();
    h.insert(
        "cookie",
        HeaderValue::from_static(
            "_ga=GA1.2.3; OwnerId=4d84cd13-bbb3-46ba-a40c-8988351e3681; theme=dark",
        ),
    );
    c.bench_function("owner_cookie/parse", |b| {
        b.iter(|| owner_from_headers(black_box(&h)))
    });
}

fn resolve(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for path in [
        "/order/product/p1",
        "/orders/00000145ffa79d31de17529f007f000000010001/quote",
        "/accounts/a/exchange/d/x",
    ] {
        g.bench_function(path, |b| b.iter(|| classify(black_box(path))));
    }
    g.finish();
}

/// Path + owner → target: the route, the owner's order from the cookie, the
/// explicit path sent upstream.
fn shorthand(c: &mut Criterion) {
    let mut h = HeaderMap::new();
    h.insert(
        "cookie",
        HeaderValue::from_static("OwnerId=4d84cd13-bbb3-46ba-a40c-8988351e3681"),
    );
    let order = OrderId::parse(ORDER).unwrap();
    let mut g = c.benchmark_group("shorthand");
    for path in ["/order", "/order/product/p1"] {
        g.bench_function(format!("resolve {path}"), |b| {
            b.iter(|| {
                let Ok(Route::Shorthand { rest }) = classify(black_box(path)) else {
                    unreachable!()
                };
                let owner = owner_from_headers(black_box(&h)).unwrap();
                (owner, explicit_path(black_box(&order), &rest, None))
            })
        });
    }
    g.finish();
}

fn faults(c: &mut Criterion) {
    let types = FaultTypes::default();
    let mut g = c.benchmark_group("fault_normalise");
    let html = format!(
        "<html><head><title>502 Bad Gateway</title></head><body>{}</body></html>",
        "<p>upstream error</p>".repeat(20)
    );
    for (name, status, ct, body) in [
        (
            "documented json",
            400,
            Some("application/json"),
            Some(&br#"{"computeFault":{"message":"Account has not been set","code":400,"details":"","guid":"a1b2"}}"#[..]),
        ),
        (
            "other json",
            409,
            Some("application/json"),
            Some(&br#"{"error":"conflict","message":"the order is locked"}"#[..]),
        ),
        ("html", 502, Some("text/html"), Some(html.as_bytes())),
        (
            "plain text",
            503,
            Some("text/plain"),
            Some(&b"Service Unavailable: try again later"[..]),
        ),
        ("empty", 500, None, Some(&b""[..])),
        ("over the cap", 500, None, None),
    ] {
        let status = http::StatusCode::from_u16(status).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| normalise(status, black_box(ct), black_box(body), &types))
        });
    }
    g.finish();
}

fn order_body() -> String {
    format!(
        r#"{{"order":{{"Status":"new","Account":"{INTERNAL}/accounts/acct999999","Total":"42.00","Created":"2014-04-21T10:15:30Z"}},"links":[{{"href":"{INTERNAL}/orders/{ORDER}/","rel":"self"}},{{"href":"{INTERNAL}/accounts/acct999999","rel":"account"}}]}}"#
    )
}

fn rewrite(c: &mut Criterion) {
    let base = Rewriter::new([(INTERNAL.to_owned(), "https://api.example.com".to_owned())]);
    let short = base.with([(
        format!("{INTERNAL}/orders/{ORDER}"),
        "https://api.example.com/order".to_owned(),
    )]);
    let body = Bytes::from(order_body());
    let mut g = c.benchmark_group("rewrite");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("order_body/base", |b| {
        b.iter(|| base.rewrite_bytes(black_box(&body)))
    });
    g.bench_function("order_body/shorthand", |b| {
        b.iter(|| short.rewrite_bytes(black_box(&body)))
    });
    g.bench_function("location", |b| {
        b.iter(|| base.rewrite(black_box(&format!("{INTERNAL}/orders/{ORDER}"))))
    });
    g.bench_function("shorthand_rewriter/build", |b| {
        b.iter(|| {
            base.with([(
                format!("{INTERNAL}/orders/{ORDER}"),
                "https://api.example.com/order".to_owned(),
            )])
        })
    });
    g.finish();
}

fn stores(c: &mut Criterion) {
    const OWNERS: u128 = 1_000_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let order = OrderId::parse(ORDER).unwrap();
    let memory = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("owners.redb")).unwrap();
    rt.block_on(async {
        for i in 0..OWNERS {
            let o = OrderId::parse(&format!("o{i}")).unwrap();
            memory.put(OwnerId::from_u128(i), &o, 1).await.unwrap();
        }
        memory.put(OwnerId::from_u128(7), &order, 1).await.unwrap();
        // redb commits each write durably; fill it in one batch-sized loop of
        // fewer owners and measure the lookup, which is served from memory.
        for i in 0..10_000u128 {
            let o = OrderId::parse(&format!("o{i}")).unwrap();
            redb.put(OwnerId::from_u128(i), &o, 1).await.unwrap();
        }
    });
    let mut g = c.benchmark_group("store");
    g.bench_function("memory/get (1M owners)", |b| {
        b.iter(|| rt.block_on(memory.get(black_box(OwnerId::from_u128(7)))))
    });
    g.bench_function("redb/get", |b| {
        b.iter(|| rt.block_on(redb.get(black_box(OwnerId::from_u128(7)))))
    });
    g.bench_function("redb/put (durable)", |b| {
        b.iter_batched(
            OwnerId::mint,
            |o| rt.block_on(redb.put(o, &order, 2)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches, cookies, resolve, shorthand, faults, rewrite, stores
);
criterion_main!(benches);
