//! HTTP/1.1 on a client connection, read and written by the gateway itself
//! for the requests that make up nearly all of an orders API's traffic:
//! heads without a body, one after another on a kept-alive connection.
//!
//! A head that does not come whole in one read, or does not parse, is read
//! on and checked as the prelude checks a connection's first head: by the
//! header read timeout (else a 408 fault), and malformed or oversized heads
//! get the same 400, 414 and 431 faults, with a request id. Requests this
//! codec does not serve are handed to hyper with the bytes read so far
//! ([`End::HandOver`]), and hyper serves the rest of the connection as it
//! serves every connection it is given: bodies (`Content-Length` other than
//! 0, `Transfer-Encoding`), `Expect`, upgrades, `CONNECT`, HTTP/1.0,
//! targets other than a path, more than 64 header fields. This codec never
//! frames a request body, so every framing rule that keeps requests from
//! being smuggled stays hyper's and the prelude's.
//!
//! Why by hand: hyper's server dispatches every request through a state
//! machine built for what this codec hands over (request bodies read while
//! the answer is made, upgrades), with a timer per head and 16 KiB of
//! buffers per connection; a bodiless request needs a parse, a call and a
//! write. The parsing is `httparse` (hyper's own parser).
//!
//! Answers are framed as hyper frames them (RFC 9112 §6): no body for HEAD,
//! 204 and 304; a body of known size by its `Content-Length`; otherwise by
//! the answer's own valid `Content-Length`, else chunked; no trailers, as
//! none is announced (`Trailer` is hop-by-hop). An answer's body that gives
//! more or less than its length, or fails, ends the connection; so does a
//! client that takes nothing of its answer for the idle timeout. At
//! shutdown, the answer in flight says `Connection: close`.

use super::activity::{Activity, Tracked};
use super::prelude::{self, Protocol, Rules, Start};
use super::{Control, GatewayService, HstsValue, RequestBody, Shared, idle_check};
use crate::body::Body;
use crate::context::{Facts, Peer};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use http::header::{
    CONNECTION, CONTENT_LENGTH, DATE, EXPECT, HeaderName, HeaderValue, STRICT_TRANSPORT_SECURITY,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tower::ServiceExt;

/// How a connection served here ended.
pub(super) enum End<I> {
    /// Closed: by the client, at shutdown, when idle, or on an error.
    Closed,
    /// A request this codec leaves to hyper: the connection, with the bytes
    /// read from it and not yet consumed, the request's head first.
    HandOver(I, BytesMut),
}

/// Room made in the read buffer before a read: most heads are a few hundred
/// bytes (a longer one is read on by the prelude).
const READ_SIZE: usize = 4096;
/// Less room than this left, the buffer is made `READ_SIZE` again (its
/// space is taken back when the last request's head is gone).
const MIN_ROOM: usize = 1024;
/// Header fields parsed here; a head with more goes to hyper once the
/// prelude has held it to the server's hard limit.
const MAX_HEADERS: usize = 64;
/// Room in a request's header map for the fields the gateway adds on the
/// way upstream (request id, `X-Forwarded-*`), so it is not grown for them.
const HEADER_ROOM: usize = 6;
/// An answer's body is gathered behind its head up to this size and
/// written with it in one call; a larger piece is written on its own.
const GATHER: usize = 16 * 1024;

/// What one connection's requests share.
pub(super) struct Conn<'a> {
    pub peer: std::net::SocketAddr,
    /// When the connection was accepted: the first head's deadline counts
    /// from it.
    pub accepted: Instant,
    pub tls: Option<&'a HstsValue>,
    pub activity: &'a Activity,
}

