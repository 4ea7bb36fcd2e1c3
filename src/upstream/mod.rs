//! The upstream side: pooled connections, header hygiene, URL rewriting.
//!
//! [`Upstream::forward`] forwards a request to the configured upstream over a
//! kept-alive connection (from [`pool`] for plain HTTP/1.1, from hyper-util's
//! pooled client for TLS and HTTP/2), with hop-by-hop headers removed and the
//! `X-Forwarded-*` headers set ([`headers`]); it fails with an upstream
//! [`Error`] when the upstream cannot be reached (502) or is too slow (504),
//! and with the client's when the client's own body fails on the way (413,
//! 408, 400). [`Upstream::finish`] makes an upstream answer ready for the
//! client: hop-by-hop headers removed, `Location` and JSON bodies rewritten
//! to the public base URL ([`rewrite`]), streaming. [`Upstream::upgrade`]
//! sends an upgrade request and, when the upstream switches protocols,
//! joins the two connections in a tunnel ([`tunnel`]).
//!
//! It knows nothing of the server side or of the orders rules: what it needs
//! of a request, it reads from the request facts.

pub mod h1;
pub mod headers;
pub mod pool;
pub mod rewrite;
pub mod tunnel;

use crate::body::{self, Body, Coding, ReadError};
use crate::config::UpstreamConfig;
use crate::context::{Facts, Record};
use crate::faults::{self, Error};
use crate::telemetry::metrics::UpstreamFailure;
use bytes::Bytes;
use headers::{Outbound, is_json, strip_hop_by_hop};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use pool::{Pool, PoolError, PoolSettings, PooledBody};
use rewrite::{RewriteBody, Rewriter};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// An upstream answer, its body still to come.
pub type Answer = Response<AnswerBody>;

