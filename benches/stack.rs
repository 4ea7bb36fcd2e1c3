//! Criterion benches of the whole stack in-process: a request goes through
//! every layer with `oneshot` and the upstream is a small hyper server on
//! 127.0.0.1 that answers like the load benchmark's stub (the gateway's
//! upstream client speaks HTTP over TCP, so the upstream is real, its cost is
//! loopback I/O). Also the request-id layer as written (a hand-written
//! Service with its own future) against the same logic as async-fn
//! middleware, the other style tower allows.
//!
//! Run with `cargo bench --bench stack`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ordergate::body::{self, Body};
use ordergate::config::Config;
use ordergate::context::{Facts, Peer};
use ordergate::guards::rate_limit::RateLimits;
use ordergate::owners::{MemoryStore, OrderId, OwnerId, OwnerStore};
use ordergate::stack;
use ordergate::telemetry::RequestIdLayer;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};

const ORDER: &str = "00000145ffa79d31de17529f007f000000010001";
const OWNER: &str = "73adb746-2443-4cc8-879e-886348385b9a";

/// The stub's answers: the order body with the stub's own base in it, a 404
/// fault in the legacy shape for anything else.
async fn stub(req: Request<Incoming>, base: Arc<str>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let mut resp = if req.method() == Method::GET && path.starts_with("/orders/") {
        Response::new(Full::new(Bytes::from(format!(
            r#"{{"order":{{"Status":"new","Account":"{base}/accounts/acct999999","Total":"42.00","Created":"2014-04-21T10:15:30Z"}},"links":[{{"href":"{base}/orders/{ORDER}/","rel":"self"}},{{"href":"{base}/accounts/acct999999","rel":"account"}}]}}"#
        ))))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            br#"{"itemNotFound":{"message":"Resource not found","code":404,"details":""}}"#,
        )));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    Ok(resp)
}

async fn start_stub() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base: Arc<str> = format!("http://{addr}").into();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let base = Arc::clone(&base);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| stub(req, Arc::clone(&base)));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn request(path: &str, cookie: bool) -> Request<Body> {
    let mut req = Request::get(path)
        .header("host", "127.0.0.1:18090")
        .header("user-agent", "bench")
        .header("accept", "*/*");
    if cookie {
        req = req.header("cookie", format!("OwnerId={OWNER}"));
    }
    let mut req = req.body(body::empty()).unwrap();
    req.extensions_mut().insert(Facts::of_peer(Some(Peer {
        addr: "127.0.0.1:40000".parse().unwrap(),
        tls: false,
    })));
    req
}

fn whole_stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(start_stub());
    let base = format!("http://{addr}");
    // As in the load benchmark: the public base is the stub's own, no access
    // log, no rate limits, a memory store.
    let config = Config::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"{base}\"\n\
         [upstream]\nurl = \"{base}\"\n[store]\nkind = \"memory\"\n[log]\naccess_log = false\n"
    ))
    .unwrap();
    let store = Arc::new(MemoryStore::new());
    rt.block_on(store.put(
        OwnerId::parse(OWNER).unwrap(),
        &OrderId::parse(ORDER).unwrap(),
        ordergate::clock::now_ms(),
    ))
    .unwrap();
    let limits = Arc::new(RateLimits::new(Vec::new()));
    let metrics = Arc::new(ordergate::telemetry::metrics::Metrics::new());
    let gateway = rt.block_on(async {
        stack::build(
            &config,
            ordergate::owners::Store::unshared(store),
            limits,
            metrics,
            None,
            None,
        )
    });

    let mut g = c.benchmark_group("stack");
    for (name, path, cookie, status) in [
        (
            "passthrough GET /orders/<id>",
            format!("/orders/{ORDER}"),
            false,
            200,
        ),
        ("shorthand GET /order", "/order".to_owned(), true, 200),
        (
            "fault (upstream 404)",
            "/no/such/thing".to_owned(),
            false,
            404,
        ),
        ("fault (gateway 401)", "/order".to_owned(), false, 401),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let resp = gateway
                    .clone()
                    .oneshot(request(&path, cookie))
                    .await
                    .unwrap();
                assert_eq!(resp.status(), status);
                black_box(resp.into_body().collect().await.unwrap().to_bytes())
            })
        });
    }
    g.finish();
}

// ---- the request-id layer, hand-written vs async-fn middleware --------------

/// The same logic as [`RequestIdLayer`], as async-fn middleware: the style
/// of `axum::middleware::from_fn`, which boxes a future and clones the inner
/// service for every request.
#[derive(Clone)]
struct FnRequestId<S> {
    inner: S,
    header: HeaderName,
}

impl<S> Service<Request<Body>> for FnRequestId<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(request_id_fn(req, self.inner.clone(), self.header.clone()))
    }
}

async fn request_id_fn<S>(
    mut req: Request<Body>,
    inner: S,
    header: HeaderName,
) -> Result<Response<Body>, Infallible>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    let id = match req.headers().get(&header) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let mut buf = uuid::Uuid::encode_buffer();
            let s = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
            let v = HeaderValue::from_str(s).unwrap();
            req.headers_mut().insert(header.clone(), v.clone());
            v
        }
    };
    Facts::settle(&mut req).request_id = Some(id.clone());
    let mut resp = inner.oneshot(req).await?;
    resp.headers_mut().insert(header, id);
    Ok(resp)
}

async fn answer(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync(),
    ))
}

fn middleware_styles(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let header = HeaderName::from_static("x-request-id");
    let inner = tower::service_fn(answer);
    let hand = RequestIdLayer::new(header.clone()).layer(inner);
    let func = FnRequestId {
        inner,
        header: header.clone(),
    };
    let mut g = c.benchmark_group("request_id_layer");
    for with_id in [false, true] {
        let req = move || {
            let mut r = Request::new(body::empty());
            if with_id {
                r.headers_mut()
                    .insert("x-request-id", HeaderValue::from_static("abc-123"));
            }
            r
        };
        let label = if with_id { "client id" } else { "generated id" };
        g.bench_function(format!("hand-written service/{label}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(hand.clone().oneshot(req()).await.unwrap()) })
        });
        g.bench_function(format!("async-fn middleware/{label}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(func.clone().oneshot(req()).await.unwrap()) })
        });
    }
    g.finish();
}

criterion_group!(benches, whole_stack, middleware_styles);
criterion_main!(benches);
