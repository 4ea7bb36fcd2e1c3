#![allow(clippy::unwrap_used, clippy::expect_used)]
//! OpenTelemetry traces: an in-process OTLP receiver (HTTP, protobuf) gets
//! the gateway's spans; a client's `traceparent` is continued, the upstream
//! gets the gateway's upstream-call span as its parent, and the phases of an
//! implicit creation (store calls, waits, the creation) and rate-limit
//! decisions show in the trace. With tracing off, the client's headers go
//! upstream as they came.

mod support;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// Spans received, with the service name of their resource.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver: POST /v1/traces with a protobuf body.
async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let received: Received = Arc::default();
    let spans = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let spans = Arc::clone(&spans);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let spans = Arc::clone(&spans);
                    async move {
                        let ok = req.method() == Method::POST
                            && req.uri().path() == "/v1/traces"
                            && req.headers()["content-type"] == "application/x-protobuf";
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = match ExportTraceServiceRequest::decode(body) {
                            Ok(export) if ok => {
                                let mut all = spans.lock().unwrap();
                                for rs in export.resource_spans {
                                    let service = rs
                                        .resource
                                        .iter()
                                        .flat_map(|r| &r.attributes)
                                        .find(|a| a.key == "service.name")
                                        .map(|a| value_text(a.value.as_ref()))
                                        .unwrap_or_default();
                                    for ss in rs.scope_spans {
                                        for span in ss.spans {
                                            all.push((service.clone(), span));
                                        }
                                    }
                                }
                                200
                            }
                            _ => 400,
                        };
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        resp.headers_mut()
                            .insert("content-type", "application/x-protobuf".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}

fn value_text(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| value_text(a.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (at most 10 s) until `n` spans have arrived.
async fn spans(received: &Received, n: usize) -> Vec<Span> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<Span> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn spans_continue_the_client_trace_and_parent_the_upstream_call() {
    let (otlp, received) = otlp_receiver().await;
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        up,
        &format!(
            "[store]\nkind = \"memory\"\n{}[telemetry.otlp]\nendpoint = \"http://{otlp}\"\nservice_name = \"gateway-under-test\"\n",
            once_an_hour("limited-reads", "/limited"),
        ),
    );
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());

    // A client that traces: its trace goes on.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let parent = format!("00-{trace_id}-{client_span}-01");
    let continued = client
        .get(
            "/continued",
            &[("traceparent", &parent), ("tracestate", "vendor=1")],
        )
        .await;
    assert_eq!(continued.status, 200);
    let seen = continued.json();
    let upstream_parent = seen["headers"]["traceparent"].as_str().unwrap().to_owned();
    let fields: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(fields.len(), 4, "{upstream_parent}");
    assert_eq!((fields[0], fields[1], fields[3]), ("00", trace_id, "01"));
    assert_ne!(
        fields[2], client_span,
        "the gateway's own span is the parent"
    );
    assert_eq!(seen["headers"]["tracestate"], "vendor=1");
    let upstream_call_id = fields[2].to_owned();

    // A client that does not: a new trace, still parenting the upstream.
    let fresh = client.get("/fresh", &[]).await.json();
    let fresh_parent = fresh["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert_eq!(fresh_parent.len(), 55, "{fresh_parent}");
    assert!(!fresh_parent.contains(trace_id));

    // Rate-limit decisions are events of the request's span.
    assert_eq!(client.get("/limited", &[]).await.status, 200);
    assert_eq!(client.get("/limited", &[]).await.status, 429);

    // The batch goes out at the latest when the gateway stops.
    gw.stop().await;
    // 4 requests and 3 upstream calls.
    let all = spans(&received, 7).await;
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .all(|(service, _)| service == "gateway-under-test")
    );
    let server: Vec<&Span> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    let upstream: Vec<&Span> = all.iter().filter(|s| s.name == "upstream").collect();
    assert_eq!(server.len(), 4, "{all:#?}");
    assert_eq!(upstream.len(), 3, "{all:#?}");

    let request = server
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/continued"))
        .unwrap();
    assert_eq!(hex(&request.trace_id), trace_id);
    assert_eq!(hex(&request.parent_span_id), client_span);
    assert_eq!(request.name, "GET other");
    assert_eq!(attr(request, "ordergate.route").as_deref(), Some("other"));
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attr(request, "ordergate.request_id").map(|id| id.len()),
        Some(36)
    );
    let call = upstream
        .iter()
        .find(|s| hex(&s.trace_id) == trace_id)
        .unwrap();
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert_eq!(call.parent_span_id, request.span_id);
    assert_eq!(hex(&call.span_id), upstream_call_id);
    assert_eq!(
        attr(call, "http.response.status_code").as_deref(),
        Some("200")
    );

    let started = server
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/fresh"))
        .unwrap();
    assert!(started.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        fresh_parent.split('-').nth(1).unwrap(),
        hex(&started.trace_id)
    );

    let limited: Vec<&&Span> = server
        .iter()
        .filter(|s| attr(s, "url.path").as_deref() == Some("/limited"))
        .collect();
    assert_eq!(limited.len(), 2);
    let refused = limited
        .iter()
        .find(|s| attr(s, "http.response.status_code").as_deref() == Some("429"))
        .unwrap();
    let event = refused
        .events
        .iter()
        .find(|e| e.name == "rate_limit")
        .unwrap();
    let allowed = event
        .attributes
        .iter()
        .find(|a| a.key == "ordergate.rate_limit.allowed")
        .map(|a| value_text(a.value.as_ref()));
    assert_eq!(allowed.as_deref(), Some("false"));
    // The refusal never reached the upstream.
    assert!(!upstream.iter().any(|u| u.trace_id == refused.trace_id));
}

