//! Routes: which part of the orders API a request path names.
//!
//! Pure code, no I/O: [`classify`] tells the `/order` shorthand from an explicit
//! `/orders/<id>` path and from everything else, and refuses paths that try to
//! climb out of where they point (dot segments, encoded separators), which the
//! orders phase answers with 400. [`crate::context`] classifies each request
//! once; every layer reads the result.

use crate::owners::OrderId;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/order` or `/order/<child…>`.
    Shorthand { rest: Rest },
    /// `/orders` (the collection: `POST` creates an order).
    Orders,
    /// `/orders/<id>` or `/orders/<id>/<child…>`.
    Order { id: OrderId, rest: Rest },
    /// Anything else: proxied as it is.
    Other,
}

/// What follows the order in a path: `""` or a path starting with `/`.
/// Held without an allocation when empty (the order itself).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Rest(Box<str>);

impl Rest {
    fn new(rest: &str) -> Self {
        Self(rest.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The order itself (`/order`, `/orders/<id>`, with or without a
    /// trailing slash), not one of its children.
    pub fn is_itself(&self) -> bool {
        self.0.is_empty() || &*self.0 == "/"
    }

    /// The order's `action` child, where orders are validated and submitted.
    pub fn is_action(&self) -> bool {
        matches!(&*self.0, "/action" | "/action/")
    }
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<&str> for Rest {
    fn from(rest: &str) -> Self {
        Self::new(rest)
    }
}

impl Route {
    /// The order a route names and what follows it, for both forms.
    pub fn child(&self) -> Option<&Rest> {
        match self {
            Route::Shorthand { rest } | Route::Order { rest, .. } => Some(rest),
            _ => None,
        }
    }
}

/// A path the gateway refuses to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path contains a `.` or `..` segment")]
    DotSegment,
    #[error("the path contains an encoded `/` or `\\`")]
    EncodedSeparator,
}

const SHORTHAND: &str = "/order";
const ORDERS: &str = "/orders";

/// Classifies a request path (without the query string).
pub fn classify(path: &str) -> Result<Route, PathError> {
    // Dot segments need a `.`, plain or percent-encoded.
    // (Looked for by `memchr`: a byte at a time costs more than the rest of
    // the classification.)
    if memchr::memchr2(b'.', b'%', path.as_bytes()).is_some() && path.split('/').any(is_dot_segment)
    {
        return Err(PathError::DotSegment);
    }
    if let Some(rest) = path.strip_prefix(SHORTHAND) {
        if rest.is_empty() || rest.starts_with('/') {
            check_separators(rest)?;
            return Ok(Route::Shorthand {
                rest: Rest::new(rest),
            });
        }
        if let Some(rest) = rest.strip_prefix('s') {
            if rest.is_empty() || rest == "/" {
                return Ok(Route::Orders);
            }
            if let Some(after) = rest.strip_prefix('/') {
                let (id, child) = memchr::memchr(b'/', after.as_bytes())
                    .map_or((after, ""), |i| after.split_at(i));
                if let Some(id) = OrderId::parse(id) {
                    check_separators(child)?;
                    return Ok(Route::Order {
                        id,
                        rest: Rest::new(child),
                    });
                }
            }
        }
    }
    Ok(Route::Other)
}

/// Builds the explicit upstream path `/orders/<id><rest>` plus the query.
pub fn explicit_path(id: &OrderId, rest: &Rest, query: Option<&str>) -> String {
    let rest = rest.as_str();
    let mut out = String::with_capacity(
        ORDERS.len() + 1 + id.as_str().len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    out.push_str(ORDERS);
    out.push('/');
    out.push_str(id.as_str());
    out.push_str(rest);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `s` without `prefix` (ASCII, in any case); compared as bytes, so that a
/// multi-byte character where the prefix would end is no match, not a panic.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    // An ASCII prefix matched: its end is a character boundary.
    if head.eq_ignore_ascii_case(prefix.as_bytes()) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn is_dot_segment(seg: &str) -> bool {
    // `.` may also arrive percent-encoded (`%2e`, `%2E`), alone or mixed.
    let mut rest = seg;
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = strip_prefix_ignore_case(rest, "%2e") {
            rest = r;
        } else {
            return false;
        }
        dots += 1;
    }
    dots == 1 || dots == 2
}

fn check_separators(rest: &str) -> Result<(), PathError> {
    let bytes = rest.as_bytes();
    let encoded = bytes.windows(3).any(|w| {
        w[0] == b'%' && (w[1..].eq_ignore_ascii_case(b"2f") || w[1..].eq_ignore_ascii_case(b"5c"))
    });
    if encoded || bytes.contains(&b'\\') {
        return Err(PathError::EncodedSeparator);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> OrderId {
        OrderId::parse(s).unwrap()
    }

    #[test]
    fn shorthand_paths() {
        assert_eq!(classify("/order"), Ok(Route::Shorthand { rest: "".into() }));
        assert_eq!(
            classify("/order/"),
            Ok(Route::Shorthand { rest: "/".into() })
        );
        assert_eq!(
            classify("/order/product/p1"),
            Ok(Route::Shorthand {
                rest: "/product/p1".into()
            })
        );
    }

    #[test]
    fn explicit_paths() {
        assert_eq!(classify("/orders"), Ok(Route::Orders));
        assert_eq!(classify("/orders/"), Ok(Route::Orders));
        assert_eq!(
            classify("/orders/abc"),
            Ok(Route::Order {
                id: id("abc"),
                rest: "".into()
            })
        );
        assert_eq!(
            classify("/orders/abc/action"),
            Ok(Route::Order {
                id: id("abc"),
                rest: "/action".into()
            })
        );
    }

    #[test]
    fn look_alikes_are_other() {
        for p in [
            "/orderX",
            "/order-x/1",
            "/ordersX",
            "/",
            "/accounts/a/order",
            "//order",
            "/orders/a%20b",
        ] {
            assert_eq!(classify(p), Ok(Route::Other), "{p}");
        }
    }

    /// Found by the `classify_path` fuzz target: a segment with a
    /// multi-byte character where `%2e` would end panicked.
    #[test]
    fn non_ascii_segments_are_classified() {
        assert_eq!(classify("\u{450}\u{450}"), Ok(Route::Other));
        assert!(matches!(
            classify("/order/\u{450}\u{450}"),
            Ok(Route::Shorthand { .. })
        ));
        assert_eq!(classify("/x/%2E\u{e9}"), Ok(Route::Other));
        assert_eq!(classify("/x/.%2\u{e9}"), Ok(Route::Other));
    }

    #[test]
    fn climbing_paths_are_refused() {
        for p in [
            "/order/../orders/x",
            "/order/%2e%2e/orders/x",
            "/order/.%2E/x",
            "/orders/a/./b",
            "/x/%2E",
        ] {
            assert_eq!(classify(p), Err(PathError::DotSegment), "{p}");
        }
        for p in [
            "/order/%2forders%2fx",
            "/order/a%5Cb",
            "/order/a\\b",
            "/orders/x/a%2Fb",
        ] {
            assert_eq!(classify(p), Err(PathError::EncodedSeparator), "{p}");
        }
        // Dots inside a segment are fine.
        assert_eq!(
            classify("/order/file.json"),
            Ok(Route::Shorthand {
                rest: "/file.json".into()
            })
        );
        assert_eq!(
            classify("/order/..."),
            Ok(Route::Shorthand {
                rest: "/...".into()
            })
        );
    }

    #[test]
    fn builds_explicit_paths() {
        assert_eq!(
            explicit_path(&id("o1"), &Rest::default(), None),
            "/orders/o1"
        );
        assert_eq!(
            explicit_path(&id("o1"), &"/quote".into(), Some("a=1")),
            "/orders/o1/quote?a=1"
        );
    }
}
