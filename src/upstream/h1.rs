//! HTTP/1.1 on one kept-alive upstream connection, driven by the task of the
//! request that uses it.
//!
//! hyper's client runs a dispatcher per connection: the request goes in
//! through a channel, the answer comes back through another, and the
//! connection's state machine is polled for every turn of either. On the
//! pooled path, where one request at a time owns a connection, that
//! machinery was a quarter of the gateway's instructions per request
//! (BENCHMARKS.md). Here the request's task writes the request and reads
//! the answer itself: the head is written with the first body bytes in one
//! `write`, the answer's head is parsed by `httparse` (hyper's own parser)
//! into the header map in place, and the body is handed on as slices of the
//! read buffer, never copied.
//!
//! What it keeps of HTTP/1.1 (RFC 9112):
//! * the request body is framed by its `Content-Length`, its known size, or
//!   chunked; a body that gives more or less than it announced fails as the
//!   client's error, never sent short;
//! * the answer's body is framed as §6.3 says: none for `HEAD`, 1xx, 204
//!   and 304; chunked when `Transfer-Encoding` ends in `chunked` (and then
//!   any `Content-Length` is dropped and the connection not kept); by a
//!   valid `Content-Length` (several differing ones are refused; the field
//!   is then left out of the answer's map, as the body's exact size says
//!   the same to whoever writes it on); else up to the connection's end;
//! * interim answers (`100 Continue`, `103 Early Hints`) are skipped; an
//!   answer that comes while the request body is still being sent is taken,
//!   and the rest of the body goes on as the answer's body is read (some
//!   backends answer first and read after);
//! * a connection is kept only when both messages ended cleanly, the answer
//!   did not say `Connection: close`, and nothing follows the answer;
//! * heads are bounded ([`MAX_HEAD`] bytes, [`MAX_HEADERS`] fields), as are
//!   chunk-size lines and trailers.

use super::headers::{Outbound, field};
use crate::body::{Body, BoxError};
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body::{Body as _, Frame};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// The longest answer head (status line and header fields) read.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most header fields an answer head may have.
pub const MAX_HEADERS: usize = 100;
/// Header fields an answer's map has room for beyond its own.
const HEADROOM: usize = 8;
/// The longest chunk-size line (with extensions) read.
const MAX_CHUNK_LINE: usize = 4096;
/// How much is read from the socket at a time.
const READ_SIZE: usize = 8 * 1024;
/// Read buffers kept per thread for the exchanges it serves next
/// ([`Connection::rest`]): as many as answers come in at once, not one
/// per upstream connection.
const SPARE_READ_BUFFERS: usize = 16;

