//! What an upstream error body says, in the documented fault terms.
//!
//! Pure code: given the status, the content type and the body (or `None` when
//! the body was over the cap), finds the fault type and a readable message.
//! A body already in the documented shape keeps its type name (the legacy
//! `computeFault` for a 400, say); any other shape is wrapped.

use crate::config::FaultTypes;
use http::StatusCode;
use serde_json::{Map, Value};

/// Longest message taken from a body that is not JSON.
const MAX_TEXT_MESSAGE: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    pub kind: String,
    pub message: String,
    pub details: String,
    /// The upstream's own guid when it gave one.
    pub upstream_guid: Option<String>,
}

fn reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

pub fn normalise(
    status: StatusCode,
    content_type: Option<&str>,
    body: Option<&[u8]>,
    types: &FaultTypes,
) -> Normalised {
    let wrapped = |message: String, details: String| Normalised {
        kind: types.name(status).to_owned(),
        message,
        details,
        upstream_guid: None,
    };
    let Some(body) = body else {
        return wrapped(
            reason(status),
            "the upstream's error body was too large to show".to_owned(),
        );
    };
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) {
        if let Some(shaped) = documented(&obj) {
            return shaped;
        }
        let message = message_in(&obj).unwrap_or_else(|| reason(status));
        return wrapped(message, String::new());
    }
    let text = String::from_utf8_lossy(body);
    let is_html = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("html"))
        || text.trim_start().starts_with('<');
    let message = if is_html {
        html_title(&text)
    } else {
        Some(text.trim().to_owned())
    };
    match message.filter(|m| !m.is_empty()) {
        Some(m) => wrapped(clip(&m), String::new()),
        None => wrapped(reason(status), String::new()),
    }
}

/// `{"<type>": {"message": "...", ...}}`: the upstream's own fault shape.
fn documented(obj: &Map<String, Value>) -> Option<Normalised> {
    if obj.len() != 1 {
        return None;
    }
    let (kind, inner) = obj.iter().next()?;
    let inner = inner.as_object()?;
    let message = inner.get("message")?.as_str()?;
    if !inner.contains_key("code") || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let details = match inner.get("details") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    };
    Some(Normalised {
        kind: kind.clone(),
        message: message.to_owned(),
        details,
        upstream_guid: inner.get("guid").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A message in the usual error shapes: `message`, `error` (a string or an
/// object with a message), `detail`, `title`, `error_description`.
fn message_in(obj: &Map<String, Value>) -> Option<String> {
    for key in [
        "message",
        "error",
        "detail",
        "title",
        "error_description",
        "description",
    ] {
        match obj.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Some(clip(s.trim())),
            Some(Value::Object(inner)) => {
                if let Some(m) = message_in(inner) {
                    return Some(m);
                }
            }
            _ => {}
        }
    }
    None
}

fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    for tag in ["title", "h1"] {
        let open = format!("<{tag}");
        if let Some(start) = lower.find(&open) {
            let after = start + lower[start..].find('>')? + 1;
            let end = after + lower[after..].find(&format!("</{tag}"))?;
            let text = html[after..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            if !text.is_empty() {
                return Some(text);
            }
        }
    }
    None
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT_MESSAGE {
        return s.to_owned();
    }
    let mut end = MAX_TEXT_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(status: u16, ct: Option<&str>, body: &str) -> Normalised {
        normalise(
            StatusCode::from_u16(status).unwrap(),
            ct,
            Some(body.as_bytes()),
            &FaultTypes::default(),
        )
    }

    #[test]
    fn documented_shape_keeps_its_type() {
        let r = n(
            400,
            None,
            r#"{"computeFault": {"message": "Account has not been set", "code": 400, "details": ""}}"#,
        );
        assert_eq!(
            (r.kind.as_str(), r.message.as_str(), r.upstream_guid),
            ("computeFault", "Account has not been set", None)
        );
        let r = n(
            409,
            None,
            r#"{"conflict": {"guid": "g", "message": "m", "code": 409, "details": "d"}}"#,
        );
        assert_eq!(
            (
                r.kind.as_str(),
                r.details.as_str(),
                r.upstream_guid.as_deref()
            ),
            ("conflict", "d", Some("g"))
        );
    }

    #[test]
    fn other_json_is_wrapped_keeping_the_message() {
        assert_eq!(
            n(400, None, r#"{"error": "bad thing"}"#).message,
            "bad thing"
        );
        assert_eq!(
            n(400, None, r#"{"error": {"message": "nested"}}"#).message,
            "nested"
        );
        assert_eq!(n(422, None, r#"{"message": "m", "x": 1}"#).message, "m");
        let r = n(500, None, r#"{"nothing": "useful"}"#);
        assert_eq!(
            (r.kind.as_str(), r.message.as_str()),
            ("computeFault", "Internal Server Error")
        );
    }

    #[test]
    fn text_html_empty_invalid_and_huge() {
        assert_eq!(
            n(503, Some("text/plain"), "  down for maintenance\n").message,
            "down for maintenance"
        );
        let html = "<html><head><title>502 Bad\n Gateway</title></head><body>x</body></html>";
        assert_eq!(n(502, Some("text/html"), html).message, "502 Bad Gateway");
        assert_eq!(
            n(404, None, "<html><body><h1>Gone away</h1></body></html>").message,
            "Gone away"
        );
        let r = n(404, None, "");
        assert_eq!(
            (r.kind.as_str(), r.message.as_str()),
            ("itemNotFound", "Not Found")
        );
        assert_eq!(
            n(500, Some("application/json"), "{not json").message,
            "{not json"
        );
        assert!(n(500, None, &"é".repeat(1000)).message.chars().count() < 300);
        let big = normalise(StatusCode::BAD_GATEWAY, None, None, &FaultTypes::default());
        assert_eq!(
            (big.kind.as_str(), big.message.as_str()),
            ("badGateway", "Bad Gateway")
        );
    }
}
