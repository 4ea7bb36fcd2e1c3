//! The body type that flows through the stack, small constructors, the
//! limits bodies stream under ([`Limited`] for requests, [`Deadline`] for
//! answers), and the one reader of bodies the gateway must look into
//! ([`read`]).

mod read;

pub use read::{Coding, ReadError, decoded, read_capped, read_decoded};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use std::future::Future;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Request and response body inside the gateway: any body, boxed once.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// The error a [`Limited`] body yields once more than its limit has come.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body is larger than {limit} bytes")]
pub struct TooLarge {
    pub limit: u64,
}

/// The error a [`Limited`] body yields when the client pauses too long.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the client sent no request body data for {0:?}")]
pub struct BodyTimeout(pub std::time::Duration);

/// A body's timer, made only when the body first has to wait: most bodies
/// arrive whole with their headers.
#[derive(Default)]
struct LazyTimer(Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

impl LazyTimer {
    /// Polls the timer, made to fire at `at()` if there is none yet.
    fn poll_at(
        &mut self,
        at: impl FnOnce() -> tokio::time::Instant,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at())))
            .as_mut()
            .poll(cx)
    }

    /// Moves a timer already made to `at()` (not read when there is none).
    fn reset(&mut self, at: impl FnOnce() -> tokio::time::Instant) {
        if let Some(timer) = self.0.as_mut() {
            timer.as_mut().reset(at());
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body that fails with [`TooLarge`] as soon as more than
    /// `limit` bytes have streamed through it (the limit holds for bodies of
    /// unknown length without buffering them), and with [`BodyTimeout`] when
    /// the client sends nothing for `idle`.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        left: u64,
        limit: u64,
        idle: std::time::Duration,
        timer: LazyTimer,
    }
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64, idle: std::time::Duration) -> Self {
        Self {
            inner,
            left: limit,
            limit,
            idle,
            timer: LazyTimer::default(),
        }
    }
}

impl<B> http_body::Body for Limited<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        let frame = match this.inner.poll_frame(cx) {
            Poll::Pending => {
                let idle = *this.idle;
                return match this
                    .timer
                    .poll_at(|| tokio::time::Instant::now() + idle, cx)
                {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(idle))))),
                    Poll::Pending => Poll::Pending,
                };
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let idle = *this.idle;
        this.timer.reset(|| tokio::time::Instant::now() + idle);
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            if n > *this.left {
                *this.left = 0;
                return Poll::Ready(Some(Err(Box::new(TooLarge { limit: *this.limit }))));
            }
            *this.left -= n;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The error a [`Deadline`] body yields when its time is up.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the upstream did not finish its answer in time")]
pub struct DeadlinePassed;

pin_project_lite::pin_project! {
    /// A body that fails with [`DeadlinePassed`] if it has not ended by
    /// `deadline`.
    pub struct Deadline<B> {
        #[pin]
        inner: B,
        deadline: tokio::time::Instant,
        timer: LazyTimer,
    }
}

impl<B> Deadline<B> {
    pub fn new(inner: B, deadline: tokio::time::Instant) -> Self {
        Self {
            inner,
            deadline,
            timer: LazyTimer::default(),
        }
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Pending => {
                let deadline = *this.deadline;
                match this.timer.poll_at(|| deadline, cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(DeadlinePassed)))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
