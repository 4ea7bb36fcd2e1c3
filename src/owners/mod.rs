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
        Uuid::try_parse(s).ok().map(Self)
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
    let mut found: Option<OwnerId> = None;
    for value in headers.get_all(COOKIE) {
        // A cookie header that is not visible ASCII cannot carry a valid OwnerId;
        // other cookies in it are none of the gateway's business.
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let Some((name, val)) = pair.split_once('=') else {
                continue;
            };
            if name.trim() != OWNER_COOKIE {
                continue;
            }
            let val = val.trim().trim_matches('"');
            let owner = OwnerId::parse(val).ok_or(CookieError::Invalid)?;
            match found {
                Some(prev) if prev != owner => return Err(CookieError::Conflicting),
                _ => found = Some(owner),
            }
        }
    }
    Ok(found)
}

/// Whether a request's `OwnerId` cookie is written quoted (`OwnerId="…"`,
/// which RFC 6265 allows and some clients send): the gateway reads it either
/// way, and forwards it unquoted, as the upstream reads it.
pub fn owner_cookie_quoted(headers: &HeaderMap) -> bool {
    headers
        .get_all(COOKIE)
        .iter()
        .any(|v| memchr::memmem::find(v.as_bytes(), b"OwnerId=\"").is_some())
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
    let mut others = String::new();
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            let pair = pair.trim();
            let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
            if pair.is_empty() || name == OWNER_COOKIE {
                continue;
            }
            others.push_str(pair);
            others.push_str("; ");
        }
    }
    others.push_str(OWNER_COOKIE);
    others.push('=');
    others.push_str(&owner.to_string());
    headers.remove(COOKIE);
    if let Ok(v) = http::HeaderValue::from_str(&others) {
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
        assert!(owner_cookie_quoted(&h));
        let owner = owner_from_headers(&h).unwrap().unwrap();
        assert_eq!(owner.to_string(), A);
        set_owner_cookie(&mut h, owner);
        assert_eq!(h.get(COOKIE).unwrap(), &format!("a=1; OwnerId={A}"));
        assert!(!owner_cookie_quoted(&h));
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
