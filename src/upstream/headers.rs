//! Header hygiene between the client and the upstream: hop-by-hop headers
//! removed both ways (RFC 9110 §7.6.1), and the `X-Forwarded-*` headers set
//! on the way up, believed from trusted proxies only (the request facts say
//! whether the peer is one). Request headers whose names hold an underscore
//! are dropped, as nginx does by default: CGI-style backends (PHP, WSGI)
//! read `transfer_encoding` or `x_forwarded_for` as `Transfer-Encoding` or
//! `X-Forwarded-For`, past every check the gateway made on those.

use crate::context::Facts;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [&HeaderName; 9] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::PROXY_AUTHENTICATE,
    &header::PROXY_AUTHORIZATION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
];

/// Whether a field describes one hop only, whatever `Connection` says.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    // Most names are not of a hop-by-hop name's length: no comparisons.
    let len = name.as_str().len();
    len < 32 && HOP_BY_HOP_LENGTHS & (1 << len) != 0 && HOP_BY_HOP.contains(&name)
}

/// Bit `n` set when a name in [`HOP_BY_HOP`] is `n` bytes long (`te` 2,
/// `trailer` and `upgrade` 7, `connection` and `keep-alive` 10,
/// `proxy-connection` 16, `transfer-encoding` 17, `proxy-authenticate` 18,
/// `proxy-authorization` 19; a unit test holds it to the list).
const HOP_BY_HOP_LENGTHS: u32 = 1 << 2 | 1 << 7 | 1 << 10 | 1 << 16 | 1 << 17 | 1 << 18 | 1 << 19;

/// The items of a comma-separated field value (`Connection`, say),
/// trimmed, as bytes; empty ones included.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present; most messages have
    // none, or only `Connection: keep-alive`.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| *h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // Headers named by Connection are hop-by-hop too; its usual options
    // (`keep-alive`, `close`) name nothing else.
    let named: Vec<HeaderName> = named_by_connection(headers)
        .filter_map(|n| HeaderName::from_bytes(n).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(*name);
        }
    }
}

/// Removes the headers whose names hold an underscore.
pub fn strip_underscored(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| dropped_for_underscore(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether a request field's name holds an underscore, for which the way
/// up drops it (and says so in the log).
fn dropped_for_underscore(name: &HeaderName) -> bool {
    // A plain loop: names are short, shorter than memchr's set-up.
    let underscored = name.as_str().bytes().any(|b| b == b'_');
    if underscored {
        tracing::debug!(
            header = name.as_str(),
            "request header with an underscore dropped"
        );
    }
    underscored
}

/// What the way up does to a request's header fields, decided once by
/// reading them: hop-by-hop fields (and those `Connection` names),
/// underscored ones and `Accept-Encoding` dropped; `Host` given when the
/// client sent none; `X-Forwarded-For`, `-Proto` and `-Host` set. What the
/// client sent of those is kept (and `X-Forwarded-For` extended) only when
/// the peer is a trusted proxy.
///
/// hyper's client gets it applied to the request's map ([`Self::apply`]).
/// The pooled exchange writes the fields as it writes the head
/// ([`Self::write`]) and leaves the map as it is: a map operation costs
/// about what writing a whole field does.
pub struct Outbound {
    /// `Host`, when the client sent none (HTTP/2 clients).
    host: Option<HeaderValue>,
    forwarded_for: Field<ForwardedFor>,
    forwarded_proto: Field<&'static str>,
    forwarded_host: Field<HeaderValue>,
    /// `Connection` names fields besides its usual options.
    connection_names: bool,
}

/// What becomes of one forwarding header of the client's.
enum Field<V> {
    Keep,
    Drop,
    /// Replaced, every field of that name, by this one.
    Set(V),
}

impl<V> Field<V> {
    /// The same decision with its value made by `f`; no value: dropped.
    fn map<W>(self, f: impl FnOnce(V) -> Option<W>) -> Field<W> {
        match self {
            Field::Keep => Field::Keep,
            Field::Drop => Field::Drop,
            Field::Set(v) => f(v).map_or(Field::Drop, Field::Set),
        }
    }
}

enum ForwardedFor {
    Peer(IpAddr),
    /// A trusted proxy's list, the peer added.
    Chain(HeaderValue),
}

/// What a request's fields say of those the way up sets, read in one pass
/// (no lookups), fields named in `named` left out.
struct Seen<'a> {
    host: Option<&'a HeaderValue>,
    prior_for: Option<&'a HeaderValue>,
    has_proto: bool,
    has_forwarded_host: bool,
    /// `Connection` names fields besides its usual options.
    connection_names: bool,
}

impl<'a> Seen<'a> {
    fn of(headers: &'a HeaderMap, named: &[&[u8]]) -> Self {
        let mut seen = Seen {
            host: None,
            prior_for: None,
            has_proto: false,
            has_forwarded_host: false,
            connection_names: false,
        };
        for (name, value) in headers {
            if !named.is_empty() && named.iter().any(|n| n.eq_ignore_ascii_case(name.as_ref())) {
                continue;
            }
            if *name == header::HOST {
                seen.host.get_or_insert(value);
            } else if *name == header::CONNECTION {
                seen.connection_names |= named_in(value.as_bytes()).next().is_some();
            } else if *name == X_FORWARDED_FOR {
                seen.prior_for.get_or_insert(value);
            } else if *name == X_FORWARDED_PROTO {
                seen.has_proto = true;
            } else if *name == X_FORWARDED_HOST {
                seen.has_forwarded_host = true;
            }
        }
        seen
    }
}

/// The fields a `Connection` value names, besides its usual options.
fn named_in(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    list_items(value).filter(|o| {
        !o.is_empty() && !o.eq_ignore_ascii_case(b"keep-alive") && !o.eq_ignore_ascii_case(b"close")
    })
}

/// The fields the `Connection` fields name, besides their usual options.
fn named_by_connection(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| named_in(v.as_bytes()))
}

