//! What the gateway reads in order bodies and action bodies: an order's
//! status, its links, whether an action submits. Pure code over bytes
//! already read (and decoded) by [`crate::body::read_decoded`].
//!
//! An order's status and links are read without building a JSON tree of the
//! order, and [`Views`] keeps the last view of each order, so an order read
//! again unchanged is not parsed again.

use super::memo::Memo;
use crate::owners::OrderId;
use crate::upstream::rewrite::Rewriter;
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// What the gateway makes of an order body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderView {
    /// The body for the client.
    pub body: Bytes,
    /// The order is no longer `new`.
    pub closed: bool,
    /// The body was rebuilt as JSON: its type is set.
    pub json: bool,
}

/// The last body read of each order and the view made of it, per route
/// (shorthand or explicit): an order read again unchanged is not parsed
/// again. Bounded by count and body size.
pub struct Views {
    seen: Memo<(OrderId, bool), Arc<Seen>>,
}

/// Most orders whose last view is kept, and the largest body kept.
const VIEWS: usize = 2048;
const MAX_VIEWED_BODY: usize = 4096;

struct Seen {
    upstream: Bytes,
    view: OrderView,
}

impl Default for Views {
    fn default() -> Self {
        Self {
            seen: Memo::new(VIEWS),
        }
    }
}

impl Views {
    /// The view of an order body, `links` (`(rel, href)`) set when given (the
    /// shorthand's `self` and `alternate`), URLs rewritten by `rewriter`.
    pub fn view(
        &self,
        bytes: Bytes,
        order: &OrderId,
        rewriter: &Rewriter,
        links: Option<impl FnOnce() -> [(&'static str, String); 2]>,
    ) -> OrderView {
        let key = (order.clone(), links.is_some());
        if let Some(seen) = self.seen.get(&key)
            && seen.upstream == bytes
        {
            return seen.view.clone();
        }
        // The links are made only for a body not seen before.
        let links = links.map(|make| make());
        let links = links
            .as_ref()
            .map(|[(a, x), (b, y)]| [(*a, x.as_str()), (*b, y.as_str())]);
        let view = make_view(&bytes, rewriter, links.as_ref().map(|l| &l[..]));
        if bytes.len() <= MAX_VIEWED_BODY {
            let seen = Seen {
                upstream: bytes,
                view: view.clone(),
            };
            self.seen.insert(key, Arc::new(seen));
        }
        view
    }
}

/// The view of an order body: only the status and the links are read (no
/// JSON tree of the order), and the body is not copied when there is
/// nothing to change.
fn make_view(bytes: &Bytes, rewriter: &Rewriter, links: Option<&[(&str, &str)]>) -> OrderView {
    let passed = |closed| OrderView {
        body: bytes.clone(),
        closed,
        json: false,
    };
    let Some(links) = links else {
        return match body_is_open(bytes) {
            Some(open) if !rewriter.is_empty() => OrderView {
                body: rewriter.rewrite_bytes(bytes),
                closed: !open,
                json: false,
            },
            Some(open) => passed(!open),
            None => passed(false),
        };
    };
    // One pass over the rewritten body reads the status and sets the links;
    // a body that is not JSON passes as it came.
    let rewritten = rewriter.rewrite_bytes(bytes);
    match order_view(&rewritten, links) {
        Shown::NotJson => passed(false),
        Shown::Closed => passed(true),
        Shown::Open(view) => OrderView {
            body: view.map_or(rewritten, Bytes::from),
            closed: false,
            json: true,
        },
    }
}

/// The `Status` of an order body (`{"order": {"Status": ...}}`), if it has one.
/// Keys are matched case-insensitively: the upstream writes `Status`, child
/// resources write `status`.
pub fn order_status(body: &Value) -> Option<&str> {
    fn status_of(map: &Map<String, Value>) -> Option<&str> {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("status"))
            .and_then(|(_, v)| v.as_str())
    }
    let obj = body.as_object()?;
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("order"))
        .and_then(|(_, v)| v.as_object())
        .and_then(status_of)
        .or_else(|| status_of(obj))
}

/// Whether an order body says the order is open, as
/// `is_open(order_status(&json))` would, without building the JSON tree: the
/// gateway reads the status of every tracked order that passes through.
/// `None` when the body is not JSON.
pub fn body_is_open(body: &[u8]) -> Option<bool> {
    // From a `str`: a value skipped unread is not checked for UTF-8 when
    // parsed from bytes, and a body that is not UTF-8 is not JSON.
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str::<StatusIn<true>>(text)
        .ok()
        .map(|s| s.open.unwrap_or(true))
}

