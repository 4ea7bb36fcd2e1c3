//! The accept loops: HTTP/1.1 and HTTP/2 (ALPN over TLS, prior knowledge
//! over plain TCP) on every listener, hard request-head limits, a header read
//! timeout and an idle timeout that close quiet clients' connections, a cap on
//! open connections shared by all listeners, and graceful shutdown that lets
//! in-flight requests finish.

mod activity;

use crate::body::Body;
use crate::config::ServerLimits;
use crate::context::Peer;
use activity::Tracked;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::{Service, ServiceExt};

/// What the listeners serve: a service over hyper's requests, cloned for
/// every connection and shared by every accept loop.
pub trait GatewayService:
    Service<
        Request<Incoming>,
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
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
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

/// What every accept loop shares.
struct Shared<S> {
    service: S,
    builder: auto::Builder<TokioExecutor>,
    limits: ServerLimits,
    slots: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

/// Serves `service` on every listener until `shutdown` completes, then waits
/// up to `drain` for open connections to finish their requests. Past
/// `limits.max_connections` open connections, new ones wait in the kernel's
/// backlog until one closes.
pub async fn serve<S>(
    listeners: Vec<Listener>,
    service: S,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ServerLimits,
) where
    S: GatewayService,
{
    // The configured head limits are enforced in the stack, which answers
    // with a fault (431); hyper's own, at twice those, only stop what would
    // not fit in memory, with hyper's bare 431.
    let hard_head = limits.max_header_bytes.saturating_mul(2);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(hard_head)
        .max_headers(limits.max_headers.saturating_mul(2));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(hard_head).unwrap_or(u32::MAX));
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        service,
        builder,
        limits,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        stop,
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
    // Every open connection holds a slot: all slots back means all closed.
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
    let acceptor = listener
        .tls
        .map(|t| (tokio_rustls::TlsAcceptor::from(t.config), t.hsts));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&shared.slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.tcp.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let (stream, activity) = Tracked::new(stream);
            let result = match acceptor {
                None => connection(stream, activity, peer, None, &shared).await,
                // Boxed: TLS state would make every plain connection's task
                // larger too.
                Some((acceptor, hsts)) => {
                    Box::pin(async {
                        let handshake = acceptor.accept(stream);
                        match tokio::time::timeout(shared.limits.header_read_timeout, handshake)
                            .await
                        {
                            Ok(Ok(stream)) => {
                                connection(stream, activity, peer, Some(hsts), &shared).await
                            }
                            Ok(Err(e)) => Err(e.into()),
                            Err(_) => Err("TLS handshake timed out".into()),
                        }
                    })
                    .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The `Strict-Transport-Security` value of a TLS listener's answers, if
/// any; swapped on reload.
type HstsValue = Arc<arc_swap::ArcSwapOption<http::HeaderValue>>;

/// Serves one connection until it ends: closed gracefully at shutdown or when
/// nothing has moved on it for the idle timeout (a request in progress
/// finishes first either way). `tls` is set for a TLS connection.
async fn connection<I, S>(
    io: I,
    activity: Arc<activity::Activity>,
    peer: std::net::SocketAddr,
    tls: Option<HstsValue>,
    shared: &Shared<S>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: GatewayService,
{
    let svc = shared.service.clone();
    let hyper_svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(Peer {
            addr: peer,
            tls: tls.is_some(),
        });
        let hsts = tls.as_ref().map(|hsts| hsts.load_full());
        let answer = svc.clone().oneshot(req);
        async move {
            let mut resp = answer.await?;
            // Over TLS only: a browser ignores it on plain HTTP (RFC 6797 8.1).
            if let Some(Some(value)) = hsts {
                resp.headers_mut()
                    .insert(http::header::STRICT_TRANSPORT_SECURITY, (*value).clone());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = shared
        .builder
        .serve_connection(TokioIo::new(io), hyper_svc)
        .into_owned();
    tokio::pin!(conn);
    let idle = shared.limits.idle_timeout;
    let check = tokio::time::sleep(idle);
    tokio::pin!(check);
    let mut stop = shared.stop.clone();
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => return result,
            () = stopped(&mut stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut check, if !closing => {
                let quiet = activity.quiet_for();
                if quiet >= idle {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                } else {
                    check.as_mut().reset(tokio::time::Instant::now() + (idle - quiet));
                }
            }
        }
    }
}
