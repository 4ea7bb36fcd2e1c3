//! Criterion benches of the per-request work: cookie parsing, path
//! resolution, URL rewriting, decoding and compressing bodies, store
//! lookups, and the whole stack in-process.
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

/// The order body of the load harness's upstream stub (306 bytes), as the
/// gateway reads it from a backend that compresses, and as it compresses
/// it for a client.
const STUB_ORDER: &str = r#"{"order":{"Status":"new","Account":"http://127.0.0.1:18080/accounts/acct999999","Total":"42.00","Created":"2014-04-21T10:15:30Z"},"links":[{"href":"http://127.0.0.1:18080/orders/00000145ffa79d31de17529f007f000000010001/","rel":"self"},{"href":"http://127.0.0.1:18080/accounts/acct999999","rel":"account"}]}"#;

/// Decoding an upstream's compressed order body (the bounded reader the
/// orders phase uses), and compressing it at the edge (the compression
/// layer as the stack has it, its minimum size lowered to 0: at the
/// default of 1 KiB a body this small goes out as it is).
fn codings(c: &mut Criterion) {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
    use http_body_util::BodyExt;
    use ordergate::body::{self, Coding};
    use ordergate::compress::CompressLayer;
    use ordergate::config::CompressionConfig;
    use tokio::io::AsyncReadExt;
    use tower::{Layer, ServiceExt};

    assert_eq!(STUB_ORDER.len(), 306);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let plain = Bytes::from_static(STUB_ORDER.as_bytes());
    let (gzip, br) = rt.block_on(async {
        let mut gzip = Vec::new();
        GzipEncoder::new(&plain[..])
            .read_to_end(&mut gzip)
            .await
            .unwrap();
        let mut br = Vec::new();
        BrotliEncoder::new(&plain[..])
            .read_to_end(&mut br)
            .await
            .unwrap();
        (Bytes::from(gzip), Bytes::from(br))
    });
    let edge = CompressLayer::new(CompressionConfig {
        enabled: true,
        min_size: 0,
    })
    .layer(tower::service_fn(|_: http::Request<()>| async {
        let mut resp = http::Response::new(body::full(Bytes::from_static(STUB_ORDER.as_bytes())));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=UTF-8"),
        );
        Ok::<_, std::convert::Infallible>(resp)
    }));
    let mut g = c.benchmark_group("codings");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    for (name, coding, packed) in [
        ("identity", Coding::Identity, &plain),
        ("gzip", Coding::Gzip, &gzip),
        ("br", Coding::Brotli, &br),
    ] {
        g.bench_function(
            format!("order_body/{name}/decode ({} B)", packed.len()),
            |b| {
                b.iter(|| {
                    let body = body::full(black_box(packed.clone()));
                    let out = rt
                        .block_on(body::read_decoded(body, coding, 1 << 20))
                        .unwrap();
                    assert_eq!(out.len(), 306);
                })
            },
        );
    }
    for name in ["gzip", "br"] {
        g.bench_function(format!("order_body/{name}/compress at the edge"), |b| {
            b.iter(|| {
                let req = http::Request::builder()
                    .header(http::header::ACCEPT_ENCODING, name)
                    .body(())
                    .unwrap();
                rt.block_on(async {
                    let resp = edge.clone().oneshot(req).await.unwrap();
                    assert_eq!(resp.headers()[http::header::CONTENT_ENCODING], name);
                    resp.into_body().collect().await.unwrap().to_bytes()
                })
            })
        });
    }
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
    benches, cookies, resolve, shorthand, faults, rewrite, codings, stores
);
criterion_main!(benches);