/// A JSON value visited without keeping it: whether it is an object and, if
/// so, `Some(open)` for its status as [`order_status`] finds it (with `ORDER`,
/// the status in its first `order` object, else its own `status`; without,
/// its own `status` only).
struct StatusIn<const ORDER: bool> {
    object: bool,
    open: Option<bool>,
}

/// One JSON value, consumed: `Some(open)` if it is a string.
struct StringOpen(Option<bool>);

macro_rules! ignore_scalars {
    ($out:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok($out)
        }
    };
}

impl<'de> serde::Deserialize<'de> for StringOpen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StringOpen;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            ignore_scalars!(StringOpen(None));
            fn visit_str<E>(self, s: &str) -> Result<StringOpen, E> {
                Ok(StringOpen(Some(is_open(Some(s)))))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StringOpen, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(StringOpen(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed when it has no escapes.
struct Key<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de, const ORDER: bool> serde::Deserialize<'de> for StatusIn<ORDER> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const ORDER: bool>;
        const NOT_AN_OBJECT: (bool, Option<bool>) = (false, None);
        impl<'de, const ORDER: bool> serde::de::Visitor<'de> for V<ORDER> {
            type Value = (bool, Option<bool>);
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            ignore_scalars!(NOT_AN_OBJECT);
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(NOT_AN_OBJECT)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                // Only the first key of each name counts, as in order_status.
                let mut status: Option<Option<bool>> = None;
                let mut order: Option<Option<bool>> = None;
                while let Some(Key(k)) = map.next_key::<Key>()? {
                    // Each read from its raw text, as `order_view` reads it:
                    // a value of another kind (a number no f64 holds, say)
                    // is no status, and not a reason to call the body not
                    // JSON.
                    if status.is_none() && k.eq_ignore_ascii_case("status") {
                        let raw = map.next_value::<&RawValue>()?;
                        status = Some(
                            serde_json::from_str::<StringOpen>(raw.get())
                                .ok()
                                .and_then(|s| s.0),
                        );
                    } else if ORDER && order.is_none() && k.eq_ignore_ascii_case("order") {
                        let raw = map.next_value::<&RawValue>()?;
                        order = Some(
                            serde_json::from_str::<StatusIn<false>>(raw.get())
                                .ok()
                                .and_then(|inner| inner.open.filter(|_| inner.object)),
                        );
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok((true, order.flatten().or(status.flatten())))
            }
        }
        let (object, open) = d.deserialize_any(V::<ORDER>)?;
        Ok(StatusIn { object, open })
    }
}

/// What an order body shows through the shorthand.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    /// Not JSON: passed on as it is.
    NotJson,
    /// The order is no longer open.
    Closed,
    /// Open (or without a status): the body with its links set, `None` when
    /// it is JSON but not an object (nothing to set).
    Open(Option<Vec<u8>>),
}

/// Reads an order body once: its status as [`body_is_open`] does and, when
/// the order is open, the body with links set as [`with_links`] does.
pub fn order_view(body: &[u8], links: &[(&str, &str)]) -> Shown {
    let Ok(Members(members)) = serde_json::from_slice(body) else {
        return match body_is_open(body) {
            None => Shown::NotJson,
            Some(false) => Shown::Closed,
            Some(true) => Shown::Open(None),
        };
    };
    let first = |name: &str| {
        members
            .iter()
            .find(|(k, _)| k.0.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.get())
    };
    let in_order = first("order")
        .and_then(|raw| serde_json::from_str::<StatusIn<false>>(raw).ok())
        .and_then(|s| s.open.filter(|_| s.object));
    let open = match in_order {
        Some(open) => open,
        None => first("status")
            .and_then(|raw| serde_json::from_str::<StringOpen>(raw).ok())
            .and_then(|s| s.0)
            .unwrap_or(true),
    };
    if !open {
        return Shown::Closed;
    }
    Shown::Open(links_on(&members, body.len(), links))
}

/// An order body with links set by [`set_link`], `(rel, href)` in turn,
/// without building the JSON tree of anything but its `links`: every other
/// member passes through as it is. `None` when the body is not a JSON object.
pub fn with_links(body: &[u8], links: &[(&str, &str)]) -> Option<Vec<u8>> {
    let Members(members) = serde_json::from_slice(body).ok()?;
    links_on(&members, body.len(), links)
}

fn links_on(
    members: &[(Key<'_>, &serde_json::value::RawValue)],
    len: usize,
    links: &[(&str, &str)],
) -> Option<Vec<u8>> {
    let at = members.iter().position(|(k, _)| k.0 == "links");
    let new_links = match at.and_then(|i| links_array(members[i].1.get(), links)) {
        Some(text) => text,
        // Links as an object, or something else: through the JSON tree.
        None => {
            let mut holder = Value::Object(Map::new());
            if let Some(i) = at {
                let current: Value = serde_json::from_str(members[i].1.get()).ok()?;
                holder.as_object_mut()?.insert("links".to_owned(), current);
            }
            for (rel, href) in links {
                set_link(&mut holder, rel, href);
            }
            serde_json::to_vec(&holder.as_object_mut()?.remove("links")?).ok()?
        }
    };
    let mut out = Vec::with_capacity(len + 128);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str, raw: &[u8]| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key).ok()?;
        out.push(b':');
        out.extend_from_slice(raw);
        Some(())
    };
    for (i, (k, v)) in members.iter().enumerate() {
        if Some(i) == at {
            member(&mut out, &k.0, &new_links)?;
        } else {
            member(&mut out, &k.0, v.get().as_bytes())?;
        }
    }
    if at.is_none() {
        member(&mut out, "links", &new_links)?;
    }
    out.push(b'}');
    Some(out)
}

/// One element of a `links` array while links are set on it.
enum LinkItem<'a> {
    /// Passed on as it came.
    Raw(&'a serde_json::value::RawValue),
    /// A link object whose `href` becomes the given one.
    Href(Vec<(Key<'a>, &'a serde_json::value::RawValue)>, &'a str),
    /// A link added: `{"href", "rel"}`.
    New(&'a str, &'a str),
}

/// [`set_link`] on a `links` array, on its raw text: only the link objects'
/// members are read, no JSON tree is built. `None` when `raw` is not an array.
fn links_array<'a>(raw: &'a str, links: &[(&'a str, &'a str)]) -> Option<Vec<u8>> {
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(raw).ok()?;
    let mut items: Vec<LinkItem<'a>> = items.into_iter().map(LinkItem::Raw).collect();
    // The last `rel` of a link object (the one a JSON map keeps), if a string.
    fn rel_of<'a>(members: &[(Key<'a>, &'a serde_json::value::RawValue)]) -> Option<Cow<'a, str>> {
        let raw = members.iter().rev().find(|(k, _)| k.0 == "rel")?.1;
        serde_json::from_str::<Cow<'a, str>>(raw.get()).ok()
    }
    for &(rel, href) in links {
        let found = items.iter_mut().find_map(|item| {
            let members = match item {
                LinkItem::Raw(raw) => serde_json::from_str::<Members>(raw.get()).ok()?.0,
                LinkItem::Href(members, _) => std::mem::take(members),
                LinkItem::New(r, _) => return (*r == rel).then_some(item),
            };
            let hit = rel_of(&members).as_deref() == Some(rel);
            if !hit {
                if let LinkItem::Href(m, _) = item {
                    *m = members;
                }
                return None;
            }
            *item = LinkItem::Href(members, href);
            Some(item)
        });
        match found {
            Some(LinkItem::Href(_, h) | LinkItem::New(_, h)) => *h = href,
            _ => items.push(LinkItem::New(rel, href)),
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 128);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match item {
            LinkItem::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            LinkItem::Href(members, href) => {
                out.push(b'{');
                let mut has_href = false;
                for (j, (k, v)) in members.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, &*k.0).ok()?;
                    out.push(b':');
                    if k.0 == "href" {
                        has_href = true;
                        serde_json::to_writer(&mut out, href).ok()?;
                    } else {
                        out.extend_from_slice(v.get().as_bytes());
                    }
                }
                if !has_href {
                    if !members.is_empty() {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"\"href\":");
                    serde_json::to_writer(&mut out, href).ok()?;
                }
                out.push(b'}');
            }
            LinkItem::New(rel, href) => {
                out.extend_from_slice(b"{\"href\":");
                serde_json::to_writer(&mut out, href).ok()?;
                out.extend_from_slice(b",\"rel\":");
                serde_json::to_writer(&mut out, rel).ok()?;
                out.push(b'}');
            }
        }
    }
    out.push(b']');
    Some(out)
}