std::thread_local! {
    static SPARE_READS: std::cell::Cell<Vec<BytesMut>> = const { std::cell::Cell::new(Vec::new()) };
}
/// Body bytes queued before they are written, at most.
const WRITE_BATCH: usize = 64 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the upstream connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the upstream closed the connection before the answer's {0} ended")]
    Closed(&'static str),
    #[error("the upstream's answer is not valid HTTP/1.1: {0}")]
    Invalid(&'static str),
    /// The request's own body failed while it was sent: the client's error.
    #[error("the request body failed: {0}")]
    RequestBody(BoxError),
}

/// One connection to the upstream, and what has been read from it and not
/// yet handed on.
pub struct Connection {
    io: TcpStream,
    /// Room only while an answer comes in: between exchanges it is a spare
    /// of the thread's ([`Self::rest`]), and an exchange takes one once the
    /// answer's first bytes are ready (the pool's [`Self::is_open`] clears
    /// readiness left from the idle time).
    read: BytesMut,
    /// What is kept from one exchange to the next to reuse its
    /// allocations; boxed, as an answer's body holds the connection.
    kept: Box<Kept>,
}

struct Kept {
    /// The request head being written.
    head: Vec<u8>,
    /// A request's header map, cleared for the next answer's fields.
    headers: HeaderMap,
}

/// What an exchange comes to: the answer's head, or the error with the
/// request when it can go again on another connection.
pub type Exchanged = Result<Head, (Error, Option<Box<Request<Body>>>)>;

/// A request's header map is kept for the next answer while it holds no
/// more room than this many fields.
const KEPT_FIELDS: usize = 32;

/// An answer's head, and how its body is to be read.
pub struct Head {
    pub parts: http::response::Parts,
    pub body: BodyReader,
}

impl Connection {
    pub fn new(io: TcpStream) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            kept: Box::new(Kept {
                head: Vec::new(),
                headers: HeaderMap::new(),
            }),
        }
    }

    /// Whether the connection still looks open, without waiting: the
    /// upstream may have closed it, or sent something, while it was idle.
    /// No system call unless the runtime saw the socket become readable.
    pub fn is_open(&mut self) -> bool {
        self.read.is_empty()
            && matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            )
    }

    /// Sends `req` (its URI in origin form) and reads the answer's head; a
    /// body still being sent then goes on as the answer's body is read.
    /// `Err((e, Some(req)))` gives the request back when it can go again
    /// on another connection: nothing of it was sent, or (a request with
    /// no body, of an idempotent method) the connection was found closed
    /// before any answer came.
    /// [`Self::send_to`] the URI's own path and query.
    #[cfg(test)]
    fn send(&mut self, req: Request<Body>) -> impl Future<Output = Exchanged> + '_ {
        self.send_to(Box::new(req), None, None)
    }

    /// `target`, when given, is written as the request target in place of
    /// the URI's path and query; `outbound`, when given, says what becomes
    /// of the header fields (else they go as they are).
    #[allow(clippy::manual_async_fn)] // an `async fn` would hold its arguments twice
    pub fn send_to<'a>(
        &'a mut self,
        req: Box<Request<Body>>,
        target: Option<&'a str>,
        outbound: Option<&'a Outbound>,
    ) -> impl Future<Output = Exchanged> + Send + 'a {
        async move {
            let (parts, body) = (*req).into_parts();
            let framing = request_framing(&parts, &body);
            self.kept.head.clear();
            encode_head(
                &parts,
                target,
                framing.as_ref(),
                outbound,
                &mut self.kept.head,
            );
            let mut out = Outgoing {
                head_written: 0,
                queue: VecDeque::new(),
                queued: 0,
                done: framing.is_none() || body.is_end_stream(),
                body: Some(body),
                framing: framing.unwrap_or(Sending::Length(0)),
                body_polled: false,
                failed: None,
                body_error: None,
                answered: false,
            };
            let result = poll_fn(|cx| self.poll_exchange(cx, &mut out, &parts.method)).await;
            match result {
                Ok(mut head) => {
                    if parts.headers.capacity() <= KEPT_FIELDS {
                        // Cleared at once: its values are slices of the
                        // client's read buffer, which can then be reused.
                        // (A head that failed part-way may leave fields:
                        // the parse clears what it finds.)
                        self.kept.headers = parts.headers;
                        self.kept.headers.clear();
                    }
                    if out.failed.is_some() || out.body_error.is_some() {
                        head.body.keep = false;
                    } else if !out.finished(self.kept.head.len()) {
                        // The answer came first: the rest of the body goes on
                        // while the answer's body is read.
                        head.body.sending = Some(Box::new(out));
                    }
                    Ok(head)
                }
                Err(e) => {
                    let closed = match &e {
                        Error::Closed(_) => true,
                        Error::Io(io) => matches!(
                            io.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::ConnectionAborted
                        ),
                        _ => false,
                    };
                    let again = !out.answered
                        && !out.body_polled
                        && (out.head_written == 0
                            || (closed && out.done && parts.method.is_idempotent()));
                    let req = match (again, out.body.take()) {
                        (true, Some(body)) => Some(Box::new(Request::from_parts(parts, body))),
                        _ => None,
                    };
                    Err((e, req))
                }
            }
        }
    }

    /// Writes what can be written and reads until the answer's head is in.
    fn poll_exchange(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Outgoing,
        method: &Method,
    ) -> Poll<Result<Head, Error>> {
        loop {
            let wrote = out.poll_write(cx, &mut self.io, &self.kept.head);
            if let Some(head) = parse_head(&mut self.read, method, &mut self.kept.headers)? {
                return Poll::Ready(Ok(head));
            }
            // The request's body failed and no answer is in: the upstream
            // waits for the rest, which will not come.
            if let Some(e) = out.body_error.take() {
                return Poll::Ready(Err(Error::RequestBody(e)));
            }
            if self.read.len() >= MAX_HEAD {
                return Poll::Ready(Err(Error::Invalid("the head is too large")));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    // A write that failed says more than the close after it.
                    return Poll::Ready(Err(match out.failed.take() {
                        Some(e) => Error::Io(e),
                        None => Error::Closed("head"),
                    }));
                }
                Poll::Ready(Ok(_)) => {
                    out.answered = true;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending if wrote => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the connection's end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
            if self.read.capacity() == 0 {
                // Room once there is something to read: an exchange waiting
                // for its answer holds none.
                ready!(self.io.poll_read_ready(cx))?;
                if let Some(spare) = crate::spare::take(&SPARE_READS) {
                    self.read = spare;
                }
            }
            // All of the buffer again when no answer's bytes are held
            // elsewhere; else a new one.
            if self.read.capacity() - self.read.len() < READ_SIZE / 4 {
                self.read.reserve(READ_SIZE);
            }
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// Gives the read buffer to the thread's next exchange, the connection
    /// going idle with nothing read that it did not hand on.
    pub fn rest(&mut self) {
        if self.read.is_empty() && self.read.capacity() > 0 {
            let room = std::mem::take(&mut self.read);
            crate::spare::give(&SPARE_READS, room, SPARE_READ_BUFFERS);
        }
    }

    /// The next frame of the answer's body that `reader` reads.
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut BodyReader,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(out) = &mut reader.sending {
            out.poll_write(cx, &mut self.io, &self.kept.head);
            if out.failed.is_some() || out.body_error.is_some() {
                // The rest of the request cannot go: the answer may still
                // end, but the connection is not kept.
                reader.keep = false;
                reader.sending = None;
            } else if out.finished(self.kept.head.len()) {
                reader.sending = None;
            }
        }
        loop {
            match reader.next(&mut self.read) {
                Step::Frame(frame) => return Poll::Ready(Some(Ok(frame))),
                Step::End => return Poll::Ready(None),
                Step::Fail(e) => return Poll::Ready(Some(Err(e))),
                Step::More => {}
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(reader.closed().err().map(Err)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(Error::Io(e)))),
            }
        }
    }

    /// Whether the connection can carry the next request after `reader`'s
    /// body has ended.
    pub fn reusable(&self, reader: &BodyReader) -> bool {
        reader.keep && reader.sending.is_none() && reader.is_end() && self.read.is_empty()
    }
}

impl Drop for Connection {
    /// A connection that ends with its read buffer empty (the upstream
    /// closed it, its answer was not kept) leaves the buffer as a spare.
    fn drop(&mut self) {
        self.rest();
    }
}

/// The request on its way out: its head, then its body's frames as they
/// come, queued and written together.
struct Outgoing {
    /// How much of the connection's head buffer has been written.
    head_written: usize,
    queue: VecDeque<Bytes>,
    queued: usize,
    /// The body, given back with the request if it was never polled.
    body: Option<Body>,
    /// Whether the body has ended (or failed).
    done: bool,
    framing: Sending,
    /// Whether a frame was taken from the body.
    body_polled: bool,
    /// A write failed: nothing more is written, but the answer may still
    /// have come (an upstream that refuses a body answers, then closes).
    failed: Option<std::io::Error>,
    /// The body failed (or broke its length): nothing more is written.
    body_error: Option<BoxError>,
    /// Whether any byte of an answer came.
    answered: bool,
}

/// How the request's body goes out.
enum Sending {
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    Chunked,
}