impl Outbound {
    /// `authority`: the request URI's (an HTTP/2 request's host, which
    /// comes without `Host`); `upstream_host`: the `Host` the upstream gets
    /// then.
    pub fn new(
        headers: &HeaderMap,
        authority: Option<&http::uri::Authority>,
        upstream_host: &HeaderValue,
        facts: &Facts,
    ) -> Self {
        let mut seen = Seen::of(headers, &[]);
        // The host the client asked for, whatever `Connection` says of it.
        let asked = seen.host;
        let connection_names = seen.connection_names;
        if connection_names {
            // Fields `Connection` names go, so they count as not sent
            // (rare: a second pass).
            let named: Vec<&[u8]> = named_by_connection(headers).collect();
            seen = Seen::of(headers, &named);
        }
        let Seen {
            host,
            prior_for,
            has_proto,
            has_forwarded_host,
            ..
        } = seen;
        let client_host = asked
            .cloned()
            .or_else(|| authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        let proto = if facts.tls() { "https" } else { "http" };
        let peer = facts.peer.map(|p| p.addr.ip());
        let (forwarded_for, forwarded_proto, forwarded_host) = if facts.peer_trusted {
            let forwarded_for = match (peer, prior_for.and_then(|v| v.to_str().ok())) {
                (None, _) => Field::Keep,
                (Some(peer), None) => Field::Set(ForwardedFor::Peer(peer)),
                (Some(peer), Some(prior)) => HeaderValue::from_str(&format!("{prior}, {peer}"))
                    .map_or(Field::Keep, |v| Field::Set(ForwardedFor::Chain(v))),
            };
            let forwarded_host = match client_host {
                Some(h) if !has_forwarded_host => Field::Set(h),
                _ => Field::Keep,
            };
            let forwarded_proto = if has_proto {
                Field::Keep
            } else {
                Field::Set(proto)
            };
            (forwarded_for, forwarded_proto, forwarded_host)
        } else {
            // What the client says of itself is replaced, or dropped.
            (
                peer.map_or(Field::Drop, |p| Field::Set(ForwardedFor::Peer(p))),
                Field::Set(proto),
                client_host.map_or(Field::Drop, Field::Set),
            )
        };
        Self {
            host: host.is_none().then(|| upstream_host.clone()),
            forwarded_for,
            forwarded_proto,
            forwarded_host,
            connection_names,
        }
    }

    /// Applies it to the request's map.
    pub fn apply(self, headers: &mut HeaderMap) {
        strip_hop_by_hop(headers);
        strip_underscored(headers);
        headers.remove(header::ACCEPT_ENCODING);
        if let Some(host) = self.host {
            headers.insert(header::HOST, host);
        }
        let forwarded_for = self.forwarded_for.map(|f| match f {
            ForwardedFor::Peer(ip) => ip_header_value(ip).ok(),
            ForwardedFor::Chain(v) => Some(v),
        });
        let proto = self
            .forwarded_proto
            .map(|p| Some(HeaderValue::from_static(p)));
        for (name, field) in [
            (&X_FORWARDED_FOR, forwarded_for),
            (&X_FORWARDED_PROTO, proto),
            (&X_FORWARDED_HOST, self.forwarded_host),
        ] {
            match field {
                Field::Keep => {}
                Field::Drop => {
                    headers.remove(name);
                }
                Field::Set(v) => {
                    headers.insert(name.clone(), v);
                }
            }
        }
    }

    /// Readies the map for [`Self::write`]: the fields `Connection` names
    /// leave it first (rare), so that no field added afterwards (a trace
    /// context) is taken for one of them.
    pub fn strip_named(&self, headers: &mut HeaderMap) {
        if self.connection_names {
            strip_hop_by_hop(headers);
        }
    }

    /// Writes the fields the upstream gets, `name: value\r\n` each: the
    /// map's that go on, then the added ones. Not the framing fields
    /// (`Content-Length`, `Transfer-Encoding`): the exchange writes those
    /// as it frames the body. The map has been through
    /// [`Self::strip_named`].
    pub fn write(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        for (name, value) in headers {
            let replaced = if *name == X_FORWARDED_FOR {
                !matches!(self.forwarded_for, Field::Keep)
            } else if *name == X_FORWARDED_PROTO {
                !matches!(self.forwarded_proto, Field::Keep)
            } else if *name == X_FORWARDED_HOST {
                !matches!(self.forwarded_host, Field::Keep)
            } else {
                false
            };
            if replaced
                || HOP_BY_HOP.contains(&name)
                || *name == header::ACCEPT_ENCODING
                || *name == header::CONTENT_LENGTH
            {
                continue;
            }
            if !dropped_for_underscore(name) {
                field(out, name.as_ref(), value.as_bytes());
            }
        }
        if let Some(host) = &self.host {
            field(out, b"host", host.as_bytes());
        }
        match &self.forwarded_for {
            Field::Set(ForwardedFor::Peer(ip)) => {
                out.extend_from_slice(b"x-forwarded-for: ");
                write_ip(*ip, out);
                out.extend_from_slice(b"\r\n");
            }
            Field::Set(ForwardedFor::Chain(v)) => field(out, b"x-forwarded-for", v.as_bytes()),
            Field::Keep | Field::Drop => {}
        }
        if let Field::Set(proto) = self.forwarded_proto {
            field(out, b"x-forwarded-proto", proto.as_bytes());
        }
        if let Field::Set(host) = &self.forwarded_host {
            field(out, b"x-forwarded-host", host.as_bytes());
        }
    }
}

/// Writes one header field, `name: value\r\n`.
pub(crate) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// An IP address as a header value.
fn ip_header_value(ip: IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut buf = Vec::with_capacity(15);
    write_ip(ip, &mut buf);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(buf))
}

