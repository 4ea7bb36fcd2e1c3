//! The accept loops: HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge
//! over plain TCP) on every listener, a cap on open connections shared by
//! all listeners, and graceful shutdown that lets in-flight requests finish.
//!
//! HTTP/1.1 requests without a body are read and answered by the gateway's
//! own codec ([`h1`]); a request it does not serve hands the connection to
//! hyper, which serves the rest of it.
//!
//! Every slow client ends on time: the TLS handshake, the first byte, the
//! protocol, the HTTP/2 preface and SETTINGS, and the first request head
//! each have a deadline from the accept ([`prelude`]); later HTTP/1 heads
//! have the header read timeout (hyper's, once a connection is hyper's),
//! and so does the wait for them; a connection with nothing moving (HTTP/1)
//! or no request (HTTP/2, whose pings find dead peers) for the idle timeout
//! is closed, and so is a client of the own codec that takes nothing of its
//! answer for as long. Past `max_connections`, a new connection is answered with a
//! 503 fault and closed at once, so the accept loop never stalls.
//! Connections refused before a request reached the stack are counted in
//! `ordergate_connections_refused_total{reason}`. An HTTP/1.1 connection the
//! stack answers with 101 is handed on, upgraded, to whoever asked for it
//! (the upstream's tunnels); it then leaves the accept loop's count.

mod activity;
mod h1;
mod prelude;

pub use h1::{ClientHead, read_client_head};

use crate::body::Body;
use crate::config::ServerLimits;
use crate::context::{Facts, Peer};
use activity::Tracked;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderName, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prelude::{Protocol, Rewind, Rules, Start};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, TryAcquireError, watch};
use tokio::time::Instant;
use tower::{Service, ServiceExt};

/// A request's body as the listeners give it: none, for a request the
/// gateway's own HTTP/1.1 codec read ([`h1`]), or hyper's.
pub enum RequestBody {
    Empty,
    Hyper(Incoming),
}

impl http_body::Body for RequestBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut() {
            Self::Empty => std::task::Poll::Ready(None),
            Self::Hyper(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Empty => http_body::SizeHint::with_exact(0),
            Self::Hyper(body) => body.size_hint(),
        }
    }
}

/// What the listeners serve: a service over the requests they read, cloned
/// for every connection and shared by every accept loop.
pub trait GatewayService:
    Service<
        Request<RequestBody>,
        Response = Response<Body>,
        Error = Infallible,
        Future = <Self as GatewayService>::Future,
    > + Clone
    + Send
    + Sync
    + 'static
{
    type Future: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static;
}

impl<S> GatewayService for S
where
    S: Service<Request<RequestBody>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Future = S::Future;
}

/// A bound listener, plain or TLS.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<crate::config::tls::ListenerTls>,
}

/// Why a connection ended before a request of it reached the stack.
#[derive(
    Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue,
)]
#[allow(non_camel_case_types)]
pub enum Refusal {
    /// `server.max_connections` were open: answered 503 or closed.
    over_capacity,
    first_byte_timeout,
    tls_handshake_timeout,
    tls_handshake_failed,
    protocol_timeout,
    http2_handshake_timeout,
    /// No complete request head within `server.header_read_timeout_ms`.
    header_timeout,
    /// A request head hyper would refuse: answered 400 (or 414).
    malformed_head,
    /// A request head over hyper's hard limits: answered 431.
    head_too_large,
    /// A TLS ClientHello on a plain HTTP listener: answered 400.
    tls_on_plain_port,
}

/// The body of a fault the server writes itself: from its status, request
/// id and message (the stack's fault renderer, given by the caller).
pub type FaultBody = Arc<dyn Fn(StatusCode, &str, &str) -> Vec<u8> + Send + Sync>;

