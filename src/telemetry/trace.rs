//! OpenTelemetry traces, exported over OTLP (HTTP with protobuf bodies) in
//! batches, when `[telemetry.otlp]` is set.
//!
//! [`TraceLayer`] sits right after the request facts: it continues the client's
//! W3C `traceparent`/`tracestate` (or starts a trace), opens the request's
//! server span (route group, status, a hash of the owner id, request id) and
//! makes it the current OpenTelemetry context while the rest of the stack
//! works on the request. The phases below open child spans through the small
//! hooks here: [`upstream_call`] (which also writes the child's `traceparent`
//! into the upstream request), [`in_span`] (order creation, single-flight and
//! lease waits), [`TracedStore`] (every owner-store call) and [`event`]
//! (rate-limit decisions).
//!
//! With tracing off no span is made and no header is read: the layer's only
//! work is one `Option` check, and every hook first loads one process-wide
//! flag that stays false until some gateway in the process traces.

use crate::config::OtlpConfig;
use crate::owners::{OrderId, OwnerId, OwnerStore, StoreError};
use crate::telemetry::metrics::RouteGroup;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context as TaskContext, Poll, ready};
use tower::{Layer, Service};

/// True once any gateway in this process exports traces: the hooks check it
/// before they look for a current span.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP trace exporter: {0}")]
pub struct TraceError(String);

/// The exporter and the tracer of one running gateway.
#[derive(Clone, Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

/// The tracer of the gateway whose request is being served, carried in the
/// request's context so that the hooks below use the right one.
#[derive(Clone, Debug)]
struct GatewayTracer(SdkTracer);

impl Traces {
    /// Starts the batch exporter (it runs on a thread of its own, with a
    /// blocking HTTP client, so the runtime's threads never wait for the
    /// collector).
    pub async fn start(config: &OtlpConfig) -> Result<Self, TraceError> {
        let config = config.clone();
        let provider = tokio::task::spawn_blocking(move || {
            use opentelemetry_otlp::{Protocol, WithExportConfig};
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(config.traces_url.as_str())
                .with_timeout(config.timeout)
                .build()
                .map_err(|e| TraceError(e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .with_attribute(KeyValue::new("service.version", super::metrics::VERSION))
                .build();
            Ok::<_, TraceError>(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                        config.sampling_ratio,
                    ))))
                    .with_resource(resource)
                    .build(),
            )
        })
        .await
        .map_err(|e| TraceError(e.to_string()))??;
        let tracer = provider.tracer("ordergate");
        TRACING.store(true, Ordering::Relaxed);
        Ok(Self { provider, tracer })
    }

    /// Exports what is still buffered and stops the exporter.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
    }
}

/// Reads W3C headers from a request.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Writes W3C headers into a request.
struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            if value.is_empty() {
                self.0.remove(&name);
            } else {
                self.0.insert(name, value);
            }
        }
    }
}

/// The tracer and the current context, when a traced request is being
/// served on this thread.
fn current() -> Option<(Context, SdkTracer)> {
    if !TRACING.load(Ordering::Relaxed) {
        return None;
    }
    Context::map_current(|cx| {
        let tracer = cx.get::<GatewayTracer>()?.0.clone();
        Some((cx.clone(), tracer))
    })
}

/// Spawns `fut` as a task of its own that keeps the current request's
/// trace context (a plain spawn when no traced request is current).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        None => tokio::spawn(fut),
        Some((cx, _)) => tokio::spawn(fut.with_context(cx)),
    }
}

/// Runs `fut` as a span `name`, child of the current request's span; just
/// `fut` when no traced request is current.
pub fn in_span<F: Future>(name: &'static str, fut: F) -> InSpan<F> {
    match current() {
        None => InSpan::Plain { fut },
        Some((cx, tracer)) => {
            let span = tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .start_with_context(&tracer, &cx);
            InSpan::Traced {
                fut: fut.with_context(cx.with_span(span)),
            }
        }
    }
}

pin_project! {
    /// The future of [`in_span`]; the span ends when it is dropped.
    #[project = InSpanProj]
    pub enum InSpan<F> {
        Plain { #[pin] fut: F },
        Traced { #[pin] fut: opentelemetry::context::WithContext<F> },
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        match self.project() {
            InSpanProj::Plain { fut } => fut.poll(cx),
            InSpanProj::Traced { fut } => fut.poll(cx),
        }
    }
}

/// Adds an event with `attributes` to the current request's span.
pub fn event(name: &'static str, attributes: impl FnOnce() -> Vec<KeyValue>) {
    if let Some((cx, _)) = current() {
        cx.span().add_event(name, attributes());
    }
}

/// The span of one upstream exchange.
pub struct UpstreamCall(Context);

/// Opens the upstream call's span, child of the current request's, and puts
/// its `traceparent` (and the trace's `tracestate`) on the request in place
/// of the client's: the upstream sees the gateway's call as its parent.
/// `target` is the path and query the call goes to when it is not the URI's.
pub fn upstream_call<B>(req: &mut Request<B>, target: Option<&str>) -> Option<UpstreamCall> {
    let (cx, tracer) = current()?;
    let path = target.map_or(req.uri().path(), |t| t.split('?').next().unwrap_or(t));
    let span = tracer
        .span_builder("upstream")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", req.method().to_string()),
            KeyValue::new("url.path", path.to_owned()),
        ])
        .start_with_context(&tracer, &cx);
    let cx = cx.with_span(span);
    TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(req.headers_mut()));
    Some(UpstreamCall(cx))
}

