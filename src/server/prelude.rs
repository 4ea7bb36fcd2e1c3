//! The start of a client connection, read before hyper is given it.
//!
//! A client must send its first byte, then enough to tell HTTP/1 from
//! HTTP/2, then (HTTP/2) its preface and SETTINGS frame or (HTTP/1) a whole
//! request head, each by its deadline counted from the accept
//! (`server.first_byte_timeout_ms`, `protocol_timeout_ms`,
//! `http2_handshake_timeout_ms`, all within `header_read_timeout_ms`); a
//! client that does not is closed (a late HTTP/1 head gets a 408 fault).
//!
//! The first HTTP/1 head is checked the way hyper will check it, so that
//! what hyper would answer with a bare 400, 414 or 431 gets the fault shape
//! and a request id instead: malformed request lines and header fields,
//! Content-Length and Transfer-Encoding that hyper refuses, heads over
//! hyper's hard limits. A TLS ClientHello on a plain listener gets a 400
//! fault, as nginx answers it. Later request heads that the gateway's own
//! HTTP/1.1 codec cannot take as they stand are read and checked the same
//! way ([`read_on`]); once a connection is hyper's, its later requests are
//! left to hyper (the README lists what it answers bare).
//!
//! What was read goes to hyper in front of the rest of the stream
//! ([`Rewind`]).

use super::Refusal;
use crate::config::ServerLimits;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::StatusCode;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// What an HTTP/2 client sends first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// hyper's longest request target; longer ones get 414.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;
/// HTTP/2's default largest frame: a longer SETTINGS frame is not waited
/// for, the HTTP/2 codec refuses it.
const MAX_SETTINGS_LEN: usize = 16_384;
const READ_CHUNK: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// What the client must send next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    FirstByte,
    Protocol,
    Http2Handshake,
    Head,
}

impl Phase {
    pub fn refusal(self) -> Refusal {
        match self {
            Self::FirstByte => Refusal::first_byte_timeout,
            Self::Protocol => Refusal::protocol_timeout,
            Self::Http2Handshake => Refusal::http2_handshake_timeout,
            Self::Head => Refusal::header_timeout,
        }
    }
}

/// A connection's start, refused: the answer's status and message.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
    pub reason: Refusal,
}

impl Refused {
    fn new(status: StatusCode, message: impl Into<String>, reason: Refusal) -> Self {
        Self {
            status,
            message: message.into(),
            reason,
        }
    }

    fn malformed(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, Refusal::malformed_head)
    }
}

/// What the start of a connection turned out to be.
#[derive(Debug)]
pub enum Start {
    /// Ready for hyper: the protocol, and the bytes read so far.
    Ready(Protocol, BytesMut),
    /// To be answered with a fault and closed.
    Refused(Refused),
    /// The client did not send what it had to in time.
    Late(Phase),
    /// The client closed, or the connection failed.
    Gone,
}

/// What the start of a connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    limits: ServerLimits,
    /// A plain listener (a TLS ClientHello there is refused).
    plain: bool,
    /// An HTTP/1 head is ready once it ends, unchecked (see [`Rules::deferring`]).
    defer_http1: bool,
    /// The connection speaks HTTP/1 (see [`Rules::for_http1`]).
    http1: bool,
}

impl Rules {
    pub fn new(limits: ServerLimits, plain: bool) -> Self {
        Self {
            limits,
            plain,
            defer_http1: false,
            http1: false,
        }
    }

    /// The rules for a later head of a connection known to speak HTTP/1:
    /// no TLS or HTTP/2 start looked for, a head's bytes are a head.
    pub fn for_http1(self) -> Self {
        Self {
            http1: true,
            ..self
        }
    }

    /// The rules with an HTTP/1 head ready as soon as its end has come
    /// (within the hard limit), unchecked: for a connection whose heads the
    /// gateway's own codec reads first, which reads on with the checks
    /// ([`read_on`] with [`Rules::new`]) any head it cannot take. The head
    /// it takes is parsed once, not twice.
    pub fn deferring(self) -> Self {
        Self {
            defer_http1: true,
            ..self
        }
    }

    /// hyper's own limits, twice the configured ones (see `server::serve`).
    pub fn hard_head_bytes(limits: &ServerLimits) -> usize {
        limits.max_header_bytes.saturating_mul(2)
    }

    pub fn hard_headers(limits: &ServerLimits) -> usize {
        limits.max_headers.saturating_mul(2)
    }