/// The body of an upstream answer, from whichever connection carried it,
/// with what the exchange holds until the body ends.
pub struct AnswerBody {
    from: Carrier,
    /// When the whole exchange must have ended.
    deadline: tokio::time::Instant,
    /// The slot of a capped upstream, held until the body has ended (or is
    /// dropped): until then the upstream connection is busy with it.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The connection an answer came on.
enum Carrier {
    Pooled(PooledBody),
    Shared(Incoming),
}

impl http_body::Body for AnswerBody {
    type Data = Bytes;
    type Error = body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, body::BoxError>>> {
        match &mut self.get_mut().from {
            Carrier::Pooled(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Carrier::Shared(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.from {
            Carrier::Pooled(b) => b.is_end_stream(),
            Carrier::Shared(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match &self.from {
            Carrier::Pooled(b) => b.size_hint(),
            Carrier::Shared(b) => b.size_hint(),
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

/// The upstream: where requests go and how its answers come back.
#[derive(Clone)]
pub struct Upstream {
    transport: Transport,
    /// `Host` for requests that come without one (HTTP/2 clients).
    host: HeaderValue,
    response_timeout: Duration,
    request_timeout: Duration,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// Slots for requests in flight to the upstream, when they are capped.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Whether upgrades can be tunnelled: not to an HTTP/2 upstream.
    tunnels: bool,
    /// A tunnel with nothing moving for this long is closed.
    tunnel_idle: Duration,
}

impl Upstream {
    pub fn new(u: &UpstreamConfig, metrics: Arc<crate::telemetry::metrics::Metrics>) -> Self {
        let plain = *u.url.scheme() == http::uri::Scheme::HTTP;
        let transport = if plain && !u.http2 {
            let authority = u.url.authority();
            Transport::Pool(Pool::new(
                authority.host(),
                authority.port_u16().unwrap_or(80),
                PoolSettings {
                    connect_timeout: u.connect_timeout,
                    attempt_timeout: u.connect_attempt_timeout,
                    keepalive: u.tcp_keepalive,
                    idle_timeout: u.pool_idle_timeout,
                    max_idle: u.pool_max_idle_per_host,
                    open: metrics.upstream_connections(),
                },
            ))
        } else {
            Transport::Shared(Box::new(SharedClient {
                client: shared_client(u),
                scheme: u.url.scheme().clone(),
                authority: u.url.authority().clone(),
            }))
        };
        Self {
            transport,
            host: HeaderValue::from_str(u.url.authority().as_str())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
            response_timeout: u.response_timeout,
            request_timeout: u.request_timeout,
            metrics,
            slots: u
                .max_connections
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            tunnels: !u.http2,
            tunnel_idle: DEFAULT_TUNNEL_IDLE,
        }
    }

    /// Takes its slots for requests in flight from `slots`, shared with
    /// other stacks (per-core workers), instead of its own: the cap of
    /// `upstream.max_connections` is then the process's.
    pub fn sharing_slots(mut self, slots: Option<Arc<tokio::sync::Semaphore>>) -> Self {
        if slots.is_some() {
            self.slots = slots;
        }
        self
    }

    /// Closes tunnels that have had nothing moving for `idle` (the server's
    /// idle timeout, as for a client connection between requests).
    pub fn with_tunnel_idle(mut self, idle: Duration) -> Self {
        self.tunnel_idle = idle;
        self
    }

    /// Whether upgrade requests can be tunnelled to this upstream.
    pub fn tunnels(&self) -> bool {
        self.tunnels
    }

    /// Sends the client's request to the upstream and reads the answer's
    /// head, which must come in time; the upstream time is added to the
    /// facts' record. `target` (path and query), when given, replaces the
    /// request's own: the pooled exchange writes it as the request target
    /// as it is, so that no URI is parsed and built for it; it must be made
    /// of checked parts (an order id, a path and a query the request's URI
    /// held). On the way the header fields are made ready for the upstream
    /// ([`Outbound`]): hop-by-hop ones dropped, `X-Forwarded-*` set. The
    /// request comes boxed: every call below holds it in its state.
    pub fn forward<'a>(
        &'a self,
        mut req: Box<Request<Body>>,
        target: Option<String>,
        facts: &'a Facts,
    ) -> impl Future<Output = Result<Answer, Error>> + Send + 'a {
        // Not an `async fn`: that would hold the request once more in every
        // call's state.
        let outbound = Outbound::new(req.headers(), req.uri().authority(), &self.host, facts);
        let (target, outbound) = match &self.transport {
            // The pooled exchange writes the head itself, in origin form.
            Transport::Pool(_) => {
                outbound.strip_named(req.headers_mut());
                (target, Some(outbound))
            }
            // hyper's client takes the URI, in absolute form, and the map.
            Transport::Shared(_) => {
                self.prepare(&mut req, target, outbound);
                (None, None)
            }
        };
        self.send_on(req, target, outbound, facts.record.as_ref(), false)
    }

    /// Readies a request for hyper's client: its target ([`Self::set_target`]),
    /// HTTP/1.1 whatever the client spoke, `outbound` applied to its map.
    fn prepare<B>(&self, req: &mut Request<B>, target: Option<String>, outbound: Outbound) {
        self.set_target(req, target);
        *req.version_mut() = http::Version::HTTP_11;
        outbound.apply(req.headers_mut());
    }

    /// Points the request at the upstream for hyper's client: the origin
    /// form for a connection of its own (an upgrade), the absolute form for
    /// the shared client; `path_and_query` replaces the client's when given.
    fn set_target<B>(&self, req: &mut Request<B>, path_and_query: Option<String>) {
        let absolute = match &self.transport {
            Transport::Shared(shared) => Some(shared),
            Transport::Pool(_) => None,
        };
        if path_and_query.is_none() && absolute.is_none() && req.uri().scheme().is_none() {
            if req.uri().path_and_query().is_none() {
                *req.uri_mut() = Uri::from_static("/");
            }
            return;
        }
        let pq = match path_and_query {
            // The text becomes the URI's own bytes, not a copy.
            Some(pq) => http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::from(pq)).ok(),
            None => req.uri().path_and_query().cloned(),
        };
        let mut parts = http::uri::Parts::default();
        if let Some(shared) = absolute {
            parts.scheme = Some(shared.scheme.clone());
            parts.authority = Some(shared.authority.clone());
        }
        parts.path_and_query = pq.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }

    /// Sends an upgrade request asking for `protocols` ([`tunnel::asked`])
    /// and, when the upstream answers 101, answers the client with its 101
    /// and joins the two connections in a tunnel of their own. Any other
    /// answer is made ready for the client as usual ([`Self::finish`]).
    pub async fn upgrade(
        &self,
        mut req: Box<Request<Body>>,
        protocols: HeaderValue,
        facts: &Facts,
        rewriter: &Arc<Rewriter>,
    ) -> Result<Response<Body>, Error> {
        let client = hyper::upgrade::on(&mut *req);
        // The upgrade fields are set after the hop-by-hop ones are dropped.
        let outbound = Outbound::new(req.headers(), req.uri().authority(), &self.host, facts);
        self.prepare(&mut req, None, outbound);
        tunnel::set_upgrade_headers(req.headers_mut(), protocols);
        let mut resp = self
            .send_on(req, None, None, facts.record.as_ref(), true)
            .await?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            return self.finish(resp, rewriter);
        }
        let upstream = hyper::upgrade::on(&mut resp);
        // The exchange's slot and deadline go with its (empty) body.
        let (mut parts, _) = resp.into_parts();
        let Some(protocol) = parts.headers.get(header::UPGRADE).cloned() else {
            return Err(Error::upstream(faults::Upstream::BadAnswer)
                .because("101 Switching Protocols without an Upgrade header"));
        };
        finish_headers(&mut parts.headers, rewriter);
        tunnel::set_upgrade_headers(&mut parts.headers, protocol);
        tokio::spawn(tunnel::join(
            client,
            upstream,
            self.tunnel_idle,
            Arc::clone(&self.metrics),
        ));
        Ok(Response::from_parts(parts, body::empty()))
    }

    /// Sends a prepared request, an upgrade on a connection of its own.
    /// `target`, when given, is written as the request target in place of
    /// the URI's, and `outbound` as the head is written (pooled connections
    /// only: [`Self::forward`]).
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    fn send_on<'a>(
        &'a self,
        mut req: Box<Request<Body>>,
        target: Option<String>,
        outbound: Option<Outbound>,
        record: Option<&'a Record>,
        upgrade: bool,
    ) -> impl Future<Output = Result<Answer, Error>> + Send + 'a {
        async move {
            let call = crate::telemetry::trace::upstream_call(&mut req, target.as_deref());
            let started = tokio::time::Instant::now();
            let exchange = async {
                let slot = match &self.slots {
                    Some(slots) => Some(Arc::clone(slots).acquire_owned().await.map_err(|_| {
                        Error::gateway(faults::Gateway::Unavailable, "The gateway is shutting down")
                    })?),
                    None => None,
                };
                let resp = match &self.transport {
                    // Boxed: the upgrade's state would make every call's larger.
                    Transport::Pool(pool) if upgrade => Box::pin(pool.send_upgrade(*req))
                        .await
                        .map_err(classify_pool_error)?
                        .map(Carrier::Shared),
                    Transport::Pool(pool) => pool
                        .send(req, target.as_deref(), outbound.as_ref())
                        .await
                        .map_err(classify_pool_error)?
                        .map(Carrier::Pooled),
                    Transport::Shared(shared) => shared
                        .client
                        .request(*req)
                        .await
                        .map_err(classify_client_error)?
                        .map(Carrier::Shared),
                };
                let deadline = started + self.request_timeout;
                Ok(resp.map(|from| AnswerBody {
                    from,
                    deadline,
                    _slot: slot,
                }))
            };
            let out = match tokio::time::timeout(self.response_timeout, exchange).await {
                Err(_) => Err(Error::upstream(faults::Upstream::Timeout)),
                Ok(out) => out,
            };
            let elapsed = started.elapsed();
            match out.as_ref().map_err(|e| e.source) {
                Ok(_) => self.metrics.upstream_answered(elapsed, None),
                Err(faults::Source::Upstream(kind)) => {
                    let failure = match kind {
                        faults::Upstream::Unreachable => UpstreamFailure::connect,
                        faults::Upstream::Timeout => UpstreamFailure::timeout,
                        faults::Upstream::Broken => UpstreamFailure::protocol,
                        faults::Upstream::BadAnswer => UpstreamFailure::bad_answer,
                    };
                    self.metrics.upstream_answered(elapsed, Some(failure));
                }
                // The client's own body failed, or the gateway: not the upstream.
                Err(_) => {}
            }
            if let Some(record) = record {
                record.add_upstream(elapsed);
                if let Ok(resp) = &out {
                    record.set_upstream_status(resp.status());
                }
            }
            if let Some(call) = call {
                call.end(match &out {
                    Ok(resp) => Ok(resp.status().as_u16()),
                    Err(e) => Err(e),
                });
            }
            out
        }
    }

    /// Makes an upstream answer ready for the client, rewriting with
    /// `rewriter` (the base one unless the answer came through the shorthand).
    /// A body the upstream compressed although asked not to is decoded as it
    /// streams (the edge compresses for clients that accept it); one in a
    /// coding the gateway cannot decode is a 502, never passed on unread.
    pub fn finish(&self, resp: Answer, rewriter: &Arc<Rewriter>) -> Result<Response<Body>, Error> {
        let (mut parts, body) = resp.into_parts();
        let coding = Coding::of(&parts.headers).map_err(|c| {
            Error::upstream(faults::Upstream::BadAnswer).because(format!("content coding `{c}`"))
        })?;
        finish_headers(&mut parts.headers, rewriter);
        // The whole exchange must end in time; past the deadline the body
        // breaks off and the client's connection (or stream) is closed.
        let deadline = body.deadline;
        let mut body = body::boxed(body::Deadline::new(body, deadline));
        if coding != Coding::Identity {
            body = body::decoded(body, coding);
            parts.headers.remove(header::CONTENT_ENCODING);
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if is_json(&parts.headers) && !rewriter.is_empty() {
            // The length changes with the rewriting; the body goes chunked.
            parts.headers.remove(header::CONTENT_LENGTH);
            return Ok(Response::from_parts(
                parts,
                body::boxed(RewriteBody::new(body, Arc::clone(rewriter))),
            ));
        }
        Ok(Response::from_parts(parts, body))
    }

    /// Reads a whole upstream body the gateway must look into, decoded, up
    /// to `cap` bytes, in the time the exchange has left. The answer's
    /// `Content-Encoding` goes (the bytes are decoded); its framing fields
    /// are the caller's: hop-by-hop ones go with [`finish_headers`], and
    /// `Content-Length` is replaced with the length of what it answers with.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    pub fn read_body(
        &self,
        resp: Answer,
        cap: usize,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), Error>> + Send + '_ {
        async move {
            let (mut parts, body) = resp.into_parts();
            let coding = Coding::of(&parts.headers).map_err(|c| {
                Error::upstream(faults::Upstream::BadAnswer)
                    .because(format!("content coding `{c}`"))
            })?;
            let deadline = body.deadline;
            let read = tokio::time::timeout_at(deadline, body::read_decoded(body, coding, cap));
            let bytes = match read.await {
                Err(_) => return Err(Error::upstream(faults::Upstream::Timeout)),
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e @ ReadError::TooLarge(_))) => {
                    return Err(Error::upstream(faults::Upstream::BadAnswer).because(e));
                }
                Ok(Err(e)) => return Err(Error::upstream(faults::Upstream::Broken).because(e)),
            };
            // The body is decoded and whole: its new framing is the caller's
            // to set (`Content-Length` of what it answers with).
            if coding != Coding::Identity {
                parts.headers.remove(header::CONTENT_ENCODING);
            }
            Ok((parts, bytes))
        }
    }
}

