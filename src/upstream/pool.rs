//! Keep-alive HTTP/1.1 connections to a plain `http://` upstream, each driven
//! by the task of the request that uses it ([`h1`]).
//!
//! A pooled client that runs every connection as a task of its own hands each
//! request and each answer across tasks and channels, with wake-ups on both
//! sides. Here a request takes an idle connection (or opens one) and its own
//! task drives that connection: while the answer's head is awaited, and then
//! from the answer body's `poll_frame`. Once the body has ended and the
//! connection can carry another request, it goes back to the pool.
//!
//! Nobody polls an idle connection while it waits. When it is taken, its
//! socket is asked (without a system call unless the kernel said something
//! came) whether the upstream closed it or sent anything meanwhile; such a
//! connection is dropped and the next one taken. A request that fails on a
//! kept connection before any answer came goes out again on another one
//! when nothing of it was sent, or when it has no body and an idempotent
//! method (the connection turned out closed); any other is never retried.
//!
//! Every address the upstream's name resolves to is tried in turn, each for
//! at most the attempt timeout (all within the connect timeout), so one
//! that does not answer leaves time for the next. Sockets have TCP
//! keepalive, so a connection the network dropped is noticed even while it
//! waits in the pool. An upgrade request gets a connection of its own
//! ([`Pool::send_upgrade`]), never pooled.

use super::h1::{self, BodyReader, Connection};
use super::headers::Outbound;
use crate::body::Body;
use crate::clock::coarse_ms;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long the pool may keep idle connections, and how many.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    /// Time each address gets, within `connect_timeout`.
    pub attempt_timeout: Duration,
    /// Idle time before keepalive probes; `None`: none.
    pub keepalive: Option<Duration>,
    pub idle_timeout: Duration,
    pub max_idle: usize,
    /// Where the open connections are counted, for the metrics.
    pub open: prometheus_client::metrics::gauge::Gauge,
}

/// One open connection on the gauge while it lives.
struct Live(prometheus_client::metrics::gauge::Gauge);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Why a request could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to the upstream {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The exchange failed on an open connection (or the request's own body
    /// failed while it was sent).
    #[error(transparent)]
    Exchange(#[from] h1::Error),
    /// An upgrade exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The idle connections to one upstream.
pub struct Pool {
    host: String,
    port: u16,
    settings: PoolSettings,
    /// Newest last: taken from the end, expired ones leave from the front.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Conn,
    /// When it went idle ([`coarse_ms`]: stamped on every request).
    since_ms: u64,
}

impl Idle {
    fn expired(&self, now_ms: u64, idle_timeout: Duration) -> bool {
        Duration::from_millis(now_ms.saturating_sub(self.since_ms)) >= idle_timeout
    }
}

/// One connection, counted while it lives.
struct Conn {
    h1: Connection,
    _live: Live,
}

impl Pool {
    /// A pool for the upstream at `host` (a name or an IP address, IPv6 in
    /// brackets or not) and `port`. Idle connections past their time are
    /// dropped by a sweeper task while the pool lives, when made in a runtime.
    pub fn new(host: &str, port: u16, settings: PoolSettings) -> Arc<Self> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let pool = Arc::new(Self {
            host,
            port,
            settings,
            idle: Mutex::new(Vec::new()),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&pool)));
        }
        pool
    }