    /// Time from the accept by which `phase` must be over.
    fn limit(&self, phase: Phase) -> Duration {
        let h = &self.limits.handshake;
        let head = self.limits.header_read_timeout;
        match phase {
            Phase::FirstByte => h.first_byte.min(head),
            Phase::Protocol => h.protocol.min(head),
            Phase::Http2Handshake => h.http2.min(head),
            Phase::Head => head,
        }
    }
}

/// What the bytes read so far call for.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Need(Phase),
    Ready(Protocol),
    Refuse(Refused),
}

/// Reads the start of a connection, each phase by its deadline.
pub async fn read<I>(io: &mut I, rules: &Rules, accepted: Instant) -> Start
where
    I: AsyncRead + Unpin,
{
    read_on(io, BytesMut::new(), rules, accepted).await
}

/// Reads on from `buf` (what came so far) until what it holds is ready,
/// refused or late, each phase by its deadline counted from `since`: the
/// start of a connection, or a later request head that came in pieces or
/// looks malformed.
pub async fn read_on<I>(io: &mut I, mut buf: BytesMut, rules: &Rules, since: Instant) -> Start
where
    I: AsyncRead + Unpin,
{
    loop {
        let phase = match examine(&buf, rules) {
            Step::Need(phase) => phase,
            Step::Ready(protocol) => return Start::Ready(protocol, buf),
            Step::Refuse(refused) => return Start::Refused(refused),
        };
        buf.reserve(READ_CHUNK);
        let mut room = (&mut buf).limit(READ_CHUNK);
        match tokio::time::timeout_at(since + rules.limit(phase), io.read_buf(&mut room)).await {
            Err(_) => return Start::Late(phase),
            Ok(Ok(0) | Err(_)) => return Start::Gone,
            Ok(Ok(_)) => {}
        }
    }
}

fn examine(buf: &[u8], rules: &Rules) -> Step {
    let Some(&first) = buf.first() else {
        return Step::Need(Phase::FirstByte);
    };
    if rules.http1 {
        return http1(buf, rules);
    }
    if rules.plain && first == TLS_HANDSHAKE {
        return Step::Refuse(Refused::new(
            StatusCode::BAD_REQUEST,
            "This port speaks plain HTTP, not TLS",
            Refusal::tls_on_plain_port,
        ));
    }
    let n = buf.len().min(PREFACE.len());
    if buf[..n] == PREFACE[..n] {
        return match buf.get(PREFACE.len()..) {
            None => Step::Need(Phase::Protocol),
            Some(frames) => http2(frames),
        };
    }
    http1(buf, rules)
}

/// Whether `buf` holds a whole HTTP/1 head the checks take (and hyper would).
pub(super) fn takes_http1(buf: &[u8], rules: &Rules) -> bool {
    matches!(examine(buf, rules), Step::Ready(Protocol::Http1))
}

/// After the preface: ready once the first frame (SETTINGS) is whole.
fn http2(frames: &[u8]) -> Step {
    let Some(header) = frames.get(..9) else {
        return Step::Need(Phase::Http2Handshake);
    };
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    const SETTINGS: u8 = 0x4;
    if header[3] != SETTINGS || len > MAX_SETTINGS_LEN || frames.len() >= 9 + len {
        Step::Ready(Protocol::Http2)
    } else {
        Step::Need(Phase::Http2Handshake)
    }
}