/// Serves requests on `io` (whose first bytes, `buf`, the prelude read)
/// until the connection ends or a request is one for hyper.
pub(super) async fn serve<I, S>(
    mut io: Tracked<I>,
    mut buf: BytesMut,
    conn: Conn<'_>,
    shared: &Shared<S>,
) -> End<Tracked<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: GatewayService,
{
    let idle = shared.limits().idle_timeout;
    // Waiting for its next request, a connection is also held to the header
    // read timeout, as hyper holds it (and nginx to its keep-alive timeout).
    let between = idle.min(shared.limits().header_read_timeout);
    let max_head = Rules::hard_head_bytes(shared.limits());
    let rules = Rules::new(*shared.limits(), conn.tls.is_none()).for_http1();
    let tls = conn.tls.is_some();
    let mut first = true;
    // Made when the connection first waits for a head: not at all for a
    // connection that closes after its first request.
    let mut control = None;
    let mut room = Room::take();
    // The connection's own handle on the stack, readied before each request.
    let mut service = shared.service.clone();
    loop {
        while buf.is_empty() {
            if buf.capacity() - buf.len() < MIN_ROOM {
                buf.reserve(READ_SIZE);
            }
            let control = control.get_or_insert_with(|| super::controls(shared, between));
            // The read first: a connection woken by its next request does
            // not look at its events (they wake it themselves).
            let event = tokio::select! {
                biased;
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(_) => continue,
                },
                Some(event) = control.next() => event,
            };
            match event {
                Control::Stop => return close(io, tls, idle).await,
                Control::IdleCheck => {
                    let quiet = conn.activity.quiet_for();
                    if quiet >= between {
                        return close(io, tls, idle).await;
                    }
                    control.push(Box::pin(idle_check(
                        tokio::time::Instant::now() + (between - quiet),
                    )));
                }
                Control::FirstHead => {}
            }
        }
        let parsed = parse(&mut buf, max_head, &mut room.headers);
        let first_head = std::mem::replace(&mut first, false);
        let (mut req, keep_alive) = match parsed {
            Some(parsed) => parsed,
            // A head in pieces, one that looks malformed, or one for hyper:
            // read on and check it as a connection's first head is checked;
            // the first head's time counts from the accept, a later one's
            // from its first bytes.
            None => {
                let since = if first_head {
                    conn.accepted
                } else {
                    Instant::now()
                };
                match prelude::read_on(&mut io, buf, &rules, since).await {
                    Start::Ready(Protocol::Http1, mut whole) => {
                        match parse(&mut whole, max_head, &mut room.headers) {
                            Some(parsed) => {
                                buf = whole;
                                parsed
                            }
                            None => return End::HandOver(io, whole),
                        }
                    }
                    Start::Ready(Protocol::Http2, read) => return End::HandOver(io, read),
                    not_ready => {
                        shared.turn_away(&mut io, not_ready).await;
                        return End::Closed;
                    }
                }
            }
        };
        req.extensions_mut().insert(Facts::of_peer(Some(Peer {
            addr: conn.peer,
            tls: conn.tls.is_some(),
        })));
        let head = req.method() == Method::HEAD;
        let hsts = conn.tls.map(|hsts| hsts.load_full());
        let answer = match service.ready().await {
            Ok(service) => std::pin::pin!(service.call(req)).await,
            Err(never) => match never {},
        };
        let mut answer = match answer {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        // Over TLS only: a browser ignores it on plain HTTP (RFC 6797 8.1).
        if let Some(Some(value)) = hsts {
            answer
                .headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, (*value).clone());
        }
        // At shutdown the answer in flight says it is the last (the only
        // change the signal makes is to stop, or its sender is gone).
        let keep_alive = keep_alive && matches!(shared.stop.has_changed(), Ok(false));
        let written = write_answer(&mut io, answer, head, keep_alive, idle, &mut room).await;
        if room.out.capacity() > READ_SIZE {
            // A large answer's room is not kept for the connection's life.
            room.out = Vec::new();
        }
        match written {
            Ok(true) => {}
            Ok(false) => return close(io, tls, idle).await,
            Err(e) => {
                tracing::debug!(error = %e, peer = %conn.peer, "answer not written whole");
                return End::Closed;
            }
        }
    }
}

