//! When a connection last moved bytes, and when it last had a request in
//! flight: what its idle timeout is measured against (bytes for HTTP/1,
//! requests for HTTP/2, whose keep-alive pings move bytes on a connection
//! nobody uses).

use crate::clock::coarse_ms;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The time of a connection's last read or write. Stamps are of the coarse
/// clock ([`coarse_ms`]): taken on every read and write, they must be cheap,
/// and idle timeouts are seconds.
pub struct Activity {
    /// The last read or write.
    last_ms: AtomicU64,
    /// Requests whose heads hyper handed over.
    requests: AtomicU64,
    in_flight: AtomicU32,
    /// When a request last started or ended.
    last_request_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(coarse_ms(), Ordering::Relaxed);
    }

    /// A request starts; it ends when the guard is dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_request_ms.store(coarse_ms(), Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Request heads received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// How long no request has been in flight (zero while one is).
    pub fn no_request_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        since(&self.last_request_ms)
    }

    /// How long nothing has been read or written.
    pub fn quiet_for(&self) -> Duration {
        since(&self.last_ms)
    }
}

/// The time since a stamp.
fn since(stamp: &AtomicU64) -> Duration {
    Duration::from_millis(coarse_ms().saturating_sub(stamp.load(Ordering::Relaxed)))
}

/// A request in flight on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request_ms.store(coarse_ms(), Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// An IO stream that notes its activity.
    pub struct Tracked<S> {
        #[pin]
        inner: S,
        activity: Arc<Activity>,
    }
}

impl<S> Tracked<S> {
    pub fn new(inner: S) -> (Self, Arc<Activity>) {
        let opened = coarse_ms();
        let activity = Arc::new(Activity {
            last_ms: AtomicU64::new(opened),
            requests: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            last_request_ms: AtomicU64::new(opened),
        });
        let tracked = Self {
            inner,
            activity: Arc::clone(&activity),
        };
        (tracked, activity)
    }
}

impl<S: AsyncRead> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let out = this.inner.poll_read(cx, buf);
        if matches!(out, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        out
    }
}

impl<S: AsyncWrite> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let out = this.inner.poll_write(cx, buf);
        if matches!(out, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        out
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let out = this.inner.poll_write_vectored(cx, bufs);
        if matches!(out, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        out
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
