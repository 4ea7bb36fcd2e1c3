//! The orders service on its own, driven with `oneshot`, in front of a
//! scripted upstream on a real socket: the plan's rules as the service
//! carries them out, against answers as real backends send them
//! (compressed, gone, changed behind the gateway's back).

use super::{OrdersService, OrdersSettings};
use crate::body::{self, Body};
use crate::config::Config;
use crate::context::Facts;
use crate::faults::FaultInfo;
use crate::owners::{MemoryStore, OrderId, OwnerId, OwnerStore};
use crate::telemetry::metrics::Metrics;
use crate::upstream::Upstream;
use crate::upstream::rewrite::Bases;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tower::ServiceExt;

const OWNER: &str = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
const INTERNAL: &str = "http://internal.example:8092";

/// What the scripted upstream answers, by method and path.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<HashMap<(Method, String), Canned>>>);

#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Script {
    fn on(
        &self,
        method: Method,
        path: &str,
        status: u16,
        headers: &[(&'static str, &str)],
        body: &[u8],
    ) {
        let canned = Canned {
            status,
            headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            body: body.to_vec(),
        };
        self.0
            .lock()
            .unwrap()
            .insert((method, path.to_owned()), canned);
    }

    async fn serve(self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = self.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let canned = script
                                .0
                                .lock()
                                .unwrap()
                                .get(&(req.method().clone(), req.uri().path().to_owned()))
                                .cloned();
                            async move {
                                let canned = canned.unwrap_or(Canned {
                                    status: 404,
                                    headers: vec![],
                                    body: b"no such thing".to_vec(),
                                });
                                let mut resp = Response::new(http_body_util::Full::new(
                                    Bytes::from(canned.body),
                                ));
                                *resp.status_mut() = StatusCode::from_u16(canned.status).unwrap();
                                for (k, v) in canned.headers {
                                    resp.headers_mut().append(k, v.parse().unwrap());
                                }
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        addr
    }
}

struct Fixture {
    service: OrdersService,
    store: Arc<MemoryStore>,
    script: Script,
}

async fn fixture() -> Fixture {
    let script = Script::default();
    let addr = script.clone().serve().await;
    let config = Config::parse(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"https://api.example\"\n\
         [upstream]\nurl = \"http://{addr}\"\nrewrite_bases = [\"{INTERNAL}\"]\n[store]\nkind = \"memory\"\n"
    ))
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(MemoryStore::new());
    let internal = vec![config.upstream.url.as_str().to_owned(), INTERNAL.to_owned()];
    let service = OrdersService::new(
        Upstream::new(&config.upstream, Arc::clone(&metrics)),
        crate::owners::Store::unshared(Arc::clone(&store) as Arc<dyn OwnerStore>),
        metrics,
        OrdersSettings {
            bases: Bases::new(internal, "https://api.example".to_owned()),
            cookies: config.cookies,
            idle_expiry: config.store.idle_expiry,
            max_request_body: config.server.max_request_body,
            max_json_body: config.upstream.max_json_body,
            request_id_header: config.server.request_id_header.clone(),
            lease_wait: std::time::Duration::from_secs(1),
        },
    );
    Fixture {
        service,
        store,
        script,
    }
}

impl Fixture {
    /// The upstream answers `GET /orders/o1` with `body`, gzipped JSON.
    fn order_o1_gzipped(&self, body: &[u8]) {
        self.script.on(
            Method::GET,
            "/orders/o1",
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            body,
        );
    }

    async fn associate(&self, order: &str) {
        let owner = OwnerId::parse(OWNER).unwrap();
        let order = OrderId::parse(order).unwrap();
        self.store
            .put(owner, &order, crate::clock::now_ms())
            .await
            .unwrap();
    }

    async fn open_order(&self) -> Option<String> {
        let owner = OwnerId::parse(OWNER).unwrap();
        self.store
            .get(owner)
            .await
            .unwrap()
            .map(|a| a.order.as_str().to_owned())
    }

    /// Sends a request as the stack would hand it over, with its facts.
    /// The answer to a request, its body read whole (the answer keeps an
    /// empty one in its place, of the same exact size when it had one).
    async fn call(&self, method: Method, path: &str, cookie: bool) -> (Response<Body>, Bytes) {
        let mut req = Request::builder().method(method).uri(path);
        if cookie {
            req = req.header("cookie", format!("OwnerId={OWNER}"));
        }
        let mut req = req.body(body::empty()).unwrap();
        let facts = Facts::new(path, req.headers(), None, &[], None);
        req.extensions_mut().insert(facts);
        let resp = self.service.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let exact = body.size_hint().exact();
        let bytes = body.collect().await.unwrap().to_bytes();
        let stand_in = match exact {
            Some(n) => body::full(vec![0; usize::try_from(n).unwrap()]),
            None => body::empty(),
        };
        (Response::from_parts(parts, stand_in), bytes)
    }
}

fn fault_message(resp: &Response<Body>) -> String {
    resp.extensions()
        .get::<FaultInfo>()
        .map(|f| f.message.to_string())
        .unwrap_or_default()
}

async fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    async_compression::tokio::bufread::GzipEncoder::new(plain)
        .read_to_end(&mut out)
        .await
        .unwrap();
    out
}

