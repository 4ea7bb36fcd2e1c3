//! The upstream side: pooled connections, header hygiene, URL rewriting.
//!
//! [`Upstream::send`] forwards a request to the configured upstream over a
//! kept-alive connection (from [`pool`] for plain HTTP/1.1, from hyper-util's
//! pooled client for TLS and HTTP/2), with hop-by-hop headers removed and the
//! `X-Forwarded-*` headers set; it answers with [`UpstreamError`] when the
//! upstream cannot be reached (502) or is too slow (504). [`Upstream::finish`]
//! makes an upstream answer ready for the client: hop-by-hop headers removed,
//! `Location` and JSON bodies rewritten to the public base URL, streaming.

pub mod pool;
pub mod rewrite;
pub mod tls;

use crate::body::{self, Body};
use crate::config::{BaseUrl, Config};
use crate::faults::UpstreamError;
use crate::memo::Memo;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pool::{Pool, PoolError, PoolSettings, PooledBody};
use rewrite::{RewriteBody, Rewriter};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Most orders whose shorthand rewriter is kept.
pub const SHORTHAND_REWRITERS: usize = 4096;

/// The client's address, put in the request's extensions by the server.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present; most messages have
    // none, or only `Connection: keep-alive`.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // Headers named by Connection are hop-by-hop too; its usual options
    // (`keep-alive`, `close`) name nothing else.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.eq_ignore_ascii_case("keep-alive") && !n.eq_ignore_ascii_case("close"))
        .filter_map(|n| HeaderName::try_from(n).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(*name);
        }
    }
}

/// An upstream answer, its body still to come.
pub type Answer = Response<AnswerBody>;

/// The body of an upstream answer, from whichever connection carried it.
pub enum AnswerBody {
    Pooled(PooledBody),
    Shared(Incoming),
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            AnswerBody::Pooled(b) => Pin::new(b).poll_frame(cx),
            AnswerBody::Shared(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnswerBody::Pooled(b) => b.is_end_stream(),
            AnswerBody::Shared(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            AnswerBody::Pooled(b) => b.size_hint(),
            AnswerBody::Shared(b) => b.size_hint(),
        }
    }
}

/// How requests reach the upstream.
#[derive(Clone)]
enum Transport {
    /// Plain HTTP/1.1: connections driven by the requests' own tasks.
    Pool(Arc<Pool>),
    /// TLS or HTTP/2: hyper-util's pooled client, whose connections run as
    /// tasks of their own (HTTP/2 shares one among many requests).
    Shared(Box<SharedClient>),
}

/// hyper-util's client, and the upstream's scheme and authority that its
/// requests carry in absolute form.
#[derive(Clone)]
struct SharedClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

/// When the upstream's answer must have ended, kept in its extensions.
#[derive(Clone, Copy, Debug)]
struct AnswerDeadline(tokio::time::Instant);