/// Writes an IP address as text; IPv4, the common case on every request,
/// without the formatting machinery.
fn write_ip(ip: IpAddr, out: &mut Vec<u8>) {
    let IpAddr::V4(v4) = ip else {
        use std::io::Write;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// Whether a body is JSON by its `Content-Type` (`application/json` or any
/// `+json` type).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let mime = ct.split(';').next().unwrap_or("").trim();
            mime.eq_ignore_ascii_case("application/json")
                || mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Peer;

    #[test]
    fn the_hop_by_hop_lengths_are_the_lists() {
        let lengths = HOP_BY_HOP
            .iter()
            .fold(0u32, |bits, name| bits | 1 << name.as_str().len());
        assert_eq!(HOP_BY_HOP_LENGTHS, lengths);
        for name in HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in ["host", "user-agent", "x-request-id", "trailers", "te-x"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        let long = HeaderName::from_static("x-a-field-name-longer-than-thirty-two-bytes");
        assert!(!is_hop_by_hop(&long));
    }

    /// The fields the upstream gets from `h`, by both ways of doing it,
    /// which must agree: the map made ready, and the fields written.
    fn outbound(h: &mut HeaderMap, facts: &Facts, authority: Option<&str>) {
        let authority: Option<http::uri::Authority> = authority.map(|a| a.parse().unwrap());
        let upstream = HeaderValue::from_static("upstream.example");
        let ready = Outbound::new(h, authority.as_ref(), &upstream, facts);
        let mut wire = Vec::new();
        let mut stripped = h.clone();
        ready.strip_named(&mut stripped);
        ready.write(&stripped, &mut wire);
        Outbound::new(h, authority.as_ref(), &upstream, facts).apply(h);
        let mut written: Vec<(String, String)> = String::from_utf8(wire)
            .unwrap()
            .split_terminator("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let mut applied: Vec<(String, String)> = h
            .iter()
            .filter(|(n, _)| *n != header::CONTENT_LENGTH)
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        written.sort();
        applied.sort();
        assert_eq!(written, applied);
    }

    #[test]
    fn written_fields_are_the_map_made_ready() {
        let peer = Peer {
            addr: "10.0.0.1:5000".parse().unwrap(),
            tls: false,
        };
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("gw.example"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret, Upgrade"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        h.insert("x_forwarded_for", HeaderValue::from_static("1.1.1.1"));
        h.append(header::ACCEPT, HeaderValue::from_static("a/b"));
        h.append(header::ACCEPT, HeaderValue::from_static("c/d"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        for trusted in [&trusted[..], &[]] {
            for forwarded in [&[][..], &["1.1.1.1", "2.2.2.2"], &["\u{7f}bad"]] {
                let mut h = h.clone();
                for v in forwarded {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.append("x-forwarded-for", v);
                    }
                }
                let facts = Facts::new("/", &h, Some(peer), trusted, None);
                outbound(&mut h, &facts, None);
                assert!(!h.contains_key("x-secret") && !h.contains_key(header::UPGRADE));
                assert!(!h.contains_key(header::ACCEPT_ENCODING));
                assert!(!h.contains_key("x_forwarded_for"));
                assert_eq!(h.get_all(header::ACCEPT).iter().count(), 2);
                assert_eq!(h[header::HOST], "gw.example");
                assert_eq!(h["x-forwarded-host"], "gw.example");
            }
        }
        // Fields `Connection` names count as not sent: the upstream's Host
        // and the gateway's X-Forwarded-Proto take their place, and the
        // host the client asked for is still forwarded.
        for trusted in [&trusted[..], &[]] {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("gw.example"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("ftp"));
            h.insert(
                header::CONNECTION,
                HeaderValue::from_static("Host, X-Forwarded-Proto"),
            );
            let facts = Facts::new("/", &h, Some(peer), trusted, None);
            outbound(&mut h, &facts, None);
            assert_eq!(h[header::HOST], "upstream.example");
            assert_eq!(h["x-forwarded-proto"], "http");
            assert_eq!(h["x-forwarded-host"], "gw.example");
        }
        // `Connection` that names itself: what it names goes all the same,
        // and one Host is sent, the upstream's.
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("gw.example"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("connection, host, authorization"),
        );
        let facts = Facts::new("/", &h, Some(peer), &[], None);
        outbound(&mut h, &facts, None);
        assert_eq!(h.get_all(header::HOST).iter().count(), 1);
        assert_eq!(h[header::HOST], "upstream.example");
        assert!(!h.contains_key(header::AUTHORIZATION));
        // No Host of the client's: the upstream's, and the authority forwarded.
        let mut h = HeaderMap::new();
        let facts = Facts::new("/", &h, Some(peer), &[], None);
        outbound(&mut h, &facts, Some("h2.example"));
        assert_eq!(h[header::HOST], "upstream.example");
        assert_eq!(h["x-forwarded-host"], "h2.example");
    }

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("transfer_encoding", HeaderValue::from_static("chunked"));
        h.insert("x_forwarded_for", HeaderValue::from_static("1.1.1.1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_underscored(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn forwarded_headers_are_believed_only_from_trusted_proxies() {
        let sent = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
            h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
            h
        };
        let peer = Peer {
            addr: "10.0.0.1:5000".parse().unwrap(),
            tls: false,
        };
        let trusted: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap()];
        let from = |trusted: &[IpAddr]| {
            let mut h = sent();
            let facts = Facts::new("/", &h, Some(peer), trusted, None);
            outbound(&mut h, &facts, Some("gw.example"));
            h
        };
        let h = from(&trusted);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw.example");
        let h = from(&[]);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn an_untrusted_clients_forwarding_headers_are_replaced_or_dropped_every_one() {
        let sent = || {
            let mut h = HeaderMap::new();
            for v in ["1.1.1.1", "2.2.2.2"] {
                h.append("x-forwarded-for", HeaderValue::from_static(v));
            }
            h.append("x-forwarded-proto", HeaderValue::from_static("https"));
            h.append("x-forwarded-proto", HeaderValue::from_static("ftp"));
            h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
            h
        };
        let values = |h: &HeaderMap, name: &str| -> Vec<String> {
            h.get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        // A peer, no host of its own (an HTTP/2 request without authority).
        let peer = Peer {
            addr: "[2001:db8::7]:5000".parse().unwrap(),
            tls: true,
        };
        let mut h = sent();
        let facts = Facts::new("/", &h, Some(peer), &[], None);
        outbound(&mut h, &facts, None);
        assert_eq!(values(&h, "x-forwarded-for"), ["2001:db8::7"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
        assert!(values(&h, "x-forwarded-host").is_empty());
        // No peer at all (the service on its own): nothing of the client's stays.
        let mut h = sent();
        let facts = Facts::new("/", &h, None, &[], None);
        outbound(&mut h, &facts, Some("gw.example"));
        assert!(values(&h, "x-forwarded-for").is_empty());
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&h, "x-forwarded-host"), ["gw.example"]);
    }

    #[test]
    fn ip_header_values() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "1.99.100.9",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_header_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        for (ct, json) in [
            ("application/json; charset=UTF-8", true),
            ("Application/JSON", true),
            ("application/hal+json", true),
            ("text/html", false),
            ("json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_json(&h), json, "{ct}");
        }
    }
}