/// Idle time of tunnels unless [`Upstream::with_tunnel_idle`] says
/// otherwise.
const DEFAULT_TUNNEL_IDLE: Duration = Duration::from_secs(60);

/// How long an IPv6 attempt runs before an IPv4 one starts beside it
/// (RFC 8305 suggests 250 ms; hyper-util's default is 300 ms).
const HAPPY_EYEBALLS: Duration = Duration::from_millis(300);

/// hyper-util's pooled client, over TLS when the upstream is `https://`.
fn shared_client(u: &crate::config::UpstreamConfig) -> Client<HttpsConnector<HttpConnector>, Body> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    // hyper-util shares the connect time evenly among the name's addresses
    // (so each gets its turn), and races IPv4 against IPv6 (Happy Eyeballs)
    // once the IPv6 attempt has run for a while.
    http.set_connect_timeout(Some(u.connect_timeout));
    http.set_happy_eyeballs_timeout(Some(u.connect_attempt_timeout.min(HAPPY_EYEBALLS)));
    http.set_keepalive(u.tcp_keepalive);
    if let Some(idle) = u.tcp_keepalive {
        http.set_keepalive_interval(Some(idle));
    }
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

fn classify_pool_error(e: PoolError) -> Error {
    match e {
        PoolError::Connect { .. } => Error::upstream(faults::Upstream::Unreachable).because(e),
        PoolError::Exchange(h1::Error::RequestBody(e)) => {
            Error::from_client_body(&*e).unwrap_or_else(|| Error::body_broken().because(e))
        }
        PoolError::Exchange(e) => Error::upstream(faults::Upstream::Broken).because(e),
        PoolError::Http(e) => Error::from_client_body(&e)
            .unwrap_or_else(|| Error::upstream(faults::Upstream::Broken).because(e)),
    }
}

fn classify_client_error(e: hyper_util::client::legacy::Error) -> Error {
    if let Some(client) = Error::from_client_body(&e) {
        return client;
    }
    let kind = if e.is_connect() {
        faults::Upstream::Unreachable
    } else {
        faults::Upstream::Broken
    };
    Error::upstream(kind).because(e)
}
