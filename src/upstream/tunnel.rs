//! Protocol upgrades (WebSocket and the like) tunnelled to the upstream.
//!
//! An HTTP/1.1 request with `Connection: upgrade` and an `Upgrade` header
//! ([`asked`]) goes to the upstream with both headers kept, on a connection
//! of its own. When the upstream answers `101 Switching Protocols`, the
//! client gets the 101 and both connections, upgraded through hyper, are
//! joined ([`join`]): bytes are copied both ways until either side closes,
//! or until nothing has moved either way for the idle timeout
//! (`server.idle_timeout_ms`, as for a client connection between requests).
//! Any other answer goes to the client as usual. Tunnels are counted in
//! `ordergate_tunnels` (open) and `ordergate_tunnels_opened_total`.
//!
//! Not upgraded, and forwarded as ordinary requests without the upgrade
//! headers (RFC 9110 §7.8 lets a server ignore `Upgrade`): HTTP/1.0
//! requests, an `Upgrade` without `Connection: upgrade`, a request
//! with a body (where the body ends and the new protocol starts would be
//! the upstream's guess), and upgrades to HTTP itself (`h2c`, `HTTP/…`): a
//! tunnel speaking HTTP would carry requests past every rule of the gateway.
//! HTTP/2 has no upgrades: h2 resets the stream of a request that carries
//! `Connection` or `Upgrade` (malformed, RFC 9113 §8.2.2) before it gets
//! here, and extended CONNECT (RFC 8441) is not enabled.

use crate::telemetry::metrics::Metrics;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// The `Upgrade` header the request asks the upstream for, when it asks for
/// a tunnel the gateway opens.
pub fn asked<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let headers = req.headers();
    let upgrade_option = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|o| o.trim().eq_ignore_ascii_case("upgrade"));
    if !upgrade_option || has_body(headers) {
        return None;
    }
    let mut upgrades = headers.get_all(header::UPGRADE).iter();
    let (Some(protocols), None) = (upgrades.next(), upgrades.next()) else {
        return None;
    };
    let text = protocols.to_str().ok()?;
    let mut names = text
        .split(',')
        .map(|p| p.trim().split('/').next().unwrap_or(""))
        .peekable();
    names.peek()?;
    if names
        .any(|n| n.is_empty() || n.eq_ignore_ascii_case("h2c") || n.eq_ignore_ascii_case("http"))
    {
        return None;
    }
    Some(protocols.clone())
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0")
}

/// Sets the upgrade headers on a request prepared for the upstream (whose
/// hop-by-hop headers are gone), or on the 101 for the client.
pub fn set_upgrade_headers(headers: &mut HeaderMap, protocols: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocols);
}

/// Joins the client's and the upstream's connections once both are
/// upgraded, and copies bytes both ways until either side closes or both
/// have been quiet for `idle`. Runs as a task of its own.
pub async fn join(client: OnUpgrade, upstream: OnUpgrade, idle: Duration, metrics: Arc<Metrics>) {
    // The client's side is upgraded once the server has written the 101.
    let both = tokio::time::timeout(idle, async { tokio::join!(client, upstream) }).await;
    let (client, upstream) = match both {
        Ok((Ok(client), Ok(upstream))) => (client, upstream),
        Ok((client, upstream)) => {
            let error = client.err().or(upstream.err()).map(|e| e.to_string());
            tracing::debug!(error, "a tunnel could not be joined");
            return;
        }
        Err(_) => {
            tracing::debug!("a tunnel's upgrade did not complete in time");
            return;
        }
    };
    let open = metrics.tunnel_opened();
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let client = Watched::new(TokioIo::new(client), started, &last);
    let upstream = Watched::new(TokioIo::new(upstream), started, &last);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let up = async {
        let copied = tokio::io::copy(&mut client_read, &mut upstream_write).await;
        let _ = upstream_write.shutdown().await;
        copied
    };
    let down = async {
        let copied = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
        copied
    };
    // The first side to close ends the tunnel: its end is passed on, then
    // both connections are dropped.
    let ended = tokio::select! {
        copied = up => format!("the client closed: {copied:?}"),
        copied = down => format!("the upstream closed: {copied:?}"),
        () = quiet_for(idle, started, &last) => "idle".to_owned(),
    };
    tracing::debug!(ended, "tunnel closed");
    drop(open);
}

/// Completes once nothing has been read on either side for `idle`.
async fn quiet_for(idle: Duration, started: Instant, last: &AtomicU64) {
    let mut until = started + idle;
    loop {
        tokio::time::sleep_until(until).await;
        match next_check(idle, started, last.load(Ordering::Relaxed), Instant::now()) {
            None => return,
            Some(next) => until = next,
        }
    }
}

/// When to look again, if something was read within `idle` of `now`
/// (`last_ms` after `started`); `None`: quiet for `idle`.
fn next_check(idle: Duration, started: Instant, last_ms: u64, now: Instant) -> Option<Instant> {
    let moved = started + Duration::from_millis(last_ms);
    (now.saturating_duration_since(moved) < idle).then_some(moved + idle)
}

/// An IO that notes when it last read something, in milliseconds after the
/// tunnel started.
struct Watched<T> {
    io: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn new(io: T, started: Instant, last: &Arc<AtomicU64>) -> Self {
        Self {
            io,
            started,
            last: Arc::clone(last),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = this.started.elapsed().as_millis() as u64;
            this.last.store(ms, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn which_requests_ask_for_a_tunnel() {
        let ws = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert_eq!(asked(&req(Version::HTTP_11, &ws)).unwrap(), "websocket");
        let other = [("connection", "upgrade"), ("upgrade", "foo/2, bar")];
        assert_eq!(asked(&req(Version::HTTP_11, &other)).unwrap(), "foo/2, bar");
        let with_empty_length = [ws[0], ws[1], ("content-length", "0")];
        assert!(asked(&req(Version::HTTP_11, &with_empty_length)).is_some());
        for headers in [
            &[("upgrade", "websocket")][..],
            &[("connection", "upgrade")],
            &[("connection", "upgrade"), ("upgrade", "h2c")],
            &[
                ("connection", "upgrade"),
                ("upgrade", "websocket, HTTP/2.0"),
            ],
            &[("connection", "upgrade"), ("upgrade", "")],
            &[ws[0], ws[1], ("content-length", "5")],
            &[ws[0], ws[1], ("transfer-encoding", "chunked")],
            &[ws[0], ws[1], ("upgrade", "foo")],
        ] {
            assert!(
                asked(&req(Version::HTTP_11, headers)).is_none(),
                "{headers:?}"
            );
        }
        assert!(asked(&req(Version::HTTP_10, &ws)).is_none());
        assert!(asked(&req(Version::HTTP_2, &ws)).is_none());
    }

    #[test]
    fn quiet_only_after_idle_without_reads() {
        let started = Instant::now();
        let idle = Duration::from_secs(10);
        let at = |s: u64| started + Duration::from_secs(s);
        // Read at 6 s: at 10 s not quiet, look again at 16 s.
        assert_eq!(next_check(idle, started, 6_000, at(10)), Some(at(16)));
        assert_eq!(next_check(idle, started, 6_000, at(16)), None);
        // Nothing read since the start.
        assert_eq!(next_check(idle, started, 0, at(10)), None);
        assert_eq!(next_check(idle, started, 0, at(9)), Some(at(10)));
    }
}