/// What the accept loops need besides the service.
pub struct Options {
    /// Time open connections get to finish their requests at shutdown.
    pub drain: Duration,
    pub limits: ServerLimits,
    /// For the faults written before a request reaches the stack.
    pub fault_body: FaultBody,
    pub request_id_header: HeaderName,
    /// Counts a connection refused before a request reached the stack.
    pub refused: Arc<dyn Fn(Refusal) + Send + Sync>,
    /// Open client connections, for the metrics.
    pub open: Gauge,
    /// The slots of `limits.max_connections`, one per open connection,
    /// shared by every accept loop of the process whichever runtime runs it:
    /// the cap is the process's.
    pub slots: Arc<Semaphore>,
    /// Counts this worker's accepted connections (`per_core` mode).
    pub accepted: Option<Counter>,
}

impl Options {
    /// The connection slots for `limits`: hand the same to every worker.
    pub fn slots(limits: &ServerLimits) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(limits.max_connections))
    }
}

/// One open client connection on the gauge while it lives.
struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Connections past the cap answered at once, at most; more are closed
/// without an answer.
const OVERFLOW_ANSWERS: usize = 256;
/// The over-capacity warning is logged at most this often.
const WARN_EVERY_MS: u64 = 10_000;

/// What every accept loop shares.
struct Shared<S> {
    service: S,
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    options: Options,
    slots: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    started: Instant,
    /// When the over-capacity warning may next be logged (ms after
    /// `started`), and the refusals since the last one.
    next_warning_ms: AtomicU64,
    refused_since_warning: AtomicU64,
}

impl<S> Shared<S> {
    fn limits(&self) -> &ServerLimits {
        &self.options.limits
    }

    /// A whole HTTP/1.1 answer carrying a fault, with a new request id,
    /// logged under that id.
    fn fault_answer(&self, status: StatusCode, message: &str, why: Refusal) -> Vec<u8> {
        let mut buf = uuid::Uuid::encode_buffer();
        let guid = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        let id = http::HeaderValue::from_str(guid).unwrap_or(http::HeaderValue::from_static("-"));
        tracing::debug!(request_id = guid, status = status.as_u16(), reason = ?why, "answered before the stack");
        let body = (self.options.fault_body)(status, guid, message);
        prelude::answer(
            status,
            &self.options.request_id_header,
            &id,
            &body,
            status == StatusCode::SERVICE_UNAVAILABLE,
        )
    }

    fn refused(&self, reason: Refusal) {
        (self.options.refused)(reason);
    }

    /// Answers a refused or late request head with a fault, counted, and
    /// closes the connection.
    async fn turn_away<I>(&self, io: &mut I, start: Start)
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let (status, message, reason) = match start {
            Start::Refused(refused) => (refused.status, refused.message, refused.reason),
            Start::Late(prelude::Phase::Head) => (
                StatusCode::REQUEST_TIMEOUT,
                "The request head did not arrive in time".to_owned(),
                Refusal::header_timeout,
            ),
            Start::Late(phase) => return self.refused(phase.refusal()),
            Start::Ready(..) | Start::Gone => return,
        };
        self.refused(reason);
        let answer = self.fault_answer(status, &message, reason);
        prelude::send_and_close(io, &answer).await;
    }

    /// A connection past the cap: a 503 fault and a close, off the accept
    /// loop; a warning now and then.
    fn over_capacity(&self, stream: TcpStream, tls: bool) {
        self.refused(Refusal::over_capacity);
        let refused = self.refused_since_warning.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_millis() as u64;
        let next = self.next_warning_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_warning_ms
                .compare_exchange(
                    next,
                    now + WARN_EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.refused_since_warning
                .fetch_sub(refused, Ordering::Relaxed);
            tracing::warn!(
                refused,
                max_connections = self.limits().max_connections,
                "connection limit reached: new connections are answered 503 and closed"
            );
        }
        // A TLS client cannot read an answer before its handshake.
        let permit = match Arc::clone(&self.overflow).try_acquire_owned() {
            Ok(permit) if !tls => permit,
            _ => return,
        };
        let answer = self.fault_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway has too many open connections; retry shortly",
            Refusal::over_capacity,
        );
        tokio::spawn(async move {
            let mut stream = stream;
            prelude::send_and_close(&mut stream, &answer).await;
            drop(permit);
        });
    }
}