impl Outgoing {
    /// Takes the body's frames that are ready and writes what is queued;
    /// `true` when anything moved. A failure of either is kept, and stops
    /// the sending.
    fn poll_write(&mut self, cx: &mut Context<'_>, io: &mut TcpStream, head: &[u8]) -> bool {
        let mut moved = false;
        loop {
            if self.failed.is_some() || self.body_error.is_some() {
                return moved;
            }
            // Frames first, so that a small body leaves with its head.
            while self.queued < WRITE_BATCH
                && !self.done
                && let Some(body) = self.body.as_mut()
            {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(frame) => {
                        self.body_polled = true;
                        if let Err(e) = self.take(frame) {
                            self.body_error = Some(e);
                            return moved;
                        }
                    }
                }
            }
            let mut slices = [IoSlice::new(&[]); 8];
            let mut n = 0;
            if self.head_written < head.len() {
                slices[0] = IoSlice::new(&head[self.head_written..]);
                n = 1;
            }
            for b in self.queue.iter().take(slices.len() - n) {
                slices[n] = IoSlice::new(b);
                n += 1;
            }
            if n == 0 {
                return moved;
            }
            let written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Pending => return moved,
                Poll::Ready(Ok(0)) => {
                    self.failed = Some(std::io::ErrorKind::WriteZero.into());
                    return moved;
                }
                Poll::Ready(Ok(written)) => written,
                Poll::Ready(Err(e)) => {
                    self.failed = Some(e);
                    return moved;
                }
            };
            moved = true;
            self.advance(written, head.len());
        }
    }

    /// Queues a frame of the request body, framed.
    fn take(&mut self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> Result<(), BoxError> {
        let data = match frame {
            None => {
                self.done = true;
                return match self.framing {
                    Sending::Length(0) => Ok(()),
                    Sending::Length(_) => Err("the body ended before its Content-Length".into()),
                    Sending::Chunked => {
                        self.push(Bytes::from_static(b"0\r\n\r\n"));
                        Ok(())
                    }
                };
            }
            Some(Err(e)) => {
                self.done = true;
                return Err(e);
            }
            // Trailers of a request are not sent on.
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => return Ok(()),
            },
        };
        match &mut self.framing {
            Sending::Length(left) => {
                let len = data.len() as u64;
                if len > *left {
                    self.done = true;
                    return Err("the body is longer than its Content-Length".into());
                }
                *left -= len;
                self.push(data);
            }
            Sending::Chunked => {
                self.push(Bytes::from(format!("{:x}\r\n", data.len())));
                self.push(data);
                self.push(Bytes::from_static(b"\r\n"));
            }
        }
        Ok(())
    }

    /// Whether the whole request is out: its head, and every byte its
    /// framing announced.
    fn finished(&self, head_len: usize) -> bool {
        self.head_written == head_len
            && self.queue.is_empty()
            && self.failed.is_none()
            && self.body_error.is_none()
            && (self.done || matches!(self.framing, Sending::Length(0)))
    }

    fn push(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.queue.push_back(bytes);
    }

    /// Drops `n` written bytes from the front: the head's, then the queue's.
    fn advance(&mut self, mut n: usize, head_len: usize) {
        let from_head = n.min(head_len - self.head_written);
        self.head_written += from_head;
        n -= from_head;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let step = n.min(front.len());
            front.advance(step);
            self.queued -= step;
            n -= step;
            if front.is_empty() {
                self.queue.pop_front();
            }
        }
    }
}

/// Settles how the request body is framed ([`encode_head`] writes the
/// field that says so): one `Content-Length` that is the number of bytes
/// sent, or chunked. The request's `Content-Length` is trusted over the
/// body's size hint, as hyper does; its `Transfer-Encoding` (hop-by-hop)
/// says nothing here. `None`: no body is sent (a body of unknown size on
/// `GET`, `HEAD` or `CONNECT`, which hyper drops too).
fn request_framing(parts: &http::request::Parts, body: &Body) -> Option<Sending> {
    let headers = &parts.headers;
    if body.is_end_stream() {
        return Some(Sending::Length(0));
    }
    let len = content_length(headers)
        .ok()
        .flatten()
        .or_else(|| body.size_hint().exact());
    match len {
        Some(len) => Some(Sending::Length(len)),
        None if matches!(parts.method, Method::GET | Method::HEAD | Method::CONNECT) => None,
        None => Some(Sending::Chunked),
    }
}

/// The one length that `Content-Length` says, when it says one: several
/// fields or a list of the same number are that number; differing or
/// malformed values are an error.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        add_length(value.as_bytes(), &mut length).map_err(Error::Invalid)?;
    }
    Ok(length)
}

/// Adds one `Content-Length` field's value to what the others said.
fn add_length(value: &[u8], length: &mut Option<u64>) -> Result<(), &'static str> {
    const BAD: &str = "a bad Content-Length";
    for part in value.split(|b| *b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() {
            return Err(BAD);
        }
        let mut n: u64 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return Err(BAD);
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(BAD)?;
        }
        if length.is_some_and(|l| l != n) {
            return Err("differing Content-Length values");
        }
        *length = Some(n);
    }
    Ok(())
}

/// Writes the request line and header fields, origin form; the framing
/// fields as `framing` says, not the request's own.
fn encode_head(
    parts: &http::request::Parts,
    target: Option<&str>,
    framing: Option<&Sending>,
    outbound: Option<&Outbound>,
    out: &mut Vec<u8>,
) {
    let target = target.unwrap_or_else(|| parts.uri.path_and_query().map_or("/", |pq| pq.as_str()));
    out.reserve(160 + target.len() + parts.headers.len() * 32);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    match outbound {
        Some(outbound) => outbound.write(&parts.headers, out),
        None => {
            for (name, value) in &parts.headers {
                if *name != header::CONTENT_LENGTH && *name != header::TRANSFER_ENCODING {
                    field(out, name.as_ref(), value.as_bytes());
                }
            }
        }
    }
    match framing {
        Some(Sending::Chunked) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // A bodiless request says its length when it came with one.
        Some(Sending::Length(0)) if !parts.headers.contains_key(header::CONTENT_LENGTH) => {}
        Some(Sending::Length(n)) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        None => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// The answer's final head, when the buffer holds it (interim ones are
/// dropped); the buffer keeps what follows it. Its fields are read into
/// `headers` (a kept map, cleared first), which it takes.
fn parse_head(
    buf: &mut BytesMut,
    method: &Method,
    headers: &mut HeaderMap,
) -> Result<Option<Head>, Error> {
    loop {
        // Nothing read yet (the first turn of every exchange).
        if buf.is_empty() {
            return Ok(None);
        }
        // Where each field's name and value lie, so that they can be cut
        // from the head's bytes once the parser has let go of them.
        let mut at = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let (len, code, version, count) = {
            let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut res,
                buf,
                &mut fields,
            );
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
                    return Err(Error::Invalid("the head is too large"));
                }
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Error::Invalid("too many header fields"));
                }
                Err(_) => return Err(Error::Invalid("a malformed head")),
            };
            // Offsets fit: the fields lie in the head, at most MAX_HEAD long.
            let base = buf.as_ptr() as usize;
            let offset = |p: *const u8| (p as usize - base) as u32;
            for (slot, field) in at.iter_mut().zip(res.headers.iter()) {
                let name = offset(field.name.as_ptr());
                let value = offset(field.value.as_ptr());
                *slot = (
                    name,
                    name + field.name.len() as u32,
                    value,
                    value + field.value.len() as u32,
                );
            }
            let code = res.code.unwrap_or(0);
            let version = match res.version {
                Some(0) => Version::HTTP_10,
                _ => Version::HTTP_11,
            };
            (len, code, version, res.headers.len())
        };
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(Error::Invalid(
                    "101 Switching Protocols to a request without Upgrade",
                ));
            }
            buf.advance(len);
            continue;
        }
        let status = StatusCode::from_u16(code).map_err(|_| Error::Invalid("a bad status code"))?;
        let head = buf.split_to(len).freeze();
        // Room for what the gateway adds on the way back (request id,
        // cookies, CORS): no map grows on the way. (A client connection
        // reads its next request into the map its answer leaves.)
        // Kept maps are cleared as they are kept.
        if !headers.is_empty() {
            headers.clear();
        }
        headers.reserve(count + HEADROOM);
        let mut framed = Framed::default();
        // A body's length is its reader's exact size, which every writer of
        // the answer frames it by: the field stays only where no body
        // follows (HEAD, 204, 304), as the length of the one there would be.
        let keep_length = bodiless(method, status);
        for &(ns, ne, vs, ve) in &at[..count] {
            let name = HeaderName::from_bytes(&head[ns as usize..ne as usize])
                .map_err(|_| Error::Invalid("a bad header name"))?;
            if !framed.note(&name, &head[vs as usize..ve as usize])
                || (name == header::CONTENT_LENGTH && !keep_length)
            {
                continue;
            }
            let value = HeaderValue::from_maybe_shared(head.slice(vs as usize..ve as usize))
                .map_err(|_| Error::Invalid("a bad header value"))?;
            headers.append(name, value);
        }
        let body = answer_framing(framed, status, version, method)?;
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = status;
        parts.version = version;
        parts.headers = std::mem::take(headers);
        return Ok(Some(Head { parts, body }));
    }
}

