//! Rewriting of the upstream's own URLs to the public base URL.
//!
//! The upstream writes absolute URLs on its internal base into `Location`
//! headers and JSON string values. A [`Rewriter`] holds prefix rules (longest
//! first) and applies them to one string, or to a JSON body as it streams
//! ([`RewriteBody`]): a rule matches only at the start of a JSON string and only
//! when the prefix ends at a URL boundary (`/`, `?`, `#` or the string's end).

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// The upstream's internal base URLs and the public one: what is rewritten
/// to what, and which URLs are the upstream's own.
#[derive(Debug, Clone)]
pub struct Bases {
    /// Every internal base → the public base.
    rewriter: Arc<Rewriter>,
    internal: Arc<[String]>,
    public: Arc<str>,
}

impl Bases {
    pub fn new(internal: Vec<String>, public: String) -> Self {
        let rewriter = Rewriter::new(internal.iter().map(|b| (b.clone(), public.clone())));
        Self {
            rewriter: Arc::new(rewriter),
            internal: internal.into(),
            public: public.into(),
        }
    }

    pub fn public(&self) -> &str {
        &self.public
    }

    /// The rewriter of every answer not about an order through the shorthand.
    pub fn rewriter(&self) -> &Arc<Rewriter> {
        &self.rewriter
    }

    /// A rewriter for answers through the shorthand about `order`: the
    /// order's explicit URL (absolute on any base, or relative) becomes
    /// `/order`, and the rest as [`Self::rewriter`] does.
    pub fn for_shorthand(&self, order: &str) -> Rewriter {
        let public = &*self.public;
        let short = format!("{public}/order");
        let extra = self
            .internal
            .iter()
            .map(|b| b.as_str())
            .chain([public])
            .map(|b| (format!("{b}/orders/{order}"), short.clone()))
            .chain([(format!("/orders/{order}"), "/order".to_owned())]);
        self.rewriter.with(extra)
    }

