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

/// The items of a comma-separated field value (`Connection`, say),
/// trimmed, as bytes; empty ones included.
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// The options of the `Connection` header fields, trimmed, as bytes.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| list_items(v.as_bytes()))
        .filter(|t| !t.is_empty())
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
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|n| !n.eq_ignore_ascii_case(b"keep-alive") && !n.eq_ignore_ascii_case(b"close"))
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
    if !headers.keys().any(|n| n.as_str().contains('_')) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    for name in names {
        tracing::debug!(
            header = name.as_str(),
            "request header with an underscore dropped"
        );
        headers.remove(name);
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` for the upstream. What the
/// client sent is kept (and `X-Forwarded-For` extended) only when the peer
/// is a trusted proxy. `client_host` is the host the client asked for.
pub fn set_forwarded(headers: &mut HeaderMap, facts: &Facts, client_host: Option<HeaderValue>) {
    let proto = HeaderValue::from_static(if facts.tls() { "https" } else { "http" });
    let peer = facts.peer.map(|p| p.addr.ip());
    if !facts.peer_trusted {
        // What the client says of itself is replaced, or dropped: each
        // header is set or removed once (a map operation per header is
        // most of this function's cost).
        match peer.map(ip_header_value) {
            Some(Ok(v)) => {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
            _ => {
                headers.remove(&X_FORWARDED_FOR);
            }
        }
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
        match client_host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST.clone(), host);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
        return;
    }
    if let Some(peer) = peer {
        let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) => HeaderValue::from_str(&format!("{prior}, {peer}")),
            None => ip_header_value(peer),
        };
        if let Ok(v) = value {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(host) = client_host
    {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

/// An IP address as a header value; IPv4, the common case on every request,
/// without the formatting machinery.
fn ip_header_value(ip: IpAddr) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string());
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = [octet / 100, octet / 10 % 10, octet % 10];
        let skip = if octet >= 100 {
            0
        } else if octet >= 10 {
            1
        } else {
            2
        };
        for d in &digits[skip..] {
            buf[len] = b'0' + d;
            len += 1;
        }
    }
    HeaderValue::from_bytes(&buf[..len])
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
            set_forwarded(&mut h, &facts, Some(HeaderValue::from_static("gw.example")));
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
        set_forwarded(&mut h, &facts, None);
        assert_eq!(values(&h, "x-forwarded-for"), ["2001:db8::7"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
        assert!(values(&h, "x-forwarded-host").is_empty());
        // No peer at all (the service on its own): nothing of the client's stays.
        let mut h = sent();
        let facts = Facts::new("/", &h, None, &[], None);
        set_forwarded(&mut h, &facts, Some(HeaderValue::from_static("gw.example")));
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