fn http1(buf: &[u8], rules: &Rules) -> Step {
    let limits = &rules.limits;
    // A read usually ends where the head does: that is looked at first
    // (a search sets up a finder on every call).
    if rules.defer_http1
        && buf.len() <= Rules::hard_head_bytes(limits)
        && (buf.ends_with(b"\r\n\r\n") || memchr::memmem::find(buf, b"\r\n\r\n").is_some())
    {
        return Step::Ready(Protocol::Http1);
    }
    // Room for the slots, not set first: hyper's hard limit is hundreds of
    // them, and most heads use a few.
    let mut slots = Vec::with_capacity(Rules::hard_headers(limits));
    let mut req = httparse::Request::new(&mut []);
    let too_large = || {
        Step::Refuse(Refused::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "The request's header fields are larger than {} bytes",
                limits.max_header_bytes
            ),
            Refusal::head_too_large,
        ))
    };
    match req.parse_with_uninit_headers(buf, slots.spare_capacity_mut()) {
        Ok(httparse::Status::Partial) if buf.len() >= Rules::hard_head_bytes(limits) => too_large(),
        Ok(httparse::Status::Partial) => Step::Need(Phase::Head),
        Ok(httparse::Status::Complete(len)) if len > Rules::hard_head_bytes(limits) => too_large(),
        Ok(httparse::Status::Complete(_)) => match framing(&req) {
            Ok(()) => Step::Ready(Protocol::Http1),
            Err(refused) => Step::Refuse(refused),
        },
        Err(httparse::Error::TooManyHeaders) => Step::Refuse(Refused::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "The request has more than {} header fields",
                limits.max_headers
            ),
            Refusal::head_too_large,
        )),
        Err(e) => Step::Refuse(Refused::malformed(match e {
            httparse::Error::HeaderName => "A header field name is malformed",
            httparse::Error::HeaderValue => {
                "A header field value has a character that is not allowed"
            }
            httparse::Error::NewLine => "The request head has a malformed line ending",
            httparse::Error::Version => "The request line does not end with HTTP/1.0 or HTTP/1.1",
            _ => "The request line has a malformed method or target",
        })),
    }
}

/// hyper's checks of a complete request head (`proto::h1::role::Server`),
/// in its order.
fn framing(req: &httparse::Request<'_, '_>) -> Result<(), Refused> {
    let path = req.path.unwrap_or_default();
    if path.len() > MAX_URI_LEN {
        return Err(Refused::new(
            StatusCode::URI_TOO_LONG,
            "The request target is too long",
            Refusal::malformed_head,
        ));
    }
    if http::Uri::try_from(path).is_err() {
        return Err(Refused::malformed("The request target is malformed"));
    }
    let http11 = req.version == Some(1);
    let mut length: Option<u64> = None;
    let mut te = false;
    let mut chunked = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(Refused::malformed(
                    "An HTTP/1.0 request cannot have a Transfer-Encoding",
                ));
            }
            te = true;
            length = None;
            chunked = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") && !te {
            let n = digits(h.value)
                .ok_or_else(|| Refused::malformed("The Content-Length is not a number of bytes"))?;
            if length.is_some_and(|prev| prev != n) {
                return Err(Refused::malformed(
                    "The request has Content-Length fields that disagree",
                ));
            }
            length = Some(n);
        }
    }
    if te && !chunked {
        return Err(Refused::malformed(
            "The request's Transfer-Encoding does not end with chunked",
        ));
    }
    Ok(())
}