#[tokio::test]
async fn the_order_itself_gone_ends_the_association_on_both_routes() {
    let f = fixture().await;
    f.script.on(Method::GET, "/orders/o1", 410, &[], b"gone");
    // Through the shorthand: 404, and the association ends.
    f.associate("o1").await;
    let (resp, _) = f.call(Method::GET, "/order", true).await;
    assert_eq!(resp.status(), 404);
    assert!(fault_message(&resp).contains("no new order"), "{resp:?}");
    assert_eq!(f.open_order().await, None);
    // Explicitly: the upstream's 410 passes, and the association ends too.
    f.associate("o1").await;
    let (resp, _) = f.call(Method::GET, "/orders/o1", true).await;
    assert_eq!(resp.status(), 410);
    assert_eq!(f.open_order().await, None);
    // A child that is gone ends nothing.
    f.associate("o1").await;
    f.script
        .on(Method::GET, "/orders/o1/account", 404, &[], b"no account");
    let (resp, _) = f.call(Method::GET, "/order/account", true).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(f.open_order().await.as_deref(), Some("o1"));
}

#[tokio::test]
async fn a_compressed_order_is_read_decoded() {
    let f = fixture().await;
    f.associate("o1").await;
    let open = format!(
        r#"{{"order": {{"Status": "new", "Account": "{INTERNAL}/accounts/a1"}}, "links": [{{"href": "{INTERNAL}/orders/o1/", "rel": "self"}}]}}"#
    );
    let gz = gzip(open.as_bytes()).await;
    f.order_o1_gzipped(&gz);
    let (resp, body) = f.call(Method::GET, "/order", true).await;
    assert_eq!(resp.status(), 200);
    // Decoded, its URLs on the public base, the shorthand's links set.
    assert!(!resp.headers().contains_key("content-encoding"));
    // The length is the view's (its body's exact size, which the server
    // writes), not the compressed body's the upstream gave.
    assert!(!resp.headers().contains_key("content-length"));
    assert_eq!(resp.body().size_hint().exact(), Some(body.len() as u64));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["order"]["Account"], "https://api.example/accounts/a1");
    let links = json["links"].as_array().unwrap();
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "self" && l["href"] == "https://api.example/order/")
    );
    assert!(
        links
            .iter()
            .any(|l| l["rel"] == "alternate" && l["href"] == "https://api.example/orders/o1/")
    );
    // The upstream moves it on behind the gateway's back: 404, ended.
    let gz = gzip(br#"{"order": {"Status": "Processing"}}"#).await;
    f.order_o1_gzipped(&gz);
    let (resp, _) = f.call(Method::GET, "/order", true).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(f.open_order().await, None);
}