    /// Sends `req` (its URI in origin form) and answers with the head of the
    /// upstream's answer; reading its body reads the connection. The request
    /// comes boxed: each future it passes through holds a pointer, not the
    /// request's 240 bytes, and moves no more.
    /// `target`, when given, is the request target in place of the URI's;
    /// `outbound`, what becomes of the header fields on the way.
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    pub fn send<'a>(
        self: &'a Arc<Self>,
        mut req: Box<Request<Body>>,
        target: Option<&'a str>,
        outbound: Option<&'a Outbound>,
    ) -> impl Future<Output = Result<Response<PooledBody>, PoolError>> + Send + 'a {
        async move {
            loop {
                let (mut conn, reused) = match self.checkout() {
                    Some(conn) => (conn, true),
                    // Boxed: rare, and its state would make every request's
                    // future larger.
                    None => (Box::pin(self.connect()).await?, false),
                };
                // Pinned where it is made: awaited as a value, the exchange's
                // state would be copied once more.
                let sent = std::pin::pin!(conn.h1.send_to(req, target, outbound)).await;
                match sent {
                    Ok(head) => {
                        return Ok(Response::from_parts(
                            head.parts,
                            PooledBody {
                                reader: head.body,
                                conn: Some(conn),
                                pool: Arc::clone(self),
                                handed_on: false,
                                failed: None,
                            },
                        ));
                    }
                    // Nothing sent: a kept connection the upstream had closed.
                    Err((_, Some(unsent))) if reused => req = unsent,
                    Err((e, _)) => return Err(PoolError::Exchange(e)),
                }
            }
        }
    }

    /// The newest idle connection still in its time, if any.
    fn checkout(&self) -> Option<Conn> {
        let now = coarse_ms();
        loop {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let newest = idle.pop()?;
            if newest.expired(now, self.settings.idle_timeout) {
                // The newest is too old: so are the others. They are closed
                // once the lock is released.
                let stale = std::mem::take(&mut *idle);
                drop(idle);
                drop(stale);
                return None;
            }
            drop(idle);
            // Asked (and, closed, dropped) outside the lock.
            let mut conn = newest.conn;
            if conn.h1.is_open() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, mut conn: Conn) {
        conn.h1.rest();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.settings.max_idle {
            idle.push(Idle {
                conn,
                since_ms: coarse_ms(),
            });
        }
    }

    /// Closes the idle connections past their time (the oldest come first),
    /// once the lock is released.
    fn sweep_once(&self) {
        let now = coarse_ms();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = idle
            .iter()
            .position(|i| !i.expired(now, self.settings.idle_timeout))
            .unwrap_or(idle.len());
        let stale: Vec<Idle> = idle.drain(..fresh).collect();
        drop(idle);
        drop(stale);
    }

    async fn connect(&self) -> Result<Conn, PoolError> {
        let stream = self.open().await?;
        self.settings.open.inc();
        Ok(Conn {
            h1: Connection::new(stream),
            _live: Live(self.settings.open.clone()),
        })
    }

    /// Sends an upgrade request on a new connection of its own, driven by a
    /// task until the upgrade hands its IO on (see `hyper::upgrade::on` on
    /// the answer) or the answer's body has ended. The connection is never
    /// pooled: after a refused upgrade the upstream may not expect HTTP.
    pub async fn send_upgrade(&self, req: Request<Body>) -> Result<Response<Incoming>, PoolError> {
        let stream = self.open().await?;
        let (mut send, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        self.settings.open.inc();
        let live = Live(self.settings.open.clone());
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream upgrade connection ended");
            }
            drop(live);
        });
        Ok(send.send_request(req).await?)
    }

    /// A TCP connection to the upstream, in the connect timeout.
    async fn open(&self) -> Result<TcpStream, PoolError> {
        let addr = || format!("{}:{}", self.host, self.port);
        let fail = |reason: String| PoolError::Connect {
            addr: addr(),
            reason,
        };
        let stream = tokio::time::timeout(self.settings.connect_timeout, self.tcp())
            .await
            .map_err(|_| fail("timed out".to_owned()))?
            .map_err(|e| fail(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        if let Some(idle) = self.settings.keepalive {
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(idle);
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
                tracing::debug!(error = %e, "cannot set TCP keepalive on an upstream connection");
            }
        }
        Ok(stream)
    }

    /// A TCP connection to the first of the upstream's addresses that takes
    /// one; an IP address needs no lookup.
    async fn tcp(&self) -> std::io::Result<TcpStream> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return TcpStream::connect(SocketAddr::new(ip, self.port)).await;
        }
        let addrs = tokio::net::lookup_host((self.host.as_str(), self.port)).await?;
        connect_first(addrs, self.settings.attempt_timeout).await
    }
}

/// Tries each address in turn, each for at most `attempt`; the first that
/// takes a connection wins.
async fn connect_first(
    addrs: impl IntoIterator<Item = SocketAddr>,
    attempt: Duration,
) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(attempt, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{addr} did not answer in time"),
                ));
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the name has no address")))
}