/// Serves `service` on every listener until `shutdown` completes, then waits
/// up to `options.drain` for open connections to finish their requests.
pub async fn serve<S>(
    listeners: Vec<Listener>,
    service: S,
    shutdown: impl Future<Output = ()>,
    options: Options,
) where
    S: GatewayService,
{
    let limits = options.limits;
    // The configured head limits are enforced in the stack, which answers
    // with a fault (431); hyper's own, at twice those, only stop what would
    // not fit in memory. The prelude answers those of a connection's first
    // request with a fault too; later ones get hyper's bare 431.
    let hard_head = Rules::hard_head_bytes(&limits);
    // The prelude has told HTTP/1 from HTTP/2 already: each connection goes
    // straight to its protocol's connection, with no second detection.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(hard_head)
        .writev(false)
        // Not read while a request is in flight: a client may half-close
        // after its request, and the connection keeps no second read
        // buffer while the request's head still holds the first (3.6 KiB
        // less per connection at c1000). A client that is gone is seen
        // when its answer is written; requests that can make an order run
        // to their end regardless (orders service).
        .half_close(true)
        .max_headers(Rules::hard_headers(&limits));
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_head).unwrap_or(u32::MAX))
        .keep_alive_interval(limits.http2.keep_alive_interval)
        .keep_alive_timeout(limits.http2.keep_alive_timeout)
        .max_concurrent_streams(limits.http2.max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.http2.max_pending_reset_streams)
        .max_local_error_reset_streams(limits.http2.max_local_error_reset_streams);
    let (stop_tx, stop) = watch::channel(false);
    let drain = options.drain;
    let slots = Arc::clone(&options.slots);
    let shared = Arc::new(Shared {
        service,
        http1,
        http2,
        options,
        slots,
        overflow: Arc::new(Semaphore::new(OVERFLOW_ANSWERS)),
        stop,
        started: Instant::now(),
        next_warning_ms: AtomicU64::new(0),
        refused_since_warning: AtomicU64::new(0),
    });
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(accept_loop(l, Arc::clone(&shared))))
        .collect();
    shutdown.await;
    let _ = stop_tx.send(true);
    for l in loops {
        let _ = l.await;
    }
    // Every open connection holds a slot: all slots back means all closed
    // (in `per_core` mode, every worker's, which drain at the same time).
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = shared.slots.acquire_many(all) => {}
        () = tokio::time::sleep(drain) => tracing::warn!("drain time over; closing open connections"),
    }
}

async fn accept_loop<S>(listener: Listener, shared: Arc<Shared<S>>)
where
    S: GatewayService,
{
    let mut stop = shared.stop.clone();
    // One wait for the whole loop, not one made per connection.
    let stopping = stopped(&mut stop);
    tokio::pin!(stopping);
    let acceptor = listener
        .tls
        .map(|t| (tokio_rustls::TlsAcceptor::from(t.config), t.hsts));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut stopping => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let accepted = Instant::now();
        if let Some(counter) = &shared.options.accepted {
            counter.inc();
        }
        let slot = match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(TryAcquireError::NoPermits) => {
                shared.over_capacity(stream, acceptor.is_some());
                continue;
            }
            Err(TryAcquireError::Closed) => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        let open = Open::new(&shared.options.open);
        tokio::spawn(async move {
            let _open = open;
            match acceptor {
                // Boxed: the task stays small, so that spawning it moves a
                // few words, not the connection's whole state (a kilobyte
                // and more, moved several times on the way into the task).
                None => Box::pin(start(stream, peer, accepted, None, &shared)).await,
                // Boxed: TLS state would make every plain connection's task
                // larger too.
                Some((acceptor, hsts)) => {
                    Box::pin(handshake(acceptor, hsts, stream, peer, accepted, &shared)).await
                }
            }
            drop(slot);
        });
    }
}