/// The upstream: where requests go and how its answers come back.
#[derive(Clone)]
pub struct Upstream {
    transport: Transport,
    /// `Host` for requests that come without one (HTTP/2 clients).
    host: HeaderValue,
    response_timeout: Duration,
    request_timeout: Duration,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    trusted_proxies: Arc<[IpAddr]>,
    /// Every internal base → the public base.
    rewriter: Arc<Rewriter>,
    internal_bases: Arc<[String]>,
    public_base: Arc<str>,
    max_json_body: usize,
    shorthand_rewriters: Arc<Memo<Arc<str>, Arc<Rewriter>>>,
    /// Slots for requests in flight to the upstream, when they are capped.
    slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// A slot for a request in flight to the upstream, held by its answer until
/// the answer's head is sent on: by then the upstream connection is, for
/// most answers, back in the pool.
#[derive(Clone)]
struct UpstreamSlot(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

impl Upstream {
    pub fn new(config: &Config, metrics: Arc<crate::telemetry::metrics::Metrics>) -> Self {
        let u = &config.upstream;
        let plain = *u.url.scheme() == http::uri::Scheme::HTTP;
        let transport = if plain && !u.http2 {
            let authority = u.url.authority();
            Transport::Pool(Pool::new(
                authority.host(),
                authority.port_u16().unwrap_or(80),
                PoolSettings {
                    connect_timeout: u.connect_timeout,
                    idle_timeout: u.pool_idle_timeout,
                    max_idle: u.pool_max_idle_per_host,
                    open: metrics.upstream_connections_counter(),
                },
            ))
        } else {
            Transport::Shared(Box::new(SharedClient {
                client: shared_client(u),
                scheme: u.url.scheme().clone(),
                authority: u.url.authority().clone(),
            }))
        };
        let public = config.server.public_base_url.as_str().to_owned();
        let internal: Vec<String> = std::iter::once(&u.url)
            .chain(&u.rewrite_bases)
            .map(|b: &BaseUrl| b.as_str().to_owned())
            .collect();
        let rewriter = Rewriter::new(internal.iter().map(|b| (b.clone(), public.clone())));
        Self {
            transport,
            host: HeaderValue::from_str(u.url.authority().as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            response_timeout: u.response_timeout,
            request_timeout: u.request_timeout,
            metrics,
            trusted_proxies: config.server.trusted_proxies.clone().into(),
            rewriter: Arc::new(rewriter),
            internal_bases: internal.into(),
            public_base: public.into(),
            max_json_body: u.max_json_body,
            shorthand_rewriters: Arc::new(Memo::new(SHORTHAND_REWRITERS)),
            slots: u
                .max_connections
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
        }
    }

    pub fn metrics(&self) -> &crate::telemetry::metrics::Metrics {
        &self.metrics
    }

    pub fn public_base(&self) -> &str {
        &self.public_base
    }

    pub fn rewriter(&self) -> &Arc<Rewriter> {
        &self.rewriter
    }

    pub fn max_json_body(&self) -> usize {
        self.max_json_body
    }

    /// The rewriter for answers through the shorthand about `order`, made once
    /// per order and kept (up to [`SHORTHAND_REWRITERS`] orders): an owner
    /// reads its open order through `/order` again and again.
    pub fn shorthand_rewriter(&self, order: &str) -> Arc<Rewriter> {
        if let Some(r) = self.shorthand_rewriters.get(order) {
            return r;
        }
        let made = Arc::new(self.make_shorthand_rewriter(order));
        self.shorthand_rewriters
            .insert(order.into(), Arc::clone(&made));
        made
    }

    /// A rewriter for answers through the shorthand: the order's explicit URL
    /// (absolute on any base, or relative) becomes `/order`.
    fn make_shorthand_rewriter(&self, order: &str) -> Rewriter {
        let public = &*self.public_base;
        let short = format!("{public}/order");
        let extra = self
            .internal_bases
            .iter()
            .map(|b| b.as_str())
            .chain([public])
            .map(|b| (format!("{b}/orders/{order}"), short.clone()))
            .chain([(format!("/orders/{order}"), "/order".to_owned())]);
        self.rewriter.with(extra)
    }

    /// The path of an absolute or relative URL if it is on the upstream's own
    /// base (or any internal or the public base), else `None`.
    pub fn own_path<'a>(&self, url: &'a str) -> Option<&'a str> {
        if url.starts_with('/') {
            return Some(url);
        }
        self.internal_bases
            .iter()
            .map(|b| b.as_str())
            .chain([&*self.public_base])
            .find_map(|b| {
                url.strip_prefix(b)
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }

    /// Prepares the client's request for the upstream: target URI on the
    /// upstream, `path_and_query` replacing the client's when given, hop-by-hop
    /// headers removed, `X-Forwarded-*` set.
    pub fn prepare<B>(&self, req: &mut Request<B>, path_and_query: Option<&str>) {
        // The host the client asked for: its `Host`, or (HTTP/2) the URI's
        // authority, which the upstream's replaces below.
        let client_host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let pq = match path_and_query {
            Some(pq) => http::uri::PathAndQuery::try_from(pq).ok(),
            None => req.uri().path_and_query().cloned(),
        };
        let mut parts = http::uri::Parts::default();
        // hyper-util's client takes the absolute form; the pool writes the
        // request target as given: the origin form.
        if let Transport::Shared(shared) = &self.transport {
            parts.scheme = Some(shared.scheme.clone());
            parts.authority = Some(shared.authority.clone());
        }
        parts.path_and_query = pq.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        // The upstream speaks HTTP/1.1 whatever the client spoke.
        *req.version_mut() = http::Version::HTTP_11;
        let peer = req.extensions().get::<ClientAddr>().map(|a| a.0.ip());
        let tls = req.extensions().get::<crate::server::Tls>().is_some();
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, self.host.clone());
        }
        let trusted = peer.is_some_and(|p| self.trusted_proxies.contains(&p));
        if !trusted {
            headers.remove(&X_FORWARDED_PROTO);
            headers.remove(&X_FORWARDED_HOST);
        }
        if let Some(peer) = peer {
            let value = match headers
                .get(&X_FORWARDED_FOR)
                .filter(|_| trusted)
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => HeaderValue::from_str(&format!("{prior}, {peer}")),
                None => ip_header_value(peer),
            };
            if let Ok(v) = value {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        } else if !trusted {
            headers.remove(&X_FORWARDED_FOR);
        }
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            let proto = if tls { "https" } else { "http" };
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        }
        if !headers.contains_key(&X_FORWARDED_HOST)
            && let Some(host) = client_host
        {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    }

    /// Sends a prepared request; the answer's headers must come in time.
    pub async fn send(&self, mut req: Request<Body>) -> Result<Answer, UpstreamError> {
        let call = crate::telemetry::trace::upstream_call(&mut req);
        let record = req
            .extensions()
            .get::<crate::telemetry::access_log::Record>()
            .cloned();
        let started = tokio::time::Instant::now();
        let exchange = async {
            let slot = match &self.slots {
                Some(slots) => Some(Arc::clone(slots).acquire_owned().await.map_err(|_| {
                    UpstreamError::Connect("the gateway is shutting down".to_owned())
                })?),
                None => None,
            };
            let mut resp = match &self.transport {
                Transport::Pool(pool) => pool
                    .send(req)
                    .await
                    .map_err(|e| classify_pool_error(&e))?
                    .map(AnswerBody::Pooled),
                Transport::Shared(shared) => shared
                    .client
                    .request(req)
                    .await
                    .map_err(|e| classify_client_error(&e))?
                    .map(AnswerBody::Shared),
            };
            resp.extensions_mut()
                .insert(AnswerDeadline(started + self.request_timeout));
            if let Some(slot) = slot {
                resp.extensions_mut().insert(UpstreamSlot(Arc::new(slot)));
            }
            Ok(resp)
        };
        let out = match tokio::time::timeout(self.response_timeout, exchange).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(out) => out,
        };
        let elapsed = started.elapsed();
        self.metrics.upstream_answered(elapsed, out.as_ref().err());
        if let Some(call) = call {
            call.end(match &out {
                Ok(resp) => Ok(resp.status().as_u16()),
                Err(e) => Err(e),
            });
        }
        if let Some(record) = record {
            record.add_upstream(elapsed);
        }
        out
    }