#[tokio::test]
async fn a_compression_bomb_for_an_order_ends_at_the_cap_with_a_502() {
    let f = fixture().await;
    f.associate("o1").await;
    // 64 MiB of spaces in a JSON string: far past the 1 MiB JSON cap.
    let mut plain = b"{\"order\": {\"Status\": \"new\", \"pad\": \"".to_vec();
    plain.resize(plain.len() + (64 << 20), b' ');
    plain.extend_from_slice(b"\"}}");
    let bomb = gzip(&plain).await;
    assert!(bomb.len() < 256 << 10, "{}", bomb.len());
    f.order_o1_gzipped(&bomb);
    let (resp, _) = f.call(Method::GET, "/order", true).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(f.open_order().await.as_deref(), Some("o1"));
}

#[tokio::test]
async fn an_encoding_the_gateway_cannot_read_is_a_502() {
    let f = fixture().await;
    f.associate("o1").await;
    f.script.on(
        Method::GET,
        "/orders/o1",
        200,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "compress"),
        ],
        b"\x1f\x9d...",
    );
    let (resp, _) = f.call(Method::GET, "/order", true).await;
    assert_eq!(resp.status(), 502);
    // The association stands: the gateway could not read the answer.
    assert_eq!(f.open_order().await.as_deref(), Some("o1"));
}

#[tokio::test]
async fn associations_are_learned_from_every_changing_call_on_both_routes() {
    let f = fixture().await;
    let cases = [
        (Method::PATCH, "/accounts/a1/things", "o7"),
        (Method::PATCH, "/orders/o1/account", "o8"),
        (Method::DELETE, "/orders/o1/product/p1", "o9"),
    ];
    for (method, path, made) in cases {
        let location = format!("{INTERNAL}/orders/{made}");
        f.script
            .on(method.clone(), path, 201, &[("location", &location)], b"");
        let (resp, _) = f.call(method.clone(), path, true).await;
        assert_eq!(resp.status(), 201, "{method} {path}");
        assert_eq!(
            resp.headers()["location"],
            format!("https://api.example/orders/{made}").as_str()
        );
        assert_eq!(
            f.open_order().await.as_deref(),
            Some(made),
            "{method} {path}"
        );
    }
    // Reads learn nothing.
    f.script.on(
        Method::GET,
        "/accounts/a1",
        200,
        &[("location", &format!("{INTERNAL}/orders/o10"))],
        b"",
    );
    f.call(Method::GET, "/accounts/a1", true).await;
    assert_eq!(f.open_order().await.as_deref(), Some("o9"));
}

#[tokio::test]
async fn refusals_reach_no_upstream() {
    let f = fixture().await;
    // No script at all: any call upstream would be a 404 from the stub.
    for (method, path, cookie, status) in [
        (Method::GET, "/order", false, 401),
        (Method::GET, "/order", true, 404),
        (Method::DELETE, "/order", true, 404),
        (Method::GET, "/order/%2e%2e/orders/x", true, 400),
    ] {
        let (resp, _) = f.call(method.clone(), path, cookie).await;
        assert_eq!(resp.status(), status, "{method} {path}");
        assert!(
            resp.extensions().get::<FaultInfo>().is_some(),
            "{method} {path}: a gateway fault"
        );
    }
}

#[tokio::test]
async fn the_servers_facts_alone_are_worked_out_here() {
    let f = fixture().await;
    // As the server and the request-id layer leave a request, with no
    // facts layer in front: `/order` without a cookie is still the
    // shorthand's (refused), not a path passed on.
    let mut req = Request::get("/order").body(body::empty()).unwrap();
    req.extensions_mut().insert(Facts::of_peer(None));
    Facts::settle(&mut req).request_id = Some(http::HeaderValue::from_static("id-7"));
    let resp = f.service.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 401, "{resp:?}");
    assert!(
        fault_message(&resp).contains("OwnerId cookie is required"),
        "{resp:?}"
    );
}