/// What the fields that frame an answer say, noted as its head is read
/// (no lookups afterwards).
#[derive(Clone, Copy)]
struct Framed {
    /// `Connection` names `close`, `keep-alive`.
    close: bool,
    keep_alive: bool,
    transfer_encoding: bool,
    /// The last coding of the last `Transfer-Encoding` is `chunked`.
    chunked: bool,
    /// What `Content-Length` says; an error only counts when the length
    /// frames the body.
    length: Result<Option<u64>, &'static str>,
}

impl Default for Framed {
    fn default() -> Self {
        Self {
            close: false,
            keep_alive: false,
            transfer_encoding: false,
            chunked: false,
            length: Ok(None),
        }
    }
}

impl Framed {
    /// Notes a field; `false` when the answer's map need not hold it: a
    /// hop-by-hop field, never passed on (RFC 9110 §7.6.1), except a
    /// `Connection` that names fields besides its options, which the
    /// hop-by-hop stripping reads later.
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> bool {
        if name == header::CONNECTION {
            let mut names_fields = false;
            for token in super::headers::list_items(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else {
                    names_fields |= !token.is_empty();
                }
            }
            return names_fields;
        }
        if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            // Read as text only (a value of other bytes frames nothing).
            self.chunked = value
                .iter()
                .all(|&b| b == b'\t' || (b' '..b'\x7f').contains(&b))
                && value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return false;
        }
        if name == header::CONTENT_LENGTH {
            if let Ok(length) = &mut self.length
                && let Err(why) = add_length(value, length)
            {
                self.length = Err(why);
            }
            return true;
        }
        !super::headers::is_hop_by_hop(name)
    }
}

/// How the answer's body is framed (RFC 9112 §6.3), and whether the
/// connection may be kept after it.
fn answer_framing(
    framed: Framed,
    status: StatusCode,
    version: Version,
    method: &Method,
) -> Result<BodyReader, Error> {
    let mut keep = match version {
        Version::HTTP_11 => !framed.close,
        _ => framed.keep_alive,
    };
    if bodiless(method, status) {
        return Ok(BodyReader::new(Framing::Done, keep));
    }
    if framed.transfer_encoding {
        if version != Version::HTTP_11 {
            return Err(Error::Invalid("Transfer-Encoding in an HTTP/1.0 answer"));
        }
        // Both: the length cannot be trusted, nor what follows the body.
        if framed.length != Ok(None) {
            keep = false;
        }
        if framed.chunked {
            return Ok(BodyReader::new(Framing::Chunked(Chunk::Size), keep));
        }
        return Ok(BodyReader::new(Framing::UntilClose, false));
    }
    Ok(match framed.length.map_err(Error::Invalid)? {
        Some(0) => BodyReader::new(Framing::Done, keep),
        Some(n) => BodyReader::new(Framing::Length(n), keep),
        None => BodyReader::new(Framing::UntilClose, false),
    })
}