    /// Makes an upstream answer ready for the client, rewriting with
    /// `rewriter` (the base one unless the answer came through the shorthand).
    pub fn finish(&self, resp: Answer, rewriter: &Arc<Rewriter>) -> Response<Body> {
        let (mut parts, body) = resp.into_parts();
        finish_headers(&mut parts.headers, rewriter);
        // The whole exchange must end in time; past the deadline the body
        // breaks off and the client's connection (or stream) is closed.
        let body = match parts.extensions.remove::<AnswerDeadline>() {
            Some(AnswerDeadline(deadline)) => body::boxed(body::Deadline::new(body, deadline)),
            None => body::boxed(body),
        };
        if is_json(&parts.headers) && !rewriter.is_empty() {
            // The length changes with the rewriting; the body goes chunked.
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(
                parts,
                body::boxed(RewriteBody::new(body, Arc::clone(rewriter))),
            );
        }
        Response::from_parts(parts, body::boxed(body))
    }

    /// Reads a whole upstream body, up to the JSON cap, in the time left.
    /// `extensions` are the answer's own, where its deadline is kept.
    pub async fn read_body(
        &self,
        body: AnswerBody,
        extensions: &http::Extensions,
    ) -> Result<Bytes, UpstreamError> {
        let deadline = extensions.get::<AnswerDeadline>().map_or_else(
            || tokio::time::Instant::now() + self.request_timeout,
            |d| d.0,
        );
        match tokio::time::timeout_at(deadline, body::read_capped(body, self.max_json_body)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(read) => read.map_err(|e| UpstreamError::BadAnswer(e.to_string())),
        }
    }
}

