//! Owners: the `OwnerId` cookie and the owner → open order associations.
//!
//! The owner is the client identified by the `OwnerId` cookie, a UUID. This
//! module reads it from the `Cookie` header without building a cookie jar, and
//! holds the [`OwnerStore`] trait with its in-memory, redb and Redis
//! implementations.
//! It answers nothing itself: callers turn a [`CookieError`] into a 401 fault.

pub mod lease;
mod memory;
mod redb_store;
mod redis_store;
mod store;
mod tracking;

pub use memory::MemoryStore;
pub use redb_store::RedbStore;
pub use redis_store::RedisStore;
pub use store::{Association, OrderId, OwnerStore, StoreError, conformance};

use http::HeaderMap;
use http::header::COOKIE;
use lease::Leases;
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// An opened store: the associations, and the creation leases when other
/// replicas share it.
#[derive(Clone)]
pub struct Store {
    pub owners: Arc<dyn OwnerStore>,
    pub leases: Option<Arc<dyn Leases>>,
}

impl Store {
    /// A store only this process uses: no leases.
    pub fn unshared(owners: Arc<dyn OwnerStore>) -> Self {
        Self {
            owners,
            leases: None,
        }
    }
}

/// The name of the cookie that identifies an owner.
pub const OWNER_COOKIE: &str = "OwnerId";

/// A validated owner identifier (a UUID, as the upstream issues them).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerId(Uuid);

impl OwnerId {
    /// Mints a fresh random owner id (UUIDv4).
    pub fn mint() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses an owner id; only the hyphenated UUID form is accepted, as the
    /// upstream writes it.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        Self::parse_bytes(s.as_bytes())
    }

    /// [`OwnerId::parse`] of bytes.
    pub fn parse_bytes(s: &[u8]) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        Uuid::try_parse_ascii(s).ok().map(Self)
    }

    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    pub fn from_u128(v: u128) -> Self {
        Self(Uuid::from_u128(v))
    }

    /// The hyphenated form, written into `buf` without formatting.
    pub fn encode<'b>(&self, buf: &'b mut [u8; 36]) -> &'b str {
        self.0.hyphenated().encode_lower(buf)
    }
}

impl fmt::Display for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for OwnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerId({self})")
    }
}

/// Why the `OwnerId` cookie of a request cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("the OwnerId cookie is not a valid UUID")]
    Invalid,
    #[error("the request carries two different OwnerId cookies")]
    Conflicting,
}

/// Reads the `OwnerId` cookie from every `Cookie` header of a request.
///
/// `Ok(None)` when there is none; the same value sent twice is accepted (browsers
/// send one cookie per matching path, `/order` and `/orders`), two different
/// values or a value that is not a UUID are refused.
pub fn owner_from_headers(headers: &HeaderMap) -> Result<Option<OwnerId>, CookieError> {
    read_owner_cookie(headers).owner
}

/// A request's `OwnerId` cookie, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerCookie {
    /// None, one, or why it cannot be used ([`owner_from_headers`]).
    pub owner: Result<Option<OwnerId>, CookieError>,
    /// Written quoted (`OwnerId="…"`, which RFC 6265 allows and some
    /// clients send): the gateway reads it either way, and forwards it
    /// unquoted, as the upstream reads it ([`set_owner_cookie`]).
    pub quoted: bool,
}

/// The cookie pairs of a `Cookie` header, as `(name, value)` with the blanks
/// around each trimmed. Read as bytes: other cookies may carry any octets,
/// which are none of the gateway's business.
fn cookie_pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    value.split(|&b| b == b';').filter_map(|pair| {
        let eq = memchr::memchr(b'=', pair)?;
        Some((pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii()))
    })
}

/// Reads the `OwnerId` cookie from every `Cookie` header of a request.
pub fn read_owner_cookie(headers: &HeaderMap) -> OwnerCookie {
    let mut found: Option<OwnerId> = None;
    let mut quoted = false;
    for value in headers.get_all(COOKIE) {
        for (name, val) in cookie_pairs(value.as_bytes()) {
            if name != OWNER_COOKIE.as_bytes() {
                continue;
            }
            quoted |= val.first() == Some(&b'"');
            let val = trim_quotes(val);
            let Some(owner) = OwnerId::parse_bytes(val) else {
                return OwnerCookie {
                    owner: Err(CookieError::Invalid),
                    quoted,
                };
            };
            match found {
                Some(prev) if prev != owner => {
                    return OwnerCookie {
                        owner: Err(CookieError::Conflicting),
                        quoted,
                    };
                }
                _ => found = Some(owner),
            }
        }
    }
    OwnerCookie {
        owner: Ok(found),
        quoted,
    }
}

fn trim_quotes(mut v: &[u8]) -> &[u8] {
    while let [b'"', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b'"'] = v {
        v = rest;
    }
    v
}