/// A Content-Length value as hyper reads it: digits only, no sign.
pub(super) fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// A whole HTTP/1.1 answer with a fault body, for a connection that is
/// closed after it.
pub fn answer(
    status: StatusCode,
    id_header: &http::HeaderName,
    id: &http::HeaderValue,
    body: &[u8],
    retry_after: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + body.len());
    let reason = status.canonical_reason().unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).as_bytes());
    out.extend_from_slice(b"content-type: application/json; charset=UTF-8\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(id_header.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\n");
    if retry_after {
        out.extend_from_slice(b"retry-after: 1\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// Writes `answer`, closes the sending side and reads what the client still
/// sends for a moment, so that the close does not reset the connection
/// before the client has read the answer. Bounded in time and bytes.
pub async fn send_and_close<I>(io: &mut I, answer: &[u8])
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    const WRITE: Duration = Duration::from_secs(1);
    const LINGER: Duration = Duration::from_millis(500);
    const LINGER_BYTES: usize = 64 * 1024;
    let sent = tokio::time::timeout(WRITE, async {
        io.write_all(answer).await?;
        io.flush().await?;
        io.shutdown().await
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        let mut read = 0;
        while read < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

pin_project_lite::pin_project! {
    /// A stream with bytes already read from it put back in front.
    pub struct Rewind<I> {
        pre: Bytes,
        #[pin]
        inner: I,
    }
}

impl<I> Rewind<I> {
    pub fn new(pre: BytesMut, inner: I) -> Self {
        Self {
            pre: pre.freeze(),
            inner,
        }
    }
}

impl<I: AsyncRead> AsyncRead for Rewind<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.pre.is_empty() {
            return this.inner.poll_read(cx, buf);
        }
        let n = this.pre.len().min(buf.remaining());
        buf.put_slice(&this.pre[..n]);
        this.pre.advance(n);
        if this.pre.is_empty() {
            // Let the buffer go rather than keep it for the connection's life.
            *this.pre = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite> AsyncWrite for Rewind<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn rules(plain: bool) -> Rules {
        let config = Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\nmax_header_bytes = 8192\nmax_headers = 10\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\nkind = \"memory\"\n",
        )
        .unwrap();
        Rules::new(config.server.limits, plain)
    }

    fn step(bytes: &[u8]) -> Step {
        examine(bytes, &rules(true))
    }

    fn refused(bytes: &[u8]) -> (u16, Refusal) {
        match step(bytes) {
            Step::Refuse(r) => (r.status.as_u16(), r.reason),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
        }
    }

    #[test]
    fn phases_follow_the_bytes() {
        assert_eq!(step(b""), Step::Need(Phase::FirstByte));
        assert_eq!(step(b"P"), Step::Need(Phase::Protocol));
        assert_eq!(step(b"PRI * HTTP/2.0\r\n"), Step::Need(Phase::Protocol));
        assert_eq!(step(b"POST"), Step::Need(Phase::Head));
        assert_eq!(
            step(b"GET / HTTP/1.1\r\nhost: a\r\n"),
            Step::Need(Phase::Head)
        );
        assert_eq!(step(PREFACE), Step::Need(Phase::Http2Handshake));
        let mut h2 = PREFACE.to_vec();
        h2.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0]);
        assert_eq!(step(&h2), Step::Need(Phase::Http2Handshake));
        h2.extend_from_slice(&[0, 100]);
        assert_eq!(step(&h2), Step::Ready(Protocol::Http2));
        assert_eq!(
            step(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"),
            Step::Ready(Protocol::Http1)
        );
    }

    #[test]
    fn what_hyper_refuses_is_refused_with_the_same_status() {
        let cases: [(&[u8], u16); 12] = [
            (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nbad name: 1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nx: a\0b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nx: a\rb\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ncontent-length: zz\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\ncontent-length: +1\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                400,
            ),
            (b"GET /\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
                400,
            ),
            (b"GET / HTTP/1.1\r\nx: a\r\n folded\r\n\r\n", 400),
        ];
        for (bytes, status) in cases {
            assert_eq!(
                refused(bytes),
                (status, Refusal::malformed_head),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(
            refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            (400, Refusal::tls_on_plain_port)
        );
        // hyper's hard limits are twice the configured ones.
        let many: String = (0..21).map(|i| format!("x{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(refused(head.as_bytes()), (431, Refusal::head_too_large));
        let big = format!("GET / HTTP/1.1\r\ncookie: {}", "c".repeat(16_400));
        assert_eq!(refused(big.as_bytes()), (431, Refusal::head_too_large));
        // Within them, the stack answers (431 above the configured limits).
        let some: String = (0..15).map(|i| format!("x{i}: 1\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\n{some}\r\n");
        assert_eq!(step(head.as_bytes()), Step::Ready(Protocol::Http1));
        // TLS on a TLS listener's plaintext is just a bad request line.
        assert_eq!(
            examine(b"\x16\x03\x01 x\r\n\r\n", &rules(false)),
            Step::Refuse(Refused::malformed(
                "The request line has a malformed method or target"
            ))
        );
    }

    #[test]
    fn what_hyper_takes_is_taken() {
        for ok in [
            &b"GET / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: x\r\n\r\n",
            b"GET / HTTP/1.1\nhost: a\n\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"CONNECT a.example:443 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                step(ok),
                Step::Ready(Protocol::Http1),
                "{:?}",
                String::from_utf8_lossy(ok)
            );
        }
    }

    #[tokio::test]
    async fn rewind_gives_back_what_was_read_first() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut r = Rewind::new(BytesMut::from(&b"hello"[..]), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test]
    async fn each_phase_has_its_deadline() {
        let config = Config::parse(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_base_url = \"http://x\"\nheader_read_timeout_ms = 400\nfirst_byte_timeout_ms = 100\n[upstream]\nurl = \"http://127.0.0.1:1\"\n[store]\nkind = \"memory\"\n",
        )
        .unwrap();
        let rules = Rules::new(config.server.limits, true);
        let (mut a, mut b) = tokio::io::duplex(64);
        let started = Instant::now();
        assert!(matches!(
            read(&mut b, &rules, started).await,
            Start::Late(Phase::FirstByte)
        ));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_millis(400));
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = Instant::now();
        assert!(matches!(
            read(&mut b, &rules, started).await,
            Start::Late(Phase::Head)
        ));
        assert!(started.elapsed() >= Duration::from_millis(400));
    }
}