#[tokio::test]
async fn an_implicit_creation_shows_its_phases() {
    let (otlp, received) = otlp_receiver().await;
    let backend =
        ordergate::backend::Backend::start(listener().await, Some(INTERNAL.to_owned())).unwrap();
    let gl = listener().await;
    let text = config_text(
        gl.local_addr().unwrap(),
        backend.addr,
        &format!("[store]\nkind = \"memory\"\n[telemetry.otlp]\nendpoint = \"http://{otlp}/\"\n"),
    );
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let client = HttpClient::new(gw.base.clone());
    let (_, owner) = client
        .create_implicitly(&[("content-type", "application/json")])
        .await;
    let get = client.get("/order", &[("cookie", &cookie(&owner))]).await;
    assert_eq!(get.status, 200);
    // An owner known by its cookie but without an order: its creation waits
    // for the owner's creation lock first.
    let known = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b";
    client
        .create_implicitly(&[
            ("content-type", "application/json"),
            ("cookie", &cookie(known)),
        ])
        .await;
    gw.stop().await;

    let all = spans(&received, 12).await;
    let put_span = all
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.name == "PUT shorthand")
        .unwrap_or_else(|| panic!("{all:#?}"));
    let in_put = |name: &str| -> Vec<&Span> {
        all.iter()
            .filter(|s| s.trace_id == put_span.trace_id && s.name == name)
            .collect()
    };
    let create = in_put("order.create");
    assert_eq!(create.len(), 1, "{all:#?}");
    assert_eq!(create[0].parent_span_id, put_span.span_id);
    // No cookie, no one to race with: no creation lock.
    assert_eq!(in_put("order.single_flight_wait").len(), 0);
    // The creation and the forwarded PUT: two upstream calls; the creation's
    // is a child of order.create.
    let calls = in_put("upstream");
    assert_eq!(calls.len(), 2, "{all:#?}");
    assert!(calls.iter().any(|c| c.parent_span_id == create[0].span_id));
    // The new association is stored within the request.
    assert!(!in_put("store.put").is_empty(), "{all:#?}");

    let known_put = all
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server as i32
                && s.name == "PUT shorthand"
                && attr(s, "ordergate.owner_hash").is_some()
        })
        .unwrap_or_else(|| panic!("{all:#?}"));
    let wait: Vec<&Span> = all
        .iter()
        .filter(|s| s.trace_id == known_put.trace_id && s.name == "order.single_flight_wait")
        .collect();
    assert_eq!(wait.len(), 1, "{all:#?}");
    assert_eq!(wait[0].parent_span_id, known_put.span_id);
    // Its open order was looked up, before and under the lock.
    let lookups = all
        .iter()
        .filter(|s| s.trace_id == known_put.trace_id && s.name == "store.get")
        .count();
    assert!(lookups >= 1, "{all:#?}");

    // The second request names its owner by a hash, never by the id.
    let get_span = all
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.name == "GET shorthand")
        .unwrap();
    let hash = attr(get_span, "ordergate.owner_hash").unwrap();
    assert_eq!(hash.len(), 16);
    for span in &all {
        for a in &span.attributes {
            let value = value_text(a.value.as_ref());
            assert!(
                !value.contains(&owner) && !value.contains(known),
                "{span:?}"
            );
        }
    }
}

#[tokio::test]
async fn without_otlp_the_client_trace_headers_pass_through() {
    let up = echo_upstream().await;
    let gl = listener().await;
    let text = config_text(gl.local_addr().unwrap(), up, "[store]\nkind = \"memory\"\n");
    let gw = Gateway::start(ordergate::config::Config::parse(&text).unwrap(), gl).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let seen = HttpClient::new(gw.base.clone())
        .get("/x", &[("traceparent", parent), ("tracestate", "a=b")])
        .await
        .json();
    assert_eq!(seen["headers"]["traceparent"], parent);
    assert_eq!(seen["headers"]["tracestate"], "a=b");
}

#[test]
fn otlp_settings_are_checked() {
    let key_of = |otlp: &str| {
        let text = config_text(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:1".parse().unwrap(),
            &format!("[telemetry.otlp]\n{otlp}"),
        );
        match ordergate::config::Config::parse(&text) {
            Ok(c) => format!("ok {}", c.telemetry.otlp.unwrap().traces_url),
            Err(e) => format!("{}: {}", e.key, e.reason),
        }
    };
    assert_eq!(
        key_of("endpoint = \"http://127.0.0.1:4318\"\n"),
        "ok http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        key_of("endpoint = \"http://c:4318/custom/traces\"\nprotocol = \"http/protobuf\"\n"),
        "ok http://c:4318/custom/traces"
    );
    let grpc = key_of("endpoint = \"http://c:4317\"\nprotocol = \"grpc\"\n");
    assert!(
        grpc.starts_with("telemetry.otlp.protocol: \"grpc\" is not built in"),
        "{grpc}"
    );
    assert!(key_of("endpoint = \"c:4318\"\n").starts_with("telemetry.otlp.endpoint"));
    assert!(key_of("endpoint = \"https://c:4318\"\n").starts_with("telemetry.otlp.endpoint"));
    assert!(
        key_of("endpoint = \"http://c:4318\"\nsampling_ratio = 1.5\n")
            .starts_with("telemetry.otlp.sampling_ratio")
    );
}