/// Reads the `OwnerId` an upstream answer sets (`Set-Cookie: OwnerId=...`).
pub fn owner_from_set_cookie(headers: &HeaderMap) -> Option<OwnerId> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| cookie::Cookie::parse(v).ok())
        .find(|c| c.name() == OWNER_COOKIE)
        .and_then(|c| OwnerId::parse(c.value()))
}

/// Replaces the `OwnerId` cookie of an outgoing request with `owner`, keeping
/// every other cookie the client sent.
pub fn set_owner_cookie(headers: &mut HeaderMap, owner: OwnerId) {
    let mut others: Vec<u8> = Vec::new();
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let name = pair
                .iter()
                .position(|&b| b == b'=')
                .map_or(pair, |eq| &pair[..eq])
                .trim_ascii();
            if pair.is_empty() || name == OWNER_COOKIE.as_bytes() {
                continue;
            }
            others.extend_from_slice(pair);
            others.extend_from_slice(b"; ");
        }
    }
    let mut id = [0u8; 36];
    others.extend_from_slice(OWNER_COOKIE.as_bytes());
    others.push(b'=');
    others.extend_from_slice(owner.encode(&mut id).as_bytes());
    // Every byte came from a valid header value or is the owner id.
    if let Ok(v) = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(others)) {
        headers.insert(COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const A: &str = "4d84cd13-bbb3-46ba-a40c-8988351e3681";
    const B: &str = "73adb746-2443-4cc8-879e-886348385b9a";

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn reads_owner_among_other_cookies() {
        let h = headers(&[&format!("a=1; OwnerId={A}; Path=/order")]);
        assert_eq!(owner_from_headers(&h).unwrap().unwrap().to_string(), A);
    }

    #[test]
    fn absent_cookie_is_none() {
        assert_eq!(owner_from_headers(&headers(&["a=1; b=2"])).unwrap(), None);
        assert_eq!(owner_from_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn same_value_twice_is_accepted_different_values_are_not() {
        let same = headers(&[&format!("OwnerId={A}"), &format!("OwnerId={A}")]);
        assert!(owner_from_headers(&same).unwrap().is_some());
        let two = headers(&[&format!("OwnerId={A}; OwnerId={B}")]);
        assert_eq!(owner_from_headers(&two), Err(CookieError::Conflicting));
    }

    #[test]
    fn bad_values_are_invalid() {
        for bad in [
            "OwnerId=",
            "OwnerId=abc",
            "OwnerId=4d84cd13bbb346baa40c8988351e3681",
            "OwnerId=../x",
        ] {
            assert_eq!(
                owner_from_headers(&headers(&[bad])),
                Err(CookieError::Invalid),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_quoted_owner_is_read_and_can_be_unquoted() {
        let mut h = headers(&[&format!("a=1; OwnerId=\"{A}\"")]);
        assert!(read_owner_cookie(&h).quoted);
        let owner = owner_from_headers(&h).unwrap().unwrap();
        assert_eq!(owner.to_string(), A);
        set_owner_cookie(&mut h, owner);
        assert_eq!(h.get(COOKIE).unwrap(), &format!("a=1; OwnerId={A}"));
        assert!(!read_owner_cookie(&h).quoted);
        assert!(!read_owner_cookie(&headers(&[&format!("OwnerId={A}")])).quoted);
    }

    #[test]
    fn other_cookies_of_any_octets_neither_hide_the_owner_nor_get_lost() {
        // A cookie of another application with UTF-8 in its value.
        let mut other = b"name=Jos\xc3\xa9; ".to_vec();
        other.extend_from_slice(format!("OwnerId={A}").as_bytes());
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_bytes(&other).unwrap());
        assert_eq!(owner_from_headers(&h).unwrap().unwrap().to_string(), A);
        set_owner_cookie(&mut h, OwnerId::parse(B).unwrap());
        let mut want = b"name=Jos\xc3\xa9; ".to_vec();
        want.extend_from_slice(format!("OwnerId={B}").as_bytes());
        assert_eq!(h.get(COOKIE).unwrap().as_bytes(), &want[..]);
    }

    #[test]
    fn set_owner_cookie_replaces_only_owner() {
        let mut h = headers(&[&format!("a=1; OwnerId={A}"), "b=2"]);
        set_owner_cookie(&mut h, OwnerId::parse(B).unwrap());
        assert_eq!(h.get(COOKIE).unwrap(), &format!("a=1; b=2; OwnerId={B}"));
    }

    #[test]
    fn reads_set_cookie() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::SET_COOKIE,
            HeaderValue::from_static("x=1; Path=/"),
        );
        h.append(
            http::header::SET_COOKIE,
            HeaderValue::from_str(&format!("OwnerId={B}; Path=/")).unwrap(),
        );
        assert_eq!(owner_from_set_cookie(&h).unwrap().to_string(), B);
    }
}
