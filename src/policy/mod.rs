//! Order policy in plain code: single flight of order creation per owner (in
//! the process, and across replicas with [`lease`]), rate limits, and what
//! the gateway reads from order bodies (status, actions, links).

pub mod lease;
pub mod rate_limit;
mod single_flight;

pub use single_flight::{CreationGuard, CreationLocks};

use serde_json::{Map, Value};

/// Wall-clock milliseconds since the Unix epoch: the stamp of associations
/// and of rate-limit sweeps.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