/// An answer to `method` with `status` has no body (RFC 9112 §6.3).
fn bodiless(method: &Method, status: StatusCode) -> bool {
    *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Reads an answer's body out of the connection's buffer.
pub struct BodyReader {
    framing: Framing,
    /// Whether the connection may be kept once the body has ended.
    keep: bool,
    /// The rest of a request that the answer came before.
    sending: Option<Box<Outgoing>>,
}

enum Framing {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Where a chunked body is.
enum Chunk {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

/// What the buffer gave.
enum Step {
    Frame(Frame<Bytes>),
    End,
    Fail(Error),
    /// The buffer must be filled first.
    More,
}

impl BodyReader {
    fn new(framing: Framing, keep: bool) -> Self {
        Self {
            framing,
            keep,
            sending: None,
        }
    }

    /// The connection ended with the buffer read: the end of a body read
    /// up to the close, a body cut short for any other.
    fn closed(&mut self) -> Result<(), Error> {
        match self.framing {
            Framing::UntilClose => {
                self.framing = Framing::Done;
                Ok(())
            }
            _ => Err(Error::Closed("body")),
        }
    }

    pub fn is_end(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Length(0))
    }

    pub fn size_hint(&self) -> http_body::SizeHint {
        match self.framing {
            Framing::Done => http_body::SizeHint::with_exact(0),
            Framing::Length(n) => http_body::SizeHint::with_exact(n),
            _ => http_body::SizeHint::default(),
        }
    }

    /// The next step out of `buf`.
    fn next(&mut self, buf: &mut BytesMut) -> Step {
        loop {
            match &mut self.framing {
                Framing::Done | Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Step::End;
                }
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Step::More;
                    }
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    *left -= n as u64;
                    return Step::Frame(Frame::data(buf.split_to(n).freeze()));
                }
                Framing::UntilClose => {
                    if buf.is_empty() {
                        return Step::More;
                    }
                    return Step::Frame(Frame::data(buf.split().freeze()));
                }
                Framing::Chunked(chunk) => match chunk {
                    Chunk::Size => match httparse::parse_chunk_size(buf) {
                        // A size line starts with a digit and has no bare
                        // LF in its extensions (httparse lets both by).
                        Ok(httparse::Status::Complete((used, size)))
                            if used <= MAX_CHUNK_LINE
                                && buf[0].is_ascii_hexdigit()
                                && !buf[..used - 2].contains(&b'\n') =>
                        {
                            buf.advance(used);
                            *chunk = if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => {
                            return Step::More;
                        }
                        _ => return Step::Fail(Error::Invalid("a bad chunk size")),
                    },
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Step::More;
                        }
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                        *left -= n as u64;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Step::Frame(Frame::data(buf.split_to(n).freeze()));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Step::More;
                        }
                        if &buf[..2] != b"\r\n" {
                            return Step::Fail(Error::Invalid("a chunk without its CRLF"));
                        }
                        buf.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => return self.trailers(buf),
                },
            }
        }
    }

    /// The trailer section after the last chunk: a frame when it has
    /// fields, the end when it is empty.
    fn trailers(&mut self, buf: &mut BytesMut) -> Step {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let (used, trailers) = match httparse::parse_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete((used, fields))) if used <= MAX_HEAD => {
                let mut map = HeaderMap::with_capacity(fields.len());
                for f in fields.iter() {
                    let (Ok(name), Ok(value)) = (
                        HeaderName::from_bytes(f.name.as_bytes()),
                        HeaderValue::from_bytes(f.value),
                    ) else {
                        return Step::Fail(Error::Invalid("a bad trailer field"));
                    };
                    map.append(name, value);
                }
                (used, map)
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Step::More,
            _ => return Step::Fail(Error::Invalid("a bad trailer section")),
        };
        buf.advance(used);
        self.framing = Framing::Done;
        if trailers.is_empty() {
            Step::End
        } else {
            Step::Frame(Frame::trailers(trailers))
        }
    }
}

/// An answer read off a whole wire by [`read_answer`].
#[derive(Debug, PartialEq)]
pub struct WholeAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The length that frames the body, when one does (its reader's exact
    /// size as the head is read; the field itself is not in `headers`).
    pub length: Option<u64>,
    pub body: Vec<u8>,
    pub trailers: Option<HeaderMap>,
    /// Whether the connection could carry another request after it.
    pub reusable: bool,
}