/// What the own codec makes of bytes at the start of a client connection's
/// buffer, beside what the prelude's checks of a head say of them: for the
/// fuzz target and tests.
#[derive(Debug)]
pub struct ClientHead {
    /// The request taken (its body left out), and whether the client keeps
    /// the connection after it; `None` when the bytes are left whole (to be
    /// read on with the checks, or handed to hyper).
    pub taken: Option<(Request<()>, bool)>,
    /// The bytes left in the buffer afterwards.
    pub rest: Vec<u8>,
    /// Whether the prelude's checks take the bytes as a whole HTTP/1 head
    /// that hyper would take too (as they check a connection's first head).
    pub checked: bool,
}

/// Reads `bytes` as the start of a client connection's buffer, as the own
/// codec does, under `limits`, and checks them as the prelude does.
pub fn read_client_head(bytes: &[u8], limits: &crate::config::ServerLimits) -> ClientHead {
    let mut buf = BytesMut::from(bytes);
    let taken = parse(
        &mut buf,
        Rules::hard_head_bytes(limits),
        &mut HeaderMap::new(),
    )
    .map(|(req, keep_alive)| (req.map(|_| ()), keep_alive));
    ClientHead {
        taken,
        rest: buf.to_vec(),
        checked: prelude::takes_http1(bytes, &Rules::new(*limits, true).for_http1()),
    }
}

/// Ends a connection: TLS says it closes (within `idle`); a TCP close is
/// said by closing.
async fn close<I>(mut io: I, tls: bool, idle: Duration) -> End<I>
where
    I: AsyncWrite + Unpin,
{
    if tls {
        let _ = within(idle, io.shutdown()).await;
    }
    End::Closed
}

/// Runs a write to the client, which fails once the client has taken
/// nothing for `idle`: a client that stops reading does not hold its
/// connection for ever. No timer unless the write has to wait.
async fn within<F, T>(idle: Duration, write: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    tokio::pin!(write);
    if let Some(done) = write.as_mut().now_or_never() {
        return done;
    }
    match tokio::time::timeout(idle, write).await {
        Ok(done) => done,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took nothing of its answer for the idle timeout",
        )),
    }
}

/// The request whose head starts `buf`, and whether the client keeps the
/// connection after it, taken off `buf`; `None` (and `buf` as it was) for
/// a request this codec leaves to hyper.
fn parse(
    buf: &mut BytesMut,
    max_head: usize,
    headers: &mut HeaderMap,
) -> Option<(Request<RequestBody>, bool)> {
    let bytes = buf.split().freeze();
    match request(&bytes, max_head, headers) {
        Some((req, keep_alive, len)) => {
            // Pipelined bytes go back; a request's head is all most reads hold.
            if len < bytes.len() {
                buf.extend_from_slice(&bytes[len..]);
            }
            Some((req, keep_alive))
        }
        None => {
            let mut front = BytesMut::from(bytes);
            front.unsplit(std::mem::take(buf));
            *buf = front;
            None
        }
    }
}