/// hyper-util's pooled client, over TLS when the upstream is `https://`.
fn shared_client(u: &crate::config::UpstreamConfig) -> Client<HttpsConnector<HttpConnector>, Body> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(u.connect_timeout));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*u.tls).clone())
        .https_or_http();
    let connector = if u.http2 {
        https.enable_all_versions().wrap_connector(http)
    } else {
        https.enable_http1().wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(u.pool_idle_timeout)
        .pool_max_idle_per_host(u.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // Plain HTTP/2 has no negotiation: prior knowledge.
        .http2_only(u.http2 && *u.url.scheme() == http::uri::Scheme::HTTP)
        .build(connector)
}

/// Readies upstream answer headers for the client: hop-by-hop headers
/// removed, `Location` rewritten.
pub fn finish_headers(headers: &mut HeaderMap, rewriter: &Rewriter) {
    strip_hop_by_hop(headers);
    if let Some(loc) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
        && let Some(new) = rewriter
            .rewrite(loc)
            .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        headers.insert(header::LOCATION, new);
    }
}

/// An IP address as a header value; IPv4, the common case on every request,
/// without the formatting machinery.
fn ip_header_value(ip: IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string());
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&buf[..len])
}

pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json")
        })
}

/// Whether an error came from the client's own request body (over the size
/// limit, or stalled) rather than from the upstream.
pub fn client_body_error(e: &(dyn std::error::Error + 'static)) -> Option<UpstreamError> {
    if caused_by::<body::TooLarge>(e) {
        Some(UpstreamError::ClientBodyTooLarge)
    } else if caused_by::<body::BodyTimeout>(e) {
        Some(UpstreamError::ClientBodyTimeout)
    } else {
        None
    }
}

fn classify_pool_error(e: &PoolError) -> UpstreamError {
    match e {
        PoolError::Connect { .. } => UpstreamError::Connect(e.to_string()),
        PoolError::Http(e) => {
            client_body_error(e).unwrap_or_else(|| UpstreamError::Protocol(error_chain(e)))
        }
    }
}

fn classify_client_error(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    if let Some(client) = client_body_error(e) {
        return client;
    }
    let msg = error_chain(e);
    if e.is_connect() {
        UpstreamError::Connect(msg)
    } else {
        UpstreamError::Protocol(msg)
    }
}

/// An error and its sources, joined, for logs and fault details.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Whether `e` (or one of its sources) is of type `T`.
pub fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn ip_header_values() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.99.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        for (ct, json) in [
            ("application/json; charset=UTF-8", true),
            ("Application/JSON", true),
            ("application/hal+json", true),
            ("text/html", false),
            ("json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_json(&h), json, "{ct}");
        }
    }
}