/// Reads the answer to a `method` request out of `wire`, fed to the parser
/// `step` bytes at a time (at least one) as a connection would give them,
/// the connection ending after `wire`. The same reading as an exchange's,
/// without a socket: for the fuzz target and tests, which check that where
/// the reads split makes no difference.
pub fn read_answer(wire: &[u8], method: &Method, step: usize) -> Result<WholeAnswer, Error> {
    let step = step.max(1);
    let mut fed = 0;
    let mut buf = BytesMut::new();
    let mut feed = |buf: &mut BytesMut| {
        let end = wire.len().min(fed + step);
        buf.extend_from_slice(&wire[fed..end]);
        let more = end > fed;
        fed = end;
        more
    };
    let head = loop {
        if let Some(head) = parse_head(&mut buf, method, &mut HeaderMap::new())? {
            break head;
        }
        if buf.len() >= MAX_HEAD {
            return Err(Error::Invalid("the head is too large"));
        }
        if !feed(&mut buf) {
            return Err(Error::Closed("head"));
        }
    };
    let mut reader = head.body;
    let length = reader.size_hint().exact();
    let mut body = Vec::new();
    let mut trailers = None;
    loop {
        match reader.next(&mut buf) {
            Step::Frame(frame) => match frame.into_data() {
                Ok(data) => body.extend_from_slice(&data),
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Step::End => break,
            Step::Fail(e) => return Err(e),
            Step::More => {
                if !feed(&mut buf) {
                    reader.closed()?;
                    break;
                }
            }
        }
    }
    // What the connection holds after the answer: the rest of the wire.
    let left = buf.len() + (wire.len() - fed);
    Ok(WholeAnswer {
        status: head.parts.status,
        headers: head.parts.headers,
        length,
        body,
        trailers,
        reusable: reader.keep && reader.is_end() && left == 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn head_of(bytes: &[u8], method: &Method) -> Result<Option<Head>, Error> {
        parse_head(&mut BytesMut::from(bytes), method, &mut HeaderMap::new())
    }

    fn framing_of(bytes: &[u8], method: &Method) -> (http::response::Parts, BodyReader) {
        let head = head_of(bytes, method).unwrap().unwrap();
        (head.parts, head.body)
    }

    /// Every frame `reader` reads out of `wire`, fed one byte at a time:
    /// the data joined, and the trailers.
    fn read_bytewise(
        reader: &mut BodyReader,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        loop {
            match reader.next(&mut buf) {
                Step::Frame(frame) => match frame.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Step::End => return Ok((data, trailers)),
                Step::Fail(e) => return Err(e),
                Step::More => {
                    assert!(fed < wire.len(), "the reader wants more than the wire has");
                    buf.extend_from_slice(&wire[fed..fed + 1]);
                    fed += 1;
                }
            }
        }
    }

    #[test]
    fn heads_are_parsed_with_their_fields() {
        let (parts, body) = framing_of(
            b"HTTP/1.1 201 Created\r\nLocation: /orders/1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n{}",
            &Method::POST,
        );
        assert_eq!(parts.status, StatusCode::CREATED);
        assert_eq!(parts.version, Version::HTTP_11);
        assert_eq!(parts.headers["location"], "/orders/1");
        assert_eq!(parts.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(body.keep);
        // Not all in: nothing yet.
        assert!(
            head_of(b"HTTP/1.1 200 OK\r\nContent-Len", &Method::GET)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn interim_answers_are_skipped_and_a_stray_101_is_refused() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"[..],
        );
        let head = parse_head(&mut buf, &Method::POST, &mut HeaderMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(head.parts.status, StatusCode::OK);
        assert!(!head.parts.headers.contains_key("link"));
        assert_eq!(&buf[..], b"abc");
        assert!(matches!(
            head_of(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
                &Method::GET
            ),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn bad_heads_are_refused() {
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTX/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                matches!(head_of(bad, &Method::GET), Err(Error::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(
            head_of(&many, &Method::GET),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn bodies_are_framed_as_rfc_9112_says() {
        // No body: HEAD, 204, 304, whatever they announce.
        for (wire, method) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"[..],
                Method::HEAD,
            ),
            (
                b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
                Method::GET,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                Method::GET,
            ),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", Method::GET),
        ] {
            let (_, body) = framing_of(wire, &method);
            assert!(
                body.is_end() && body.keep,
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        // Equal lengths, listed or repeated, are one length.
        let (_, body) = framing_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n",
            &Method::GET,
        );
        assert_eq!(body.size_hint().exact(), Some(4));
        // A body's length is its exact size, not a field of the map; an
        // answer without a body keeps the length the body would have.
        let (parts, body) = framing_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Other: 1\r\n\r\n",
            &Method::GET,
        );
        assert!(!parts.headers.contains_key(header::CONTENT_LENGTH));
        assert_eq!(parts.headers["x-other"], "1");
        assert_eq!(body.size_hint().exact(), Some(12));
        for (wire, method) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"[..],
                Method::HEAD,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n",
                Method::GET,
            ),
        ] {
            let (parts, _) = framing_of(wire, &method);
            assert_eq!(parts.headers[header::CONTENT_LENGTH], "12");
        }
        // Chunked wins over a length, which goes, and the connection with it.
        let (parts, body) = framing_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET,
        );
        assert!(!parts.headers.contains_key(header::CONTENT_LENGTH));
        assert!(matches!(body.framing, Framing::Chunked(_)) && !body.keep);
        // A coding that does not end in chunked, or no framing at all: up
        // to the end of the connection, which is then not kept.
        for wire in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n\r\n",
        ] {
            let (_, body) = framing_of(wire, &Method::GET);
            assert!(matches!(body.framing, Framing::UntilClose) && !body.keep);
        }
        // Keep-alive as the version and `Connection` say.
        let keep = |wire: &[u8]| framing_of(wire, &Method::GET).1.keep;
        assert!(!keep(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn chunked_bodies_are_read_at_every_split() {
        let wire = b"5;ext=\"a b\"\r\nhello\r\n19\r\n, chunked and split here.\r\n0\r\nX-Checksum: 42\r\n\r\n";
        let mut reader = BodyReader::new(Framing::Chunked(Chunk::Size), true);
        let (data, trailers) = read_bytewise(&mut reader, wire).unwrap();
        assert_eq!(data, b"hello, chunked and split here.");
        assert_eq!(trailers.unwrap()["x-checksum"], "42");
        assert!(reader.is_end());
        // No trailers: the end right after the last chunk.
        let mut reader = BodyReader::new(Framing::Chunked(Chunk::Size), true);
        let (data, trailers) = read_bytewise(&mut reader, b"3\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!((data.as_slice(), trailers.is_none()), (&b"abc"[..], true));
        for bad in [
            &b"z\r\n"[..],
            b"3\r\nabcX\r\n",
            b"fffffffffffffffff\r\n",
            b"0\r\nBad Trailer\r\n\r\n",
            // No digit: not a last chunk (httparse would read size 0).
            b"\r\n",
            b";x\r\n",
            // A bare LF in an extension.
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        ] {
            let mut reader = BodyReader::new(Framing::Chunked(Chunk::Size), true);
            let result = read_bytewise(&mut reader, bad);
            assert!(
                matches!(result, Err(Error::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A size line that never ends is not read forever.
        let mut reader = BodyReader::new(Framing::Chunked(Chunk::Size), true);
        let mut buf = BytesMut::from(&[b'1'; 1][..]);
        buf.extend_from_slice(&[b';'; MAX_CHUNK_LINE]);
        assert!(matches!(
            reader.next(&mut buf),
            Step::Fail(Error::Invalid(_))
        ));
    }

    #[test]
    fn the_reading_does_not_depend_on_how_the_bytes_come() {
        let wires: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
            b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\n\r\n<h1>404</h1>",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ];
        for wire in wires {
            let whole = read_answer(wire, &Method::GET, wire.len());
            for step in [1, 2, 7] {
                let pieces = read_answer(wire, &Method::GET, step);
                match (&whole, &pieces) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b),
                    (Err(_), Err(_)) => {}
                    _ => panic!("{whole:?} / {pieces:?}"),
                }
            }
        }
        let kept = |wire: &[u8]| read_answer(wire, &Method::GET, 3).map(|a| a.reusable);
        assert!(kept(wires[0]).unwrap());
        assert!(kept(wires[1]).unwrap());
        // Until the close, and with bytes after the answer: not kept.
        assert!(!kept(wires[2]).unwrap());
        assert!(!kept(wires[3]).unwrap());
        assert!(matches!(kept(wires[4]), Err(Error::Closed("body"))));
        // A head over the bound is refused whether it comes whole or not.
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        big.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        for step in [big.len(), 4096] {
            assert!(matches!(
                read_answer(&big, &Method::GET, step),
                Err(Error::Invalid(_))
            ));
        }
    }

    /// A connection to a listener, and the listener's end of it.
    async fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Connection::new(client), server)
    }

    /// Reads from `server` until `end` has come; all that was read.
    async fn read_until(server: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(end) {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), server.read(&mut buf))
                .await
                .expect("the request came in time")
                .unwrap();
            assert!(
                n > 0,
                "the connection ended after {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    fn request(method: Method, uri: &str, body: Body) -> Request<Body> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri.parse().unwrap();
        req.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("upstream"));
        req
    }

    /// A body of unknown size: `chunks`, then the end (or, when `hang`,
    /// nothing more ever).
    fn streamed(chunks: &[&'static str], hang: bool) -> Body {
        use futures_util::StreamExt;
        let frames = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c.as_bytes()))))
                .collect::<Vec<_>>(),
        );
        let tail = if hang {
            futures_util::stream::pending().boxed()
        } else {
            futures_util::stream::empty().boxed()
        };
        http_body_util::StreamBody::new(frames.chain(tail)).boxed_unsync()
    }

    /// The data of the body `reader` reads, to its end.
    async fn body_of(conn: &mut Connection, reader: &mut BodyReader) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        while let Some(frame) = poll_fn(|cx| conn.poll_body(cx, reader)).await {
            if let Ok(data) = frame?.into_data() {
                out.extend_from_slice(&data);
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_target_given_is_written_in_place_of_the_uris() {
        let (mut conn, mut server) = pair().await;
        let upstream = tokio::spawn(async move {
            let get = read_until(&mut server, b"\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            get
        });
        let mut req = request(Method::GET, "/order/quote?x=1", crate::body::empty());
        req.headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("up.example"));
        let head = conn
            .send_to(Box::new(req), Some("/orders/00ff/quote?x=1"), None)
            .await
            .unwrap();
        assert_eq!(head.parts.status, StatusCode::OK);
        let sent = String::from_utf8(upstream.await.unwrap()).unwrap();
        assert!(
            sent.starts_with("GET /orders/00ff/quote?x=1 HTTP/1.1\r\nhost: up.example\r\n"),
            "{sent}"
        );
    }

    #[tokio::test]
    async fn a_connection_holds_a_read_buffer_only_while_an_answer_comes_in() {
        // The test's thread starts with no spare buffers.
        while crate::spare::take(&SPARE_READS).is_some() {}
        let (mut conn, mut server) = pair().await;
        assert_eq!(conn.read.capacity(), 0, "a new connection holds none");
        // The request goes out; the upstream has not answered yet.
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            conn.send(request(Method::GET, "/slow", crate::body::empty())),
        )
        .await;
        assert!(waiting.is_err(), "no answer yet");
        assert_eq!(
            conn.read.capacity(),
            0,
            "waiting for the answer, it holds none"
        );
        read_until(&mut server, b"\r\n\r\n").await;

        let (mut conn, mut server) = pair().await;
        let upstream = tokio::spawn(async move {
            for _ in 0..2 {
                read_until(&mut server, b"\r\n\r\n").await;
                server
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                    .await
                    .unwrap();
            }
            server
        });
        let mut head = conn
            .send(request(Method::GET, "/orders/1", crate::body::empty()))
            .await
            .unwrap();
        assert_eq!(body_of(&mut conn, &mut head.body).await.unwrap(), b"hello");
        assert!(conn.read.capacity() > 0);
        let at = conn.read.as_ptr();
        // Idle: the buffer is the thread's next exchange's, not the
        // connection's, and it holds none of the answer.
        conn.rest();
        assert_eq!(conn.read.capacity(), 0, "an idle connection holds none");
        let spare = crate::spare::take(&SPARE_READS).expect("the buffer is kept");
        assert!(spare.is_empty());
        assert_eq!(spare.as_ptr(), at);
        crate::spare::give(&SPARE_READS, spare, SPARE_READ_BUFFERS);
        // The next answer is read into it.
        let mut head = conn
            .send(request(Method::GET, "/orders/1", crate::body::empty()))
            .await
            .unwrap();
        // Just past the head (38 bytes), in the same buffer.
        let into = (conn.read.as_ptr() as usize).wrapping_sub(at as usize);
        assert_eq!(into, 38, "the spare buffer is taken");
        assert_eq!(body_of(&mut conn, &mut head.body).await.unwrap(), b"hello");
        assert!(crate::spare::take(&SPARE_READS).is_none());
        drop(upstream.await.unwrap());
    }

    #[tokio::test]
    async fn requests_are_framed_and_the_connection_is_kept() {
        let (mut conn, mut server) = pair().await;
        let upstream = tokio::spawn(async move {
            let get = read_until(&mut server, b"\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .await
                .unwrap();
            let post = read_until(&mut server, b"0\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
                .await
                .unwrap();
            let put = read_until(&mut server, b"abc").await;
            server
                .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
            (get, post, put)
        });
        let mut head = conn
            .send(request(Method::GET, "/orders/1?x=1", crate::body::empty()))
            .await
            .unwrap();
        assert_eq!(body_of(&mut conn, &mut head.body).await.unwrap(), b"hello");
        let head = conn
            .send(request(
                Method::POST,
                "/orders",
                streamed(&["{\"a\":", "1}"], false),
            ))
            .await
            .unwrap();
        assert_eq!(head.parts.status, StatusCode::CREATED);
        // Its map is the last request's, kept: cleared, and without the
        // answer's hop-by-hop `Transfer-Encoding`.
        assert!(head.parts.headers.is_empty(), "{:?}", head.parts.headers);
        let mut reader = head.body;
        assert!(!reader.is_end());
        assert_eq!(body_of(&mut conn, &mut reader).await.unwrap(), b"ok");
        assert!(conn.reusable(&reader));
        let head = conn
            .send(request(Method::PUT, "/orders/1", crate::body::full("abc")))
            .await
            .unwrap();
        assert!(head.parts.headers.is_empty(), "{:?}", head.parts.headers);
        assert!(conn.reusable(&head.body));
        let (get, post, put) = upstream.await.unwrap();
        assert_eq!(get, b"GET /orders/1?x=1 HTTP/1.1\r\nhost: upstream\r\n\r\n");
        assert_eq!(
            String::from_utf8(post).unwrap(),
            "POST /orders HTTP/1.1\r\nhost: upstream\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(put).unwrap(),
            "PUT /orders/1 HTTP/1.1\r\nhost: upstream\r\ncontent-length: 3\r\n\r\nabc"
        );
    }

    /// A body whose frames the test sends when it likes.
    fn channel() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
        });
        (tx, http_body_util::StreamBody::new(frames).boxed_unsync())
    }

    #[tokio::test]
    async fn a_body_goes_on_after_an_answer_that_came_first() {
        // An echo backend: answers at once, then sends back what it reads.
        let (mut conn, mut server) = pair().await;
        let upstream = tokio::spawn(async move {
            read_until(&mut server, b"\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            let body = read_until(&mut server, b"0\r\n\r\n").await;
            server.write_all(b"4\r\necho\r\n0\r\n\r\n").await.unwrap();
            (body, server)
        });
        let (tx, body) = channel();
        let head = conn
            .send(request(Method::POST, "/echo", body))
            .await
            .unwrap();
        assert_eq!(head.parts.status, StatusCode::OK);
        // Sent only now that the answer's head is in.
        tx.send(Bytes::from_static(b"late")).await.unwrap();
        drop(tx);
        let mut reader = head.body;
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            body_of(&mut conn, &mut reader),
        )
        .await
        .expect("the answer ended: the body went on")
        .unwrap();
        assert_eq!(got, b"echo");
        assert!(conn.reusable(&reader));
        let (sent, _server) = upstream.await.unwrap();
        assert!(sent.ends_with(b"4\r\nlate\r\n0\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_get_with_a_body_of_unknown_size_goes_without_it() {
        let (mut conn, mut server) = pair().await;
        let upstream = tokio::spawn(async move {
            let head = read_until(&mut server, b"\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            head
        });
        let head = conn
            .send(request(Method::GET, "/", streamed(&["ignored"], false)))
            .await
            .unwrap();
        assert!(conn.reusable(&head.body));
        assert_eq!(
            upstream.await.unwrap(),
            b"GET / HTTP/1.1\r\nhost: upstream\r\n\r\n"
        );
        // The head as written for a request with `length` and `body`.
        let head = |method: Method, length: &'static str, body: &Body| {
            let mut parts = request(method, "/", crate::body::empty()).into_parts().0;
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static(length));
            let framing = request_framing(&parts, body);
            let mut out = Vec::new();
            encode_head(&parts, None, framing.as_ref(), None, &mut out);
            (framing, String::from_utf8(out).unwrap())
        };
        // An ended body whose Content-Length says otherwise goes with 0.
        let (framing, written) = head(Method::POST, "5", &crate::body::empty());
        assert!(matches!(framing, Some(Sending::Length(0))));
        assert_eq!(
            written,
            "POST / HTTP/1.1\r\nhost: upstream\r\ncontent-length: 0\r\n\r\n"
        );
        // A chunked body of a GET is not sent, whatever its fields say
        // (as hyper's client does); a POST's goes chunked, said once.
        for (method, framed) in [(Method::GET, None), (Method::POST, Some("chunked"))] {
            let mut parts = request(method.clone(), "/", crate::body::empty())
                .into_parts()
                .0;
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            let body = streamed(&["abc"], false);
            let framing = request_framing(&parts, &body);
            assert_eq!(framing.is_some(), framed.is_some(), "{method}");
            let mut out = Vec::new();
            encode_head(&parts, None, framing.as_ref(), None, &mut out);
            let written = String::from_utf8(out).unwrap();
            assert_eq!(
                written.matches("transfer-encoding").count(),
                usize::from(framed.is_some()),
                "{written}"
            );
        }
        // A repeated length is written once.
        let (framing, written) = head(Method::PUT, "3, 3", &crate::body::full("abc"));
        assert!(matches!(framing, Some(Sending::Length(3))));
        assert_eq!(
            written,
            "PUT / HTTP/1.1\r\nhost: upstream\r\ncontent-length: 3\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_body_that_breaks_its_length_is_the_clients_error_and_not_sent_short() {
        for (announced, chunks) in [("10", &["short"][..]), ("2", &["too long"][..])] {
            let (mut conn, mut server) = pair().await;
            let mut req = request(Method::POST, "/orders", streamed(chunks, false));
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static(announced));
            let err = conn.send(req).await.err().expect("the exchange failed").0;
            assert!(matches!(err, Error::RequestBody(_)), "{err}");
            drop(conn);
            // What reached the upstream is never a whole request.
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.unwrap();
            let got = String::from_utf8(got).unwrap();
            assert!(
                !got.contains("too long") && !got.ends_with("short"),
                "{got}"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_before_the_whole_body_is_taken_and_the_connection_not_kept() {
        let (mut conn, mut server) = pair().await;
        let upstream = tokio::spawn(async move {
            read_until(&mut server, b"first\r\n").await;
            server
                .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            server
        });
        let head = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.send(request(Method::POST, "/orders", streamed(&["first"], true))),
        )
        .await
        .expect("the answer is not held up by the body")
        .unwrap();
        assert_eq!(head.parts.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!conn.reusable(&head.body));
        drop(upstream.await.unwrap());
    }

    #[tokio::test]
    async fn answers_cut_short_fail_and_until_close_bodies_end_there() {
        // Cut in the head, in a length, in a chunk: each is an error.
        for wire in [
            &b"HTTP/1.1 200 OK\r\nContent-"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nhalf",
        ] {
            let (mut conn, mut server) = pair().await;
            let upstream = tokio::spawn(async move {
                read_until(&mut server, b"\r\n\r\n").await;
                server.write_all(wire).await.unwrap();
            });
            let result = match conn
                .send(request(Method::GET, "/", crate::body::empty()))
                .await
            {
                Ok(mut head) => body_of(&mut conn, &mut head.body).await.map(|_| ()),
                Err((e, _)) => Err(e),
            };
            upstream.await.unwrap();
            assert!(
                matches!(result, Err(Error::Closed(_))),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
        let (mut conn, mut server) = pair().await;
        tokio::spawn(async move {
            read_until(&mut server, b"\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
                .await
                .unwrap();
        });
        let head = conn
            .send(request(Method::GET, "/", crate::body::empty()))
            .await
            .unwrap();
        let mut reader = head.body;
        let got = body_of(&mut conn, &mut reader).await.unwrap();
        assert_eq!(got, b"until the end");
        assert!(reader.is_end() && !conn.reusable(&reader));
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_gives_a_bodiless_request_back() {
        let (mut conn, server) = pair().await;
        assert!(conn.is_open());
        drop(server);
        // Whether or not the close was seen yet, nothing answers, and a
        // GET without a body can go again elsewhere.
        let (e, again) = conn
            .send(request(Method::GET, "/x", crate::body::empty()))
            .await
            .err()
            .expect("nothing answers");
        assert!(matches!(e, Error::Closed(_) | Error::Io(_)), "{e}");
        assert_eq!(again.expect("given back").uri(), "/x");
        // So is a PUT without one; a POST only if nothing of it went out.
        let (mut conn, server) = pair().await;
        drop(server);
        let (_, again) = conn
            .send(request(Method::PUT, "/y", crate::body::empty()))
            .await
            .err()
            .expect("nothing answers");
        assert!(again.is_some());
        // Seen closed before anything is sent.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while conn.is_open() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the close was seen");
    }

    #[tokio::test]
    async fn an_answer_after_the_request_went_out_is_never_given_back() {
        let (mut conn, mut server) = pair().await;
        tokio::spawn(async move {
            read_until(&mut server, b"\r\n\r\n").await;
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-")
                .await
                .unwrap();
        });
        let (e, again) = conn
            .send(request(Method::GET, "/", crate::body::empty()))
            .await
            .err()
            .expect("cut short");
        assert!(matches!(e, Error::Closed("head")), "{e}");
        assert!(again.is_none(), "part of an answer came: not sent again");
    }
}
