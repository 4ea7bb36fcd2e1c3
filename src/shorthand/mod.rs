//! Resolution of request paths: which part of the orders API a path names.
//!
//! Pure code, no I/O: [`classify`] tells the `/order` shorthand from an explicit
//! `/orders/<id>` path and from everything else, and refuses paths that try to
//! climb out of where they point (dot segments, encoded separators), which the
//! caller answers with 400. The orders phase ([`crate::orders`]) acts on the result.

use crate::owners::OrderId;

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/order` or `/order/<child…>`; `rest` is `""` or starts with `/`.
    Shorthand { rest: &'a str },
    /// `/orders` (the collection: `POST` creates an order).
    Orders,
    /// `/orders/<id>` or `/orders/<id>/<child…>`; `rest` as for the shorthand.
    Order { id: OrderId, rest: &'a str },
    /// Anything else: proxied as it is.
    Other,
}

impl Route<'_> {
    /// Whether the path is the order itself (`/order`, `/orders/<id>`, with or
    /// without a trailing slash), not one of its children.
    pub fn is_order_itself(rest: &str) -> bool {
        rest.is_empty() || rest == "/"
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
pub fn classify(path: &str) -> Result<Route<'_>, PathError> {
    if path.split('/').any(is_dot_segment) {
        return Err(PathError::DotSegment);
    }
    if let Some(rest) = path.strip_prefix(SHORTHAND) {
        if rest.is_empty() || rest.starts_with('/') {
            check_separators(rest)?;
            return Ok(Route::Shorthand { rest });
        }
        if let Some(rest) = rest.strip_prefix('s') {
            if rest.is_empty() || rest == "/" {
                return Ok(Route::Orders);
            }
            if let Some(after) = rest.strip_prefix('/') {
                let (id, child) = after.find('/').map_or((after, ""), |i| after.split_at(i));
                if let Some(id) = OrderId::parse(id) {
                    check_separators(child)?;
                    return Ok(Route::Order { id, rest: child });
                }
            }
        }
    }
    Ok(Route::Other)
}

/// Builds the explicit upstream path `/orders/<id><rest>` plus the query.
pub fn explicit_path(id: &OrderId, rest: &str, query: Option<&str>) -> String {
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

fn is_dot_segment(seg: &str) -> bool {
    // `.` may also arrive percent-encoded (`%2e`, `%2E`), alone or mixed.
    let mut rest = seg;
    let mut dots = 0;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("%2e") {
            rest = &rest[3..];
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
        assert_eq!(classify("/order"), Ok(Route::Shorthand { rest: "" }));
        assert_eq!(classify("/order/"), Ok(Route::Shorthand { rest: "/" }));
        assert_eq!(
            classify("/order/product/p1"),
            Ok(Route::Shorthand {
                rest: "/product/p1"
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
                rest: ""
            })
        );
        assert_eq!(
            classify("/orders/abc/action"),
            Ok(Route::Order {
                id: id("abc"),
                rest: "/action"
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
            Ok(Route::Shorthand { rest: "/file.json" })
        );
        assert_eq!(
            classify("/order/..."),
            Ok(Route::Shorthand { rest: "/..." })
        );
    }

    #[test]
    fn builds_explicit_paths() {
        assert_eq!(explicit_path(&id("o1"), "", None), "/orders/o1");
        assert_eq!(
            explicit_path(&id("o1"), "/quote", Some("a=1")),
            "/orders/o1/quote?a=1"
        );
    }
}