/// The TLS handshake, by its deadline, then the connection.
async fn handshake<S>(
    acceptor: tokio_rustls::TlsAcceptor,
    hsts: HstsValue,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    accepted: Instant,
    shared: &Shared<S>,
) where
    S: GatewayService,
{
    let limits = shared.limits();
    let by = |d: Duration| accepted + d.min(limits.header_read_timeout);
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(by(limits.handshake.first_byte), stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return,
        Err(_) => return shared.refused(Refusal::first_byte_timeout),
    }
    match tokio::time::timeout_at(by(limits.handshake.tls), acceptor.accept(stream)).await {
        Ok(Ok(stream)) => start(stream, peer, accepted, Some(hsts), shared).await,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, %peer, "TLS handshake failed");
            shared.refused(Refusal::tls_handshake_failed);
        }
        Err(_) => shared.refused(Refusal::tls_handshake_timeout),
    }
}

/// Reads the start of a connection ([`prelude`]), then serves it, or
/// answers and closes it.
async fn start<I, S>(
    mut io: I,
    peer: std::net::SocketAddr,
    accepted: Instant,
    tls: Option<HstsValue>,
    shared: &Shared<S>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: GatewayService,
{
    // HTTP/1 heads are the own codec's to read first (it reads on with the
    // checks any head it cannot take).
    let rules = Rules::new(*shared.limits(), tls.is_none()).deferring();
    let mut stop = shared.stop.clone();
    // The start first: when it is in already (the common case), the
    // shutdown signal is not waited on at all.
    let start = tokio::select! {
        biased;
        start = prelude::read(&mut io, &rules, accepted) => start,
        () = stopped(&mut stop) => return,
    };
    match start {
        Start::Ready(protocol, read) => {
            let result = connection(io, read, protocol, peer, accepted, tls, shared).await;
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        not_ready => shared.turn_away(&mut io, not_ready).await,
    }
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The `Strict-Transport-Security` value of a TLS listener's answers, if
/// any; swapped on reload.
type HstsValue = Arc<arc_swap::ArcSwapOption<http::HeaderValue>>;

/// An event of a connection besides its traffic.
enum Control {
    /// The gateway is shutting down.
    Stop,
    /// Time to see whether the connection has been idle too long.
    IdleCheck,
    /// The deadline for an HTTP/2 client's first request head.
    FirstHead,
}

async fn idle_check(at: tokio::time::Instant) -> Control {
    tokio::time::sleep_until(at).await;
    Control::IdleCheck
}

/// A connection's own events. Each is polled only when it is woken (a
/// `FuturesUnordered` gives each its own waker): the connection wakes for
/// every read and write, and checking the shutdown signal and the timers
/// each time would cost more than a request's own routing.
type Controls = FuturesUnordered<Pin<Box<dyn Future<Output = Control> + Send>>>;

/// The events every connection waits for: the shutdown, and its first idle
/// check, `idle` from now.
fn controls<S>(shared: &Shared<S>, idle: Duration) -> Controls {
    let control = Controls::new();
    let mut stop = shared.stop.clone();
    control.push(Box::pin(async move {
        stopped(&mut stop).await;
        Control::Stop
    }));
    control.push(Box::pin(idle_check(tokio::time::Instant::now() + idle)));
    control
}

/// Serves one connection, whose first bytes `read` the prelude read, until
/// it ends: closed gracefully at shutdown or when it has been idle for the
/// idle timeout (a request in progress finishes first either way); closed at
/// once when an HTTP/2 client has sent no request head within the header
/// read timeout. HTTP/1.1 is served by the gateway's own codec ([`h1`])
/// until a request comes that it leaves to hyper. `tls` is set for a TLS
/// connection.
async fn connection<I, S>(
    io: I,
    read: bytes::BytesMut,
    protocol: Protocol,
    peer: std::net::SocketAddr,
    accepted: Instant,
    tls: Option<HstsValue>,
    shared: &Shared<S>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: GatewayService,
{
    let (io, activity) = Tracked::new(io);
    let (io, read) = match protocol {
        Protocol::Http1 => {
            let conn = h1::Conn {
                peer,
                accepted,
                tls: tls.as_ref(),
                activity: &activity,
            };
            match h1::serve(io, read, conn, shared).await {
                h1::End::Closed => return Ok(()),
                h1::End::HandOver(io, rest) => (io, rest),
            }
        }
        Protocol::Http2 => (io, read),
    };
    let io = Rewind::new(read, io);
    let svc = shared.service.clone();
    let requests = Arc::clone(&activity);
    let hyper_svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = requests.request();
        let mut req = req.map(RequestBody::Hyper);
        req.extensions_mut().insert(Facts::of_peer(Some(Peer {
            addr: peer,
            tls: tls.is_some(),
        })));
        let hsts = tls.as_ref().map(|hsts| hsts.load_full());
        let answer = svc.clone().oneshot(req);
        async move {
            let answer = answer.await;
            drop(in_flight);
            let mut resp = answer?;
            // Over TLS only: a browser ignores it on plain HTTP (RFC 6797 8.1).
            if let Some(Some(value)) = hsts {
                resp.headers_mut()
                    .insert(http::header::STRICT_TRANSPORT_SECURITY, (*value).clone());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(io);
    match protocol {
        Protocol::Http1 => {
            // An answer 101 hands the connection on, upgraded. Boxed: few
            // connections come this far, and every connection's task would
            // be as large.
            let conn = shared.http1.serve_connection(io, hyper_svc).with_upgrades();
            Box::pin(drive(conn, protocol, &activity, accepted, shared))
                .await
                .map_err(Into::into)
        }
        // Boxed: an HTTP/2 connection's state is twice an HTTP/1 one's, and
        // every connection's task would be as large (HTTP/1 is the common
        // case on plain listeners; one allocation per HTTP/2 connection).
        Protocol::Http2 => {
            let conn = shared.http2.serve_connection(io, hyper_svc);
            Box::pin(drive(conn, protocol, &activity, accepted, shared))
                .await
                .map_err(Into::into)
        }
    }
}

/// A served connection that can be closed gracefully: hyper-util's
/// `GracefulConnection`, which does not cover HTTP/1 connections that may
/// be upgraded.
trait Serving: Future<Output = Result<(), hyper::Error>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Serving for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> Serving for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// Drives a connection to its end, closing it at shutdown or when idle.
async fn drive<C, S>(
    conn: C,
    protocol: Protocol,
    activity: &activity::Activity,
    accepted: Instant,
    shared: &Shared<S>,
) -> Result<(), hyper::Error>
where
    C: Serving,
    S: GatewayService,
{
    tokio::pin!(conn);
    let limits = shared.limits();
    let idle = limits.idle_timeout;
    let mut control = controls(shared, idle);
    // An HTTP/1 connection's first head is whole already (the prelude read
    // it); an HTTP/2 client's first HEADERS must come by the same deadline.
    if protocol == Protocol::Http2 {
        let deadline = accepted + limits.header_read_timeout;
        control.push(Box::pin(async move {
            tokio::time::sleep_until(deadline).await;
            Control::FirstHead
        }));
    }
    let mut closing = false;
    loop {
        let event = tokio::select! {
            biased;
            result = conn.as_mut() => return result,
            Some(event) = control.next(), if !closing => event,
        };
        match event {
            Control::Stop => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            Control::FirstHead => {
                if activity.requests() == 0 {
                    shared.refused(Refusal::header_timeout);
                    return Ok(());
                }
            }
            Control::IdleCheck => {
                let quiet = match protocol {
                    Protocol::Http1 => activity.quiet_for(),
                    Protocol::Http2 => activity.no_request_for(),
                };
                if quiet >= idle {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                } else {
                    control.push(Box::pin(idle_check(
                        tokio::time::Instant::now() + (idle - quiet),
                    )));
                }
            }
        }
    }
}
