//! The accept loop: HTTP/1.1 and HTTP/2 (prior knowledge) on one listener,
//! hard request-head limits, a header read timeout that closes
//! slow clients' connections, a cap on open connections, and graceful
//! shutdown that lets in-flight requests finish.

use crate::body::Body;
use crate::config::ServerLimits;
use crate::proxy::ClientAddr;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

pub mod tls;

/// Marks requests that came over TLS.
#[derive(Clone, Copy, Debug)]
pub struct Tls;

/// Serves `service` on `listener` until `shutdown` completes, then waits up
/// to `drain` for open connections to finish their requests. Past
/// `limits.max_connections` open connections, new ones wait in the kernel's
/// backlog until one closes.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    limits: ServerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
) where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
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
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = service.clone();
        let secure = tls.is_some();
        let hyper_svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ClientAddr(peer));
            if secure {
                req.extensions_mut().insert(Tls);
            }
            svc.clone().oneshot(req)
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    watcher
                        .watch(
                            builder
                                .serve_connection(TokioIo::new(stream), hyper_svc)
                                .into_owned(),
                        )
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(
                                    builder
                                        .serve_connection(TokioIo::new(stream), hyper_svc)
                                        .into_owned(),
                                )
                                .await
                        }
                        Ok(Err(e)) => Err(e.into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::warn!("drain time over; closing open connections"),
    }
}
