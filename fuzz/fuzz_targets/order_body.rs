//! The order-body reader: `body_is_open`, `order_view` and `with_links` read
//! raw JSON text without building its tree, and must say what the tree
//! reading says (`is_open(order_status(..))`, `set_link`) for any body; a view
//! with links set is JSON, equal to the tree with the links set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordergate::orders::order_body::{
    Shown, body_is_open, is_open, order_status, order_view, set_link, with_links,
};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

const LINKS: [(&str, &str); 3] = [
    ("self", "https://api.example.com/order/"),
    ("alternate", "https://api.example.com/orders/o1/"),
    ("odd \"rel\"", "https://api.example.com/\u{e9}?a=\\b"),
];

/// Whether a JSON text has an object with the same key twice: a tree keeps
/// the last value, a reader of the text the first, and both are fair.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoDuplicates;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
                Ok(NoDuplicates)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<NoDuplicates, A::Error> {
                while s.next_element::<NoDuplicates>()?.is_some() {}
                Ok(NoDuplicates)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<NoDuplicates, A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k) {
                        return Err(serde::de::Error::custom("duplicate key"));
                    }
                    m.next_value::<NoDuplicates>()?;
                }
                Ok(NoDuplicates)
            }
        }
        d.deserialize_any(V)
    }
}

fuzz_target!(|data: &[u8]| {
    let open = body_is_open(data);
    let view = order_view(data, &LINKS);
    let linked = with_links(data, &LINKS);

    // The view and the status reader agree with each other on any input.
    match (&view, open) {
        (Shown::NotJson, None) | (Shown::Closed, Some(false)) | (Shown::Open(_), Some(true)) => {}
        _ => panic!("order_view {view:?} but body_is_open {open:?}"),
    }
    if let Shown::Open(Some(out)) = &view {
        assert_eq!(linked.as_ref(), Some(out));
    }

    let Ok(tree) = serde_json::from_slice::<Value>(data) else {
        // Valid JSON whose numbers no f64 holds (`1e999`) has no tree, yet
        // it is JSON: the status reader skips such numbers, as it should.
        if serde_json::from_slice::<IgnoredAny>(data).is_err() {
            assert_eq!(open, None, "not JSON, yet read as an order");
        }
        return;
    };
    if serde_json::from_slice::<NoDuplicates>(data).is_err() {
        return;
    }
    assert_eq!(open, Some(is_open(order_status(&tree))));
    if tree.is_object() {
        let mut want = tree.clone();
        for (rel, href) in LINKS {
            set_link(&mut want, rel, href);
        }
        let Some(out) = &linked else {
            panic!("links not set on an object");
        };
        let got: Value = serde_json::from_slice(out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)));
        assert_eq!(got, want);
        if open == Some(true) {
            assert!(matches!(view, Shown::Open(Some(_))), "{view:?}");
        }
    } else {
        assert_eq!(linked, None);
    }
});