/// The request whose head starts `bytes`, whether the client keeps the
/// connection after it, and the head's length; its target and header
/// values are slices of `bytes`, its fields read into `headers` (a kept
/// map, cleared first), which it takes.
fn request(
    bytes: &Bytes,
    max_head: usize,
    headers: &mut HeaderMap,
) -> Option<(Request<RequestBody>, bool, usize)> {
    // Not initialised first: a header slot is 32 bytes, and most heads use
    // a few of them.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        _ => return None,
    };
    if parsed.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let path = parsed.path?;
    if method == Method::CONNECT || !path.starts_with('/') {
        return None;
    }
    let uri = Uri::from_maybe_shared(bytes.slice_ref(path.as_bytes())).ok()?;
    // Kept maps are cleared as they are kept.
    if !headers.is_empty() {
        headers.clear();
    }
    headers.reserve(parsed.headers.len() + HEADER_ROOM);
    let mut keep_alive = true;
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        if name == CONTENT_LENGTH {
            if field.value != b"0" {
                return None;
            }
        } else if name == TRANSFER_ENCODING || name == EXPECT || name == UPGRADE {
            return None;
        } else if name == CONNECTION && has_token(field.value, b"close") {
            keep_alive = false;
        }
        let value = HeaderValue::from_maybe_shared(bytes.slice_ref(field.value)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(RequestBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = std::mem::take(headers);
    Some((req, keep_alive, len))
}

/// Whether a comma-separated field value lists `token` (any case).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// How an answer's body is framed on the wire.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What a connection keeps from one request to the next, so that a
/// request allocates none of it: the answer's write buffer, and a header
/// map (an answer's, cleared for the next request's fields, as hyper keeps
/// one). When the connection ends, its room goes to the next connection
/// the thread serves ([`SPARE_ROOMS`]).
#[derive(Default)]
struct Room {
    out: Vec<u8>,
    headers: HeaderMap,
}

/// Rooms of ended connections kept per thread (a per-core worker is one;
/// the shared runtime's threads have one each) for the connections served
/// there next, so that a connection per request allocates no header map
/// and no write buffer of its own. Each holds at most `READ_SIZE` bytes and
/// `KEPT_FIELDS` fields of room, nothing of the requests it served.
const SPARE_ROOMS: usize = 16;

std::thread_local! {
    static SPARE: std::cell::Cell<Vec<(Vec<u8>, HeaderMap)>> =
        const { std::cell::Cell::new(Vec::new()) };
}

impl Room {
    /// A spare room of this thread, or a new one.
    fn take() -> Self {
        match crate::spare::take(&SPARE) {
            Some((out, headers)) => Room { out, headers },
            None => Room::default(),
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        // A larger room (a large answer's, a head with many fields that
        // went to hyper) is not kept; nor is an empty one.
        let keep = |out: usize, fields: usize| {
            (1..=READ_SIZE).contains(&out) && (1..=KEPT_FIELDS).contains(&fields)
        };
        if !keep(self.out.capacity(), self.headers.capacity()) {
            return;
        }
        let mut out = std::mem::take(&mut self.out);
        let mut headers = std::mem::take(&mut self.headers);
        // Cleared now: a spare holds none of a request's bytes.
        out.clear();
        headers.clear();
        crate::spare::give(&SPARE, (out, headers), SPARE_ROOMS);
    }
}

/// A header map is kept for the next request while it holds no more room
/// than this many fields (a large answer's is not kept for the connection's
/// life).
const KEPT_FIELDS: usize = 32;

/// Writes `answer` whole; whether the connection is kept after it.
async fn write_answer<I>(
    io: &mut I,
    answer: Response<Body>,
    head_request: bool,
    mut keep_alive: bool,
    idle: Duration,
    room: &mut Room,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let (mut parts, mut body) = answer.into_parts();
    let out = &mut room.out;
    let status = parts.status;
    if status.is_informational() {
        // Only an upgrade is answered 1xx, and upgrades are hyper's.
        return Err(io::Error::other(format!(
            "an interim answer ({status}) to a request without an upgrade"
        )));
    }
    out.clear();
    out.reserve(64 + parts.headers.len() * 48);
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut given_length = None;
    let mut dated = false;
    let mut said_close = false;
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH {
            given_length = given_length.or(Some(value));
            continue;
        } else if *name == TRANSFER_ENCODING {
            // The framing is this codec's to choose.
            continue;
        } else if *name == DATE {
            dated = true;
        } else if *name == CONNECTION && has_token(value.as_bytes(), b"close") {
            keep_alive = false;
            said_close = true;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let exact = body.size_hint().exact();
    let framing =
        if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            // HEAD and 304 may say the length the body would have; 204 says none.
            if status != StatusCode::NO_CONTENT {
                match (given_length, exact) {
                    (Some(given), _) => field(out, b"content-length", given.as_bytes()),
                    (None, Some(n)) if n > 0 => length_field(out, n),
                    _ => {}
                }
            }
            Framing::None
        } else if let Some(n) = exact {
            length_field(out, n);
            Framing::Length(n)
        } else if let Some(n) = given_length.and_then(|v| prelude::digits(v.as_bytes())) {
            length_field(out, n);
            Framing::Length(n)
        } else {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        };
    if !keep_alive && !said_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !dated {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if parts.headers.capacity() <= KEPT_FIELDS {
        // Cleared at once: its values are slices of the upstream's read
        // buffer, which can then be reused for the next answer. (A head
        // that failed part-way may leave fields: the parse clears what it
        // finds.)
        room.headers = std::mem::take(&mut parts.headers);
        room.headers.clear();
    }
    let mut left = match framing {
        Framing::None => {
            send(io, out, idle).await?;
            return Ok(keep_alive);
        }
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    loop {
        // What the body has now; with nothing yet, what is gathered goes
        // out before the wait.
        let next = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending if !out.is_empty() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => Poll::Ready(Some(frame)),
        })
        .await;
        let frame = match next {
            None => {
                send(io, out, idle).await?;
                out.clear();
                continue;
            }
            Some(None) => break,
            Some(Some(Err(e))) => return Err(io::Error::other(e)),
            Some(Some(Ok(frame))) => frame,
        };
        // Trailers are not passed on: `Trailer` is hop-by-hop, so the
        // client was told of none (as hyper, which sends only announced ones).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match left.as_mut() {
            Some(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err(io::Error::other(
                        "the answer's body is longer than its length",
                    ));
                }
                *left -= n;
                gather(io, out, &data, idle).await?;
            }
            None => {
                chunk_size(out, data.len());
                gather(io, out, &data, idle).await?;
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    match left {
        Some(0) => {}
        Some(_) => {
            return Err(io::Error::other(
                "the answer's body ended before its length",
            ));
        }
        None => out.extend_from_slice(b"0\r\n\r\n"),
    }
    send(io, out, idle).await?;
    out.clear();
    Ok(keep_alive)
}

/// Writes `out` whole and flushes it (TLS keeps records until flushed).
async fn send<I>(io: &mut I, out: &[u8], idle: Duration) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    within(idle, io.write_all(out)).await?;
    within(idle, io.flush()).await
}

/// Puts `data` behind what is gathered in `out`, or, when it would make
/// `out` larger than [`GATHER`], writes both.
async fn gather<I>(io: &mut I, out: &mut Vec<u8>, data: &[u8], idle: Duration) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    if out.len() + data.len() <= GATHER {
        out.extend_from_slice(data);
        return Ok(());
    }
    let (mut first, mut second) = (&out[..], data);
    while !first.is_empty() || !second.is_empty() {
        let slices = [io::IoSlice::new(first), io::IoSlice::new(second)];
        let n = within(idle, io.write_vectored(&slices)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_first = n.min(first.len());
        first = &first[from_first..];
        second = &second[n - from_first..];
    }
    out.clear();
    within(idle, io.flush()).await
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn length_field(out: &mut Vec<u8>, n: u64) {
    field(
        out,
        b"content-length",
        itoa::Buffer::new().format(n).as_bytes(),
    );
}

/// A chunk's size line.
fn chunk_size(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The current `Date` value, made once a second per thread.
fn date(out: &mut Vec<u8>) {
    use std::cell::Cell;
    const LEN: usize = 29;
    thread_local! {
        static DATE: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
    }
    let now = crate::clock::coarse_unix_secs();
    DATE.with(|cached| {
        let (secs, mut text) = cached.get();
        if secs != now {
            let made = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(now),
            );
            if made.len() != LEN {
                // Not a date of this era's length: written, not kept.
                return out.extend_from_slice(made.as_bytes());
            }
            text.copy_from_slice(made.as_bytes());
            cached.set((now, text));
        }
        out.extend_from_slice(&text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    const MAX_HEAD: usize = 16 * 1024;
    const IDLE: Duration = Duration::from_secs(5);

    fn taken(head: &[u8]) -> Option<Request<RequestBody>> {
        request(
            &Bytes::copy_from_slice(head),
            MAX_HEAD,
            &mut HeaderMap::new(),
        )
        .map(|(req, _, _)| req)
    }

    #[test]
    fn bodiless_heads_are_read_here_with_values_as_sent() {
        let head = b"GET /orders/1?x=%20y HTTP/1.1\r\nHost: a\r\nX-Two: 1\r\nx-two: 2\r\nCookie: OwnerId=\xc3\xa9\r\n\r\n";
        let req = taken(head).expect("read here");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/orders/1?x=%20y");
        assert_eq!(req.version(), Version::HTTP_11);
        let twos: Vec<_> = req.headers().get_all("x-two").iter().collect();
        assert_eq!(twos, ["1", "2"]);
        assert_eq!(req.headers()["cookie"].as_bytes(), b"OwnerId=\xc3\xa9");
        assert!(req.body().is_end_stream());
        let zero = taken(b"DELETE /o HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            zero.expect("an empty body is no body").method(),
            Method::DELETE
        );
    }

    #[test]
    fn what_this_codec_does_not_serve_is_left_whole_for_hyper() {
        let cases: [&[u8]; 14] = [
            b"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n",
            b"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\n",
            b"POST /o HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /o HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            b"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            b"G\xc3\xa9T / HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for head in cases {
            let mut buf = BytesMut::from(head);
            buf.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
            let before = buf.clone();
            assert!(
                parse(&mut buf, MAX_HEAD, &mut HeaderMap::new()).is_none(),
                "{:?}",
                String::from_utf8_lossy(head)
            );
            assert_eq!(buf, before, "given back as it was");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(taken(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()).is_none());
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(taken(long.as_bytes()).is_none(), "over the head limit");
    }

    #[test]
    fn pipelined_bytes_stay_for_the_next_request_and_close_is_heard() {
        let mut buf = BytesMut::from(
            &b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\nGET /2 HTTP/1.1\r\n"[..],
        );
        let (req, keep_alive) =
            parse(&mut buf, MAX_HEAD, &mut HeaderMap::new()).expect("read here");
        assert_eq!(req.uri(), "/1");
        assert!(!keep_alive, "the client said close");
        assert_eq!(&buf[..], b"GET /2 HTTP/1.1\r\n");
        let mut buf = BytesMut::from(&b"GET /3 HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"[..]);
        let (_, keep_alive) = parse(&mut buf, MAX_HEAD, &mut HeaderMap::new()).expect("read here");
        assert!(keep_alive);
        assert!(buf.is_empty());
    }

    #[tokio::test]
    async fn the_map_an_answer_leaves_holds_only_the_next_requests_fields() {
        let mut room = Room::default();
        let mut buf = BytesMut::from(&b"GET /1 HTTP/1.1\r\nHost: a\r\nX-First: 1\r\n\r\n"[..]);
        let (first, _) = parse(&mut buf, MAX_HEAD, &mut room.headers).expect("read here");
        assert_eq!(first.headers().len(), 2);
        let resp = answer(
            200,
            &[("x-answer", "1"), ("x-more", "2")],
            crate::body::empty(),
        );
        write_answer(&mut Vec::new(), resp, false, true, IDLE, &mut room)
            .await
            .expect("written");
        assert!(room.headers.capacity() >= 2, "the answer's map is kept");
        let mut buf = BytesMut::from(&b"GET /2 HTTP/1.1\r\nHost: b\r\n\r\n"[..]);
        let (second, _) = parse(&mut buf, MAX_HEAD, &mut room.headers).expect("read here");
        assert_eq!(second.headers().len(), 1, "{:?}", second.headers());
        assert_eq!(second.headers()["host"], "b");
    }

    #[test]
    fn an_ended_connections_room_is_the_next_ones_emptied_and_spares_are_bounded() {
        let used = || {
            let mut room = Room::take();
            room.out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
            room.headers
                .insert("x-secret", HeaderValue::from_static("of the last request"));
            room
        };
        let first = used();
        let (out, fields) = (first.out.as_ptr(), first.headers.capacity());
        drop(first);
        let next = Room::take();
        assert_eq!(next.out.as_ptr(), out, "the same write buffer");
        assert!(next.out.is_empty(), "holding no bytes of the last answer");
        assert_eq!(next.headers.capacity(), fields);
        assert!(next.headers.is_empty(), "holding no fields");
        drop(next);
        // More connections end at once than are kept: the spares stay bounded.
        let rooms: Vec<Room> = (0..SPARE_ROOMS + 4).map(|_| used()).collect();
        drop(rooms);
        let kept = SPARE.with(|spare| {
            let rooms = spare.take();
            let n = rooms.len();
            spare.set(rooms);
            n
        });
        assert_eq!(kept, SPARE_ROOMS);
        // A room with nothing in it is not kept, nor a larger one.
        SPARE.with(|spare| drop(spare.take()));
        drop(Room::default());
        let mut large = used();
        large.out.reserve(READ_SIZE * 2);
        drop(large);
        let mut many = used();
        many.headers.reserve(KEPT_FIELDS * 2);
        drop(many);
        assert!(SPARE.with(|spare| spare.take()).is_empty());
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: Body) -> Response<Body> {
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (n, v) in headers {
            resp.headers_mut().append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        resp
    }

    /// A body of unknown length giving `pieces`, then `trailers`.
    fn streamed(pieces: &[&'static [u8]], trailers: Option<HeaderMap>) -> Body {
        let mut frames: Vec<Result<http_body::Frame<Bytes>, crate::body::BoxError>> = pieces
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
            .collect();
        frames.extend(trailers.map(|t| Ok(http_body::Frame::trailers(t))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    async fn written(resp: Response<Body>, head: bool, keep_alive: bool) -> (String, bool) {
        let mut wire = Vec::new();
        let kept = write_answer(
            &mut wire,
            resp,
            head,
            keep_alive,
            IDLE,
            &mut Room::default(),
        )
        .await
        .expect("written");
        (String::from_utf8(wire).unwrap(), kept)
    }

    fn without_date(wire: &str) -> String {
        wire.lines()
            .filter(|l| !l.starts_with("date: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn answers_are_framed_by_what_their_body_and_request_allow() {
        let (wire, kept) = written(
            answer(
                200,
                &[("content-type", "text/plain")],
                crate::body::full("hello"),
            ),
            false,
            true,
        )
        .await;
        assert_eq!(
            without_date(&wire),
            "HTTP/1.1 200 OK\ncontent-type: text/plain\ncontent-length: 5\n\nhello"
        );
        assert!(kept);
        assert_eq!(wire.matches("date: ").count(), 1);

        // A length given by the answer that the body contradicts: the body's.
        let (wire, _) = written(
            answer(404, &[("content-length", "99")], crate::body::full("no")),
            false,
            true,
        )
        .await;
        assert_eq!(
            without_date(&wire),
            "HTTP/1.1 404 Not Found\ncontent-length: 2\n\nno"
        );

        // Unknown length: chunked, trailers not passed on (none was
        // announced: `Trailer` is hop-by-hop); a given Transfer-Encoding is
        // not repeated.
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("9"));
        let body = streamed(&[b"hello", b"", b" world"], Some(trailers));
        let (wire, _) = written(
            answer(200, &[("transfer-encoding", "chunked")], body),
            false,
            true,
        )
        .await;
        assert_eq!(
            without_date(&wire),
            "HTTP/1.1 200 OK\ntransfer-encoding: chunked\n\n5\nhello\n6\n world\n0\n"
        );

        // Unknown length with a valid given length: that length.
        let body = streamed(&[b"ab", b"c"], None);
        let (wire, _) = written(answer(200, &[("content-length", "3")], body), false, true).await;
        assert_eq!(
            without_date(&wire),
            "HTTP/1.1 200 OK\ncontent-length: 3\n\nabc"
        );

        // HEAD: the length the body would have, no body.
        let (wire, _) = written(answer(200, &[], crate::body::full("hello")), true, true).await;
        assert_eq!(without_date(&wire), "HTTP/1.1 200 OK\ncontent-length: 5\n");
        let (wire, _) = written(
            answer(200, &[("content-length", "7")], crate::body::empty()),
            true,
            true,
        )
        .await;
        assert_eq!(without_date(&wire), "HTTP/1.1 200 OK\ncontent-length: 7\n");

        // 204 says no length; 304 may keep the one given.
        let (wire, _) = written(
            answer(204, &[("content-length", "0")], crate::body::empty()),
            false,
            true,
        )
        .await;
        assert_eq!(without_date(&wire), "HTTP/1.1 204 No Content\n");
        let (wire, _) = written(
            answer(304, &[("etag", "\"1\"")], crate::body::empty()),
            false,
            true,
        )
        .await;
        assert_eq!(
            without_date(&wire),
            "HTTP/1.1 304 Not Modified\netag: \"1\"\n"
        );

        // An empty body of a 200 says 0; an unknown status has no reason.
        let (wire, _) = written(answer(299, &[], crate::body::empty()), false, true).await;
        assert_eq!(without_date(&wire), "HTTP/1.1 299 \ncontent-length: 0\n");

        // A date given is kept, and not doubled.
        let (wire, _) = written(
            answer(
                200,
                &[("date", "Tue, 01 Dec 2026 10:00:00 GMT")],
                crate::body::empty(),
            ),
            false,
            true,
        )
        .await;
        assert_eq!(wire.matches("date: ").count(), 1);
        assert!(wire.contains("date: Tue, 01 Dec 2026 10:00:00 GMT\r\n"));
    }

    #[tokio::test]
    async fn close_is_said_once_by_either_side() {
        let (wire, kept) = written(answer(200, &[], crate::body::empty()), false, false).await;
        assert!(!kept);
        assert_eq!(wire.matches("connection: close").count(), 1, "{wire}");
        let (wire, kept) = written(
            answer(200, &[("connection", "close")], crate::body::empty()),
            false,
            true,
        )
        .await;
        assert!(!kept, "the answer said close");
        assert_eq!(wire.matches("connection: close").count(), 1, "{wire}");
    }

    #[tokio::test]
    async fn bodies_that_break_their_framing_fail_the_answer() {
        let mut room = Room::default();
        let long = streamed(&[b"abcd"], None);
        let resp = answer(200, &[("content-length", "3")], long);
        assert!(
            write_answer(&mut Vec::new(), resp, false, true, IDLE, &mut room)
                .await
                .is_err()
        );
        let short = streamed(&[b"ab"], None);
        let resp = answer(200, &[("content-length", "3")], short);
        assert!(
            write_answer(&mut Vec::new(), resp, false, true, IDLE, &mut room)
                .await
                .is_err()
        );
        let failing: Body = StreamBody::new(futures_util::stream::iter(vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Err::<http_body::Frame<Bytes>, crate::body::BoxError>("cut".into()),
        ]))
        .boxed_unsync();
        let resp = answer(200, &[], failing);
        assert!(
            write_answer(&mut Vec::new(), resp, false, true, IDLE, &mut room)
                .await
                .is_err()
        );
        let interim = answer(103, &[], crate::body::empty());
        assert!(
            write_answer(&mut Vec::new(), interim, false, true, IDLE, &mut room)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_large_body_goes_out_whole_behind_its_head() {
        let big: &'static [u8] = Box::leak(vec![b'x'; 3 * GATHER].into_boxed_slice());
        let body = streamed(&[b"a", big, b"b"], None);
        let (wire, _) = written(answer(200, &[], body), false, true).await;
        let body_at = wire.find("\r\n\r\n").unwrap() + 4;
        let mut rest = &wire.as_bytes()[body_at..];
        let mut got = Vec::new();
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
            rest = &rest[line + 2..];
            if size == 0 {
                break;
            }
            got.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        assert_eq!(got.len(), 3 * GATHER + 2);
        assert!(got.starts_with(b"ax") && got.ends_with(b"xb"));
        assert_eq!(rest, b"\r\n");
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for (n, hex) in [
            (0, "0"),
            (5, "5"),
            (255, "ff"),
            (4096, "1000"),
            (usize::MAX, "ffffffffffffffff"),
        ] {
            let mut out = Vec::new();
            chunk_size(&mut out, n);
            assert_eq!(out, format!("{hex}\r\n").as_bytes());
        }
    }
}