/// Drops expired idle connections every half idle timeout, while the pool
/// lives.
async fn sweep(pool: Weak<Pool>) {
    let every = match pool.upgrade() {
        Some(p) => (p.settings.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(p) => p.sweep_once(),
            None => return,
        }
    }
}

/// The body of an upstream answer from the [`Pool`]. Reading it reads the
/// connection; when it has ended, the connection goes back to the pool. A
/// body dropped before its end takes its connection with it.
pub struct PooledBody {
    reader: BodyReader,
    /// `None` once the body has ended or failed.
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// Whether data was handed on since the body last waited.
    handed_on: bool,
    /// A failure held back for one turn, so that the data before it can be
    /// flushed to the client first.
    failed: Option<h1::Error>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(conn) = self.conn.take()
            && conn.h1.reusable(&self.reader)
        {
            self.pool.checkin(conn);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = h1::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h1::Error>>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(conn) = &mut this.conn else {
            // Without its connection: ended, or failed (then never a
            // clean end).
            return Poll::Ready(if this.reader.is_end() {
                None
            } else {
                Some(Err(h1::Error::Closed("body")))
            });
        };
        let polled = conn.h1.poll_body(cx, &mut this.reader);
        match polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                if this.handed_on {
                    // The connection read the data and the failure at once.
                    // Waiting one turn lets the server flush the data, so the
                    // client sees where the body broke off.
                    this.failed = Some(e);
                    this.handed_on = false;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(_))) => this.handed_on = true,
            Poll::Pending => this.handed_on = false,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.reader.is_end()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.reader.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Readers that stop at `is_end_stream` never see the body's end.
        if self.reader.is_end() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpSocket};

    fn settings(keepalive: Option<Duration>) -> PoolSettings {
        PoolSettings {
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_millis(300),
            keepalive,
            idle_timeout: Duration::from_secs(10),
            max_idle: 4,
            open: prometheus_client::metrics::gauge::Gauge::default(),
        }
    }

    /// A listener that takes no more connections: its accept queue (of
    /// one) is full, so the kernel drops further SYNs and a connect hangs.
    /// Returns it with the connections that fill it.
    async fn not_answering() -> (TcpListener, Vec<TcpStream>) {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => held.push(s),
                Ok(Err(e)) => panic!("the full listener refused instead: {e}"),
                Err(_) => return (listener, held),
            }
        }
        panic!("the listener kept taking connections");
    }

    #[tokio::test]
    async fn an_address_that_does_not_answer_leaves_time_for_the_next() {
        let (silent, _held) = not_answering().await;
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addrs = [silent.local_addr().unwrap(), good.local_addr().unwrap()];
        // Bounded: without a time per address, the first attempt alone
        // would take the kernel's SYN retries (minutes).
        let stream = tokio::time::timeout(
            Duration::from_secs(20),
            connect_first(addrs, Duration::from_millis(300)),
        )
        .await
        .expect("connected while the first address stays silent")
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addrs[1]);
        let (accepted, _) = good.accept().await.unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), stream.local_addr().unwrap());
        // Every address silent: the failure says so.
        let e = connect_first([addrs[0]], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn upstream_sockets_have_tcp_keepalive() {
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = good.local_addr().unwrap().port();
        let idle = Duration::from_secs(42);
        let pool = Pool::new("127.0.0.1", port, settings(Some(idle)));
        let stream = pool.open().await.unwrap();
        let sock = socket2::SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), idle);
        let pool = Pool::new("127.0.0.1", port, settings(None));
        let stream = pool.open().await.unwrap();
        assert!(!socket2::SockRef::from(&stream).keepalive().unwrap());
    }

    #[tokio::test]
    async fn a_kept_connection_the_upstream_closed_is_not_a_failure() {
        // Answers one request per connection as if it kept it, then closes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.ends_with(b"\r\n\r\n") {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        let pool = Pool::new("127.0.0.1", port, settings(None));
        for i in 0..20 {
            let mut req = Request::new(crate::body::empty());
            *req.uri_mut() = "/".parse().unwrap();
            let resp = pool
                .send(Box::new(req), None, None)
                .await
                .unwrap_or_else(|e| panic!("request {i}: {e}"));
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap();
            assert_eq!(&body.to_bytes()[..], b"ok");
        }
    }
}