    /// The path of an absolute or relative URL if it is on the upstream's own
    /// base (or any internal or the public base), else `None`.
    pub fn own_path<'a>(&self, url: &'a str) -> Option<&'a str> {
        if url.starts_with('/') {
            return Some(url);
        }
        self.internal
            .iter()
            .map(|b| b.as_str())
            .chain([&*self.public])
            .find_map(|b| {
                url.strip_prefix(b)
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Rewriter {
    /// (from, to), sorted by descending `from` length.
    rules: Vec<(String, String)>,
    /// The replacements with a leading `"`, for writing inside JSON text.
    quoted: Vec<Vec<u8>>,
}

/// Whether a base ends at a URL boundary in JSON text: the next character
/// ends the string (`"`) or the URL's path or authority.
fn at_boundary(next: Option<u8>) -> bool {
    matches!(next, None | Some(b'/' | b'?' | b'#' | b'"'))
}

/// The same in a decoded string, where a `"` is a character of the string
/// (written `\"` in JSON), not its end.
fn at_string_boundary(next: Option<u8>) -> bool {
    matches!(next, None | Some(b'/' | b'?' | b'#'))
}

/// How JSON text reads against a prefix.
enum Reading {
    /// It starts with the prefix, written in this many bytes.
    Match(usize),
    No,
    /// The text ends before it can tell.
    More,
}

/// One character of JSON string text at the start of `text`, unescaped when
/// it is an escape (`\/`, `\u002f`, ...), with the bytes it takes: `Err(true)`
/// when the text ends inside an escape, `Err(false)` for an escape that
/// does not stand for an ASCII character.
fn json_char(text: &[u8]) -> Result<(u8, usize), bool> {
    match text {
        [] => Err(true),
        [b'\\'] => Err(true),
        [b'\\', b'u', rest @ ..] => {
            if rest.len() < 4 {
                return Err(true);
            }
            let hex = std::str::from_utf8(&rest[..4]).map_err(|_| false)?;
            match u8::from_str_radix(hex, 16) {
                Ok(c) if c.is_ascii() && hex.starts_with("00") => Ok((c, 6)),
                _ => Err(false),
            }
        }
        [b'\\', c, ..] => Ok((
            match c {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'b' => 0x08,
                b'f' => 0x0c,
                other => *other,
            },
            2,
        )),
        [c, ..] => Ok((*c, 1)),
    }
}

/// Reads JSON string text against `prefix` (plain ASCII), however the text
/// escapes its characters (`http:\/\/host`, `\u002f`, any mix), and checks
/// that the prefix ends at a URL boundary.
fn read_prefix(text: &[u8], prefix: &[u8], eof: bool) -> Reading {
    let more = if eof { Reading::No } else { Reading::More };
    let mut at = 0;
    for &want in prefix {
        // Most text is not escaped: compare bytes at once.
        match text.get(at) {
            None => return more,
            Some(&b) if b != b'\\' => {
                if b != want {
                    return Reading::No;
                }
                at += 1;
                continue;
            }
            Some(_) => {}
        }
        match json_char(&text[at..]) {
            Ok((c, len)) if c == want => at += len,
            Ok(_) | Err(false) => return Reading::No,
            Err(true) => return more,
        }
    }
    let boundary = match text.get(at) {
        None if !eof => return Reading::More,
        None => true,
        // An escaped quote is inside the string: it does not end it.
        Some(b'\\') => match json_char(&text[at..]) {
            Ok((c, _)) => c != b'"' && at_boundary(Some(c)),
            Err(true) if !eof => return Reading::More,
            Err(_) => false,
        },
        Some(&b) => at_boundary(Some(b)),
    };
    if boundary {
        Reading::Match(at)
    } else {
        Reading::No
    }
}

impl Rewriter {
    pub fn new(rules: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut rules: Vec<_> = rules
            .into_iter()
            .filter(|(f, t)| !f.is_empty() && f != t)
            .collect();
        rules.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
        rules.dedup_by(|a, b| a.0 == b.0);
        let quoted: Vec<_> = rules
            .iter()
            .map(|(_, t)| [b"\"", t.as_bytes()].concat())
            .collect();
        Self { rules, quoted }
    }

    /// Adds rules in front of the existing ones (they win on equal prefixes).
    pub fn with(&self, extra: impl IntoIterator<Item = (String, String)>) -> Self {
        Self::new(extra.into_iter().chain(self.rules.iter().cloned()))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rewrites one URL string, or `None` when no rule applies.
    pub fn rewrite(&self, s: &str) -> Option<String> {
        self.rules.iter().find_map(|(from, to)| {
            let rest = s.strip_prefix(from.as_str())?;
            at_string_boundary(rest.bytes().next()).then(|| format!("{to}{rest}"))
        })
    }

    /// Rewrites every string in a JSON value, in place.
    pub fn rewrite_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Some(new) = self.rewrite(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.rewrite_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.rewrite_json(v)),
            _ => {}
        }
    }

    /// Rewrites a whole JSON text.
    pub fn rewrite_bytes(&self, json: &[u8]) -> Bytes {
        self.rewrite_chunk(json, true, &mut Lex::default())
            .0
            .freeze()
    }

    /// Rewrites JSON text in `buf`, read from the state `lex` (where the
    /// text before it left off), which is moved on. Returns the rewritten
    /// bytes that are final and how many input bytes they cover; the rest
    /// must be kept and given again with more input (all of it is final when
    /// `eof`). Only string values that start with a base are rewritten: a
    /// quote inside a string (`\"`) starts nothing, nor does a closing one.
    fn rewrite_chunk(&self, buf: &[u8], eof: bool, lex: &mut Lex) -> (BytesMut, usize) {
        let mut out = BytesMut::with_capacity(buf.len());
        let mut emitted = 0;
        let mut i = 0;
        while i < buf.len() {
            if lex.escaped {
                // The character after a backslash that ended the last chunk.
                lex.escaped = false;
                i += 1;
                continue;
            }
            if lex.in_string {
                let Some(q) = memchr::memchr2(b'"', b'\\', &buf[i..]) else {
                    break;
                };
                let p = i + q;
                if buf[p] == b'\\' {
                    lex.escaped = p + 1 == buf.len();
                    i = p + 2;
                } else {
                    lex.in_string = false;
                    i = p + 1;
                }
                continue;
            }
            let Some(q) = memchr::memchr(b'"', &buf[i..]) else {
                break;
            };
            // A string starts here.
            let p = i + q;
            let text = &buf[p + 1..];
            lex.in_string = true;
            i = p + 1;
            for ((from, _), to) in self.rules.iter().zip(&self.quoted) {
                match read_prefix(text, from.as_bytes(), eof) {
                    Reading::No => {}
                    // Not enough bytes after the quote to decide: keep them
                    // for later, from before the string.
                    Reading::More => {
                        lex.in_string = false;
                        out.extend_from_slice(&buf[emitted..p]);
                        return (out, p);
                    }
                    // The prefix ends at a boundary: still inside the string.
                    Reading::Match(len) => {
                        out.extend_from_slice(&buf[emitted..p]);
                        out.extend_from_slice(to);
                        emitted = p + 1 + len;
                        i = emitted;
                        break;
                    }
                }
            }
        }
        out.extend_from_slice(&buf[emitted..]);
        (out, buf.len())
    }
}

/// Where JSON text read so far has left off: inside a string or not, and
/// right after a backslash in one.
#[derive(Clone, Copy, Debug, Default)]
struct Lex {
    in_string: bool,
    escaped: bool,
}

pin_project_lite::pin_project! {
    /// A body whose JSON text is rewritten by a [`Rewriter`] as it streams:
    /// at most the longest rule's length is held back between chunks.
    pub struct RewriteBody<B> {
        #[pin]
        inner: B,
        rewriter: Arc<Rewriter>,
        carry: BytesMut,
        lex: Lex,
        trailers: Option<http::HeaderMap>,
        done: bool,
    }
}

impl<B> RewriteBody<B> {
    pub fn new(inner: B, rewriter: Arc<Rewriter>) -> Self {
        Self {
            inner,
            rewriter,
            carry: BytesMut::new(),
            lex: Lex::default(),
            trailers: None,
            done: false,
        }
    }
}

impl<B> Body for RewriteBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let (out, used) = if this.carry.is_empty() {
                            this.rewriter.rewrite_chunk(&data, false, this.lex)
                        } else {
                            this.carry.extend_from_slice(&data);
                            this.rewriter.rewrite_chunk(this.carry, false, this.lex)
                        };
                        let keep = if this.carry.is_empty() {
                            &data[used..]
                        } else {
                            &this.carry[used..]
                        };
                        *this.carry = BytesMut::from(keep);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            *this.trailers = Some(t);
                        }
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    *this.done = true;
                    if !this.carry.is_empty() {
                        let (out, _) = this.rewriter.rewrite_chunk(this.carry, true, this.lex);
                        this.carry.clear();
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const UP: &str = "http://coreapi01.ote.chicago.hostway:8092";
    const PUB: &str = "https://api.example.com";

    fn rewriter() -> Rewriter {
        Rewriter::new([(UP.to_owned(), PUB.to_owned())])
            .with([(format!("{UP}/orders/o1"), format!("{PUB}/order"))])
    }

    #[test]
    fn strings_rewrite_only_at_boundaries() {
        let r = rewriter();
        assert_eq!(
            r.rewrite(&format!("{UP}/accounts/a")).unwrap(),
            format!("{PUB}/accounts/a")
        );
        assert_eq!(r.rewrite(UP).unwrap(), PUB);
        assert_eq!(
            r.rewrite(&format!("{UP}/orders/o1/")).unwrap(),
            format!("{PUB}/order/")
        );
        assert_eq!(
            r.rewrite(&format!("{UP}/orders/o1")).unwrap(),
            format!("{PUB}/order")
        );
        // o12 is another order: only the base is rewritten.
        assert_eq!(
            r.rewrite(&format!("{UP}/orders/o12")).unwrap(),
            format!("{PUB}/orders/o12")
        );
        assert_eq!(r.rewrite(&format!("{UP}1/x")), None);
        assert_eq!(r.rewrite("http://elsewhere/x"), None);
    }

    /// A body that yields the given chunks one frame each.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    async fn stream(r: Rewriter, chunks: Vec<String>) -> String {
        let body = RewriteBody::new(
            Chunks(chunks.into_iter().map(Bytes::from).collect()),
            Arc::new(r),
        );
        String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    /// `doc` streamed in two chunks split at every byte rewrites to `want`.
    async fn every_split(doc: &str, want: &str) {
        for split in 0..doc.len() {
            let (x, y) = doc.split_at(split);
            assert_eq!(
                stream(rewriter(), vec![x.to_owned(), y.to_owned()]).await,
                want,
                "split at {split}"
            );
        }
    }

    #[tokio::test]
    async fn body_rewrites_across_every_split() {
        let doc = format!(
            r#"{{"a":"{UP}/orders/o1/","b":"{UP}/accounts/x","c":"{UP}9/no","d":"text {UP}","e":"{UP}"}}"#
        );
        let want = format!(
            r#"{{"a":"{PUB}/order/","b":"{PUB}/accounts/x","c":"{UP}9/no","d":"text {UP}","e":"{PUB}"}}"#
        );
        every_split(&doc, &want).await;
        let one_by_one = doc.chars().map(String::from).collect();
        assert_eq!(stream(rewriter(), one_by_one).await, want);
    }

    #[tokio::test]
    async fn escaped_slashes_rewrite_in_any_mix_and_any_split() {
        // As PHP's json_encode writes it, and other ways JSON may.
        let escaped = |base: &str, how: &str| base.replace('/', how);
        let mut doc = String::from("{");
        let mut want = String::from("{");
        for (i, how) in ["\\/", "\\u002f", "\\u002F", "/"].iter().enumerate() {
            doc.push_str(&format!(
                r#""a{i}":"{}{how}accounts{how}x","#,
                escaped(UP, how)
            ));
            want.push_str(&format!(r#""a{i}":"{PUB}{how}accounts{how}x","#));
        }
        // A mix within one URL, and an escaped order URL of the shorthand.
        doc.push_str(&format!(
            r#""m":"http:\/\u002f{}\/orders\u002Fo1\/","#,
            &UP["http://".len()..]
        ));
        want.push_str(&format!(r#""m":"{PUB}/order\/","#));
        // Not at a boundary, or not the base: untouched.
        doc.push_str(&format!(
            r#""n":"{}9\/x","t":"see {UP}/y"}}"#,
            escaped(UP, "\\/")
        ));
        want.push_str(&format!(
            r#""n":"{}9\/x","t":"see {UP}/y"}}"#,
            escaped(UP, "\\/")
        ));
        let whole = rewriter().rewrite_bytes(doc.as_bytes());
        assert_eq!(std::str::from_utf8(&whole).unwrap(), want);
        // The rewritten JSON means what the upstream's meant, on the public base.
        let parsed: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(parsed["a1"], format!("{PUB}/accounts/x"));
        assert_eq!(parsed["m"], format!("{PUB}/order/"));
        // Chunk boundaries anywhere, inside escapes too.
        every_split(&doc, &want).await;
    }

    #[tokio::test]
    async fn escaped_quotes_neither_start_nor_end_a_string() {
        let doc = format!(
            concat!(
                r#"{{"q":"{up}/x?q=\"a\"","#,
                r#""html":"<a href=\"{up}/y\">","#,
                r#""e":"say \"{up}\"","#,
                r#""b":"{up}\"x","#,
                r#""bs":"C:\\","u":"{up}/z","#,
                r#""k\"":"{up}"}}"#
            ),
            up = UP
        );
        let want = format!(
            concat!(
                // A URL value that holds escaped quotes: rewritten.
                r#"{{"q":"{pb}/x?q=\"a\"","#,
                // URLs after an escaped quote are inside another string
                // value: left as they are, as `rewrite_json` leaves them.
                r#""html":"<a href=\"{up}/y\">","#,
                r#""e":"say \"{up}\"","#,
                // A base followed by a quote character is not a URL on it.
                r#""b":"{up}\"x","#,
                // An escaped backslash before a closing quote: the next
                // string starts after it, and is rewritten.
                r#""bs":"C:\\","u":"{pb}/z","#,
                r#""k\"":"{pb}"}}"#
            ),
            up = UP,
            pb = PUB
        );
        let whole = rewriter().rewrite_bytes(doc.as_bytes());
        assert_eq!(std::str::from_utf8(&whole).unwrap(), want);
        // The same as rewriting the parsed values.
        let mut parsed: serde_json::Value = serde_json::from_str(&doc).unwrap();
        rewriter().rewrite_json(&mut parsed);
        let rewritten: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(rewritten, parsed);
        every_split(&doc, &want).await;
        let one_by_one = doc.chars().map(String::from).collect();
        assert_eq!(stream(rewriter(), one_by_one).await, want);
    }

    #[test]
    fn json_values_rewrite_everywhere() {
        let mut v = serde_json::json!({"order": {"Account": format!("{UP}/accounts/a")}, "links": [{"href": format!("{UP}/orders/o1/")}]});
        rewriter().rewrite_json(&mut v);
        assert_eq!(v["order"]["Account"], format!("{PUB}/accounts/a"));
        assert_eq!(v["links"][0]["href"], format!("{PUB}/order/"));
    }
}