/// The members of a JSON object, values left as raw text.
struct Members<'a>(Vec<(Key<'a>, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(entry) = map.next_entry()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether an order with this status is open (`new`, in any case).
pub fn is_open(status: Option<&str>) -> bool {
    status.is_none_or(|s| s.trim().eq_ignore_ascii_case("new"))
}

/// Whether an action body asks to submit the order.
pub fn is_submit(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("action")
                .and_then(Value::as_str)
                .map(|a| a.trim().eq_ignore_ascii_case("submit"))
        })
        .unwrap_or(false)
}

/// Sets the `href` of the link with relation `rel`, adding the link when
/// missing. `links` may be an array of `{href, rel}` or an object keyed by rel.
pub fn set_link(body: &mut Value, rel: &str, href: &str) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    let link = || serde_json::json!({"href": href, "rel": rel});
    match obj
        .entry("links")
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Array(items) => {
            let found = items
                .iter_mut()
                .find(|l| l.get("rel").and_then(Value::as_str) == Some(rel));
            match found {
                Some(Value::Object(l)) => {
                    l.insert("href".into(), href.into());
                }
                _ => items.push(link()),
            }
        }
        Value::Object(map) => match map.get_mut(rel) {
            Some(Value::Object(l)) => {
                l.insert("href".into(), href.into());
            }
            _ => {
                map.insert(rel.to_owned(), link());
            }
        },
        other => *other = Value::Array(vec![link()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_status_or_order_of_another_kind_is_no_status_and_the_body_is_json() {
        // Numbers no f64 holds are JSON too: the status reader and the view
        // agree that such a body is an open order's (found by the fuzz target).
        for body in [
            &br#"{"-tat}s": "Completetd", "order": -9e919991194}"#[..],
            br#"{"status": 1e999}"#,
            br#"{"order": {"status": 1e999}}"#,
        ] {
            let text = String::from_utf8_lossy(body);
            assert_eq!(body_is_open(body), Some(true), "{text}");
            assert!(matches!(order_view(body, &[]), Shown::Open(_)), "{text}");
        }
        // A status of its kind still counts next to such a number.
        for closed in [
            &br#"{"order": {"status": "Completed", "n": 1e999}}"#[..],
            br#"{"order": 1e999, "status": "Completed"}"#,
        ] {
            let text = String::from_utf8_lossy(closed);
            assert_eq!(body_is_open(closed), Some(false), "{text}");
            assert_eq!(order_view(closed, &[]), Shown::Closed, "{text}");
        }
    }

    #[test]
    fn reads_status_in_any_case() {
        assert_eq!(
            order_status(&json!({"order": {"Status": "Processing"}})),
            Some("Processing")
        );
        assert_eq!(order_status(&json!({"status": "new"})), Some("new"));
        assert_eq!(order_status(&json!({"order": {}})), None);
        assert!(is_open(Some("NEW")));
        assert!(is_open(None));
        assert!(!is_open(Some("Completed")));
    }

    #[test]
    fn body_status_as_the_json_tree_says() {
        for body in [
            r#"{"order": {"Status": "Processing"}}"#,
            r#"{"order": {"Status": "new"}, "status": "Completed"}"#,
            r#"{"order": {"Status": 5}, "status": "Completed"}"#,
            r#"{"order": {}, "status": "Completed"}"#,
            r#"{"order": [1, {"status": "x"}], "Status": "NEW "}"#,
            r#"{"ORDER": {"a": {"status": "done"}, "STATUS": "Done"}, "links": []}"#,
            r#"{"order": {"Status": "new"}, "Order": {"Status": "Completed"}}"#,
            r#"{"status": null}"#,
            r#"{"st\u0061tus": "Completed"}"#,
            r#"{}"#,
            r#"[{"status": "Completed"}]"#,
            r#""Completed""#,
            "42",
            "not json",
            r#"{"order": {"Status": "new"}} trailing"#,
            "",
        ] {
            let tree: Option<Value> = serde_json::from_slice(body.as_bytes()).ok();
            let expected = tree.as_ref().map(|j| is_open(order_status(j)));
            assert_eq!(body_is_open(body.as_bytes()), expected, "{body}");
        }
    }

    /// Found by the `order_body` fuzz target: an invalid UTF-8 string in a
    /// skipped value made a body that is not JSON read as an open order.
    #[test]
    fn a_body_that_is_not_utf8_is_not_json() {
        let body = b"[\"new\", {\"st\xff\xff\": \"x\"}]";
        assert!(serde_json::from_slice::<Value>(body).is_err());
        assert_eq!(body_is_open(body), None);
        assert_eq!(order_view(body, &[("self", "/order/")]), Shown::NotJson);
        let object = b"{\"order\": {\"Status\": \"new\"}, \"x\": [\"\xc3\"]}";
        assert_eq!(body_is_open(object), None);
        assert_eq!(order_view(object, &[("self", "/order/")]), Shown::NotJson);
    }

    #[test]
    fn links_set_without_the_tree_as_with_it() {
        let links = [("self", "/order/"), ("alternate", "/orders/1/")];
        for body in [
            r#"{"order": {"Status": "new", "n": [1, 2.5, null]}, "links": [{"href": "x", "rel": "self"}]}"#,
            r#"{"links": {"self": {"href": "x", "rel": "self"}}, "z": "\u00e9\"q"}"#,
            r#"{"order": {}}"#,
            r#"{"links": 5, "a\"b": true}"#,
            r#"{"links": [{"rel": "alternate", "href": "y", "type": "t"}, 3, {"rel": "self"}, {"rel": "self", "href": "z"}]}"#,
            r#"{"links": [], "order": {"Status": "new"}}"#,
            r#"{"links": [{"rel": 5}, {"href": "h"}, {"rel": "x", "rel": "self"}]}"#,
            r#"{"links": [{"rel": "self", "href": "/order/"}]}"#,
            r#"{}"#,
        ] {
            let mut tree: Value = serde_json::from_str(body).unwrap();
            for (rel, href) in links {
                set_link(&mut tree, rel, href);
            }
            let fast = with_links(body.as_bytes(), &links).unwrap();
            let fast: Value = serde_json::from_slice(&fast).unwrap();
            assert_eq!(fast, tree, "{body}");
            // Members keep their order.
            assert_eq!(
                fast.as_object().unwrap().keys().collect::<Vec<_>>(),
                tree.as_object().unwrap().keys().collect::<Vec<_>>()
            );
        }
        assert_eq!(with_links(b"[1]", &links), None);
        // The one-pass view agrees with the status and the links.
        for body in [
            r#"{"order": {"Status": "new"}, "links": []}"#,
            r#"{"order": {"Status": "Completed"}, "links": []}"#,
            r#"{"order": 1, "STATUS": "done"}"#,
            r#"{"order": {"status": 2}, "status": "new"}"#,
            r#"{"x": 1}"#,
            r#"[{"status": "done"}]"#,
            r#"[]"#,
            "not json",
        ] {
            let view = order_view(body.as_bytes(), &links);
            let expected = match body_is_open(body.as_bytes()) {
                None => Shown::NotJson,
                Some(false) => Shown::Closed,
                Some(true) => Shown::Open(with_links(body.as_bytes(), &links)),
            };
            assert_eq!(view, expected, "{body}");
        }
        assert_eq!(with_links(b"not json", &links), None);
    }

    #[test]
    fn submit_detection() {
        assert!(is_submit(br#"{"action": "submit"}"#));
        assert!(is_submit(br#"{ "action" : "Submit", "quoteHash": "x" }"#));
        assert!(!is_submit(br#"{"action": "validate"}"#));
        assert!(!is_submit(b"not json"));
        assert!(!is_submit(br#"{"action": 5}"#));
    }

    #[test]
    fn links_as_array_and_object() {
        let mut a = json!({"links": [{"href": "x", "rel": "self"}]});
        set_link(&mut a, "self", "/order/");
        set_link(&mut a, "alternate", "/orders/1/");
        assert_eq!(
            a["links"],
            json!([{"href": "/order/", "rel": "self"}, {"href": "/orders/1/", "rel": "alternate"}])
        );

        let mut o = json!({"links": {"self": {"href": "x", "rel": "self"}}});
        set_link(&mut o, "self", "/order/");
        set_link(&mut o, "alternate", "/orders/1/");
        assert_eq!(o["links"]["self"]["href"], "/order/");
        assert_eq!(
            o["links"]["alternate"],
            json!({"href": "/orders/1/", "rel": "alternate"})
        );

        let mut none = json!({"order": {}});
        set_link(&mut none, "alternate", "/orders/1/");
        assert_eq!(none["links"]["alternate"]["href"], "/orders/1/");
    }
}