impl UpstreamCall {
    /// Ends the span with the upstream's status, or the failure.
    pub fn end(self, outcome: Result<u16, &dyn std::fmt::Display>) {
        let span = self.0.span();
        match outcome {
            Ok(status) => {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
                if status >= 500 {
                    span.set_status(Status::error(""));
                }
            }
            Err(e) => {
                span.set_attribute(KeyValue::new("error.type", e.to_string()));
                span.set_status(Status::error(e.to_string()));
            }
        }
        span.end();
    }
}

/// Opens the request span: a child of the client's `traceparent` when it
/// sent one.
#[derive(Clone)]
pub struct TraceLayer {
    traces: Option<Traces>,
}

impl TraceLayer {
    /// `None`: tracing off, the layer passes requests on untouched.
    pub fn new(traces: Option<Traces>) -> Self {
        Self { traces }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> TraceService<S> {
        TraceService {
            inner,
            tracer: self.traces.as_ref().map(|t| t.tracer.clone()),
        }
    }
}

#[derive(Clone)]
pub struct TraceService<S> {
    inner: S,
    tracer: Option<SdkTracer>,
}

/// A non-reversible short form of an owner id, to follow one owner's
/// requests without exporting the id that authorises them.
fn owner_hash(owner: OwnerId) -> String {
    let digest = sha1_smol::Sha1::from(owner.as_u128().to_be_bytes())
        .digest()
        .to_string();
    digest[..16].to_owned()
}

impl<S, B> Service<Request<B>> for TraceService<S>
where
    S: Service<Request<B>, Response = Response<crate::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(tracer) = &self.tracer else {
            return TraceFuture::Plain {
                fut: self.inner.call(req),
            };
        };
        let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
        let facts = crate::context::Facts::of(&req);
        let route = RouteGroup::of(&facts.route);
        let mut attributes = vec![
            KeyValue::new("http.request.method", req.method().to_string()),
            KeyValue::new("url.path", req.uri().path().to_owned()),
            KeyValue::new("ordergate.route", format!("{route:?}")),
            KeyValue::new(
                "ordergate.request_id",
                crate::telemetry::RequestId::of(&req).to_owned(),
            ),
        ];
        if let Ok(Some(owner)) = facts.owner {
            attributes.push(KeyValue::new("ordergate.owner_hash", owner_hash(owner)));
        }
        let span = tracer
            .span_builder(format!("{} {route:?}", req.method()))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let cx = parent
            .with_span(span)
            .with_value(GatewayTracer(tracer.clone()));
        // Current during `call` too: layers decide there (rate limits).
        let fut = {
            let _current = cx.clone().attach();
            self.inner.call(req)
        };
        TraceFuture::Traced {
            fut: fut.with_context(cx.clone()),
            cx,
        }
    }
}

pin_project! {
    #[project = TraceFutureProj]
    pub enum TraceFuture<F> {
        Plain { #[pin] fut: F },
        Traced { #[pin] fut: opentelemetry::context::WithContext<F>, cx: Context },
    }
}

impl<F, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<crate::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<F::Output> {
        match self.project() {
            TraceFutureProj::Plain { fut } => fut.poll(task),
            TraceFutureProj::Traced { fut, cx } => {
                let out = ready!(fut.poll(task));
                let span = cx.span();
                if let Ok(resp) = &out {
                    let status = resp.status().as_u16();
                    span.set_attribute(KeyValue::new(
                        "http.response.status_code",
                        i64::from(status),
                    ));
                    if status >= 500 {
                        span.set_status(Status::error(""));
                    }
                }
                span.end();
                Poll::Ready(out)
            }
        }
    }
}

/// The owner store with a span around each call a request makes.
pub struct TracedStore(pub Arc<dyn OwnerStore>);

#[async_trait::async_trait]
impl OwnerStore for TracedStore {
    async fn get(&self, owner: OwnerId) -> Result<Option<crate::owners::Association>, StoreError> {
        in_span("store.get", self.0.get(owner)).await
    }

    async fn put(&self, owner: OwnerId, order: &OrderId, now_ms: u64) -> Result<(), StoreError> {
        in_span("store.put", self.0.put(owner, order, now_ms)).await
    }

    async fn owner_of(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        in_span("store.owner_of", self.0.owner_of(order)).await
    }

    async fn end_order(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        in_span("store.end_order", self.0.end_order(order)).await
    }

    async fn expire(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.0.expire(before_ms).await
    }

    async fn touch(
        &self,
        owner: OwnerId,
        order: &OrderId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        in_span("store.touch", self.0.touch(owner, order, now_ms)).await
    }

    async fn count(&self) -> Result<Option<u64>, StoreError> {
        self.0.count().await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.0.close().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.0.ping().await
    }

    fn fail_open_count(&self) -> u64 {
        self.0.fail_open_count()
    }
}
