//! Fault normalisation: any upstream error body, under any error status and
//! content type, becomes a fault of the documented shape,
//! `{"<type>": {"guid", "message", "code", "details"}}`, with the upstream's
//! status as its code, a type name a client can match on, and a message; a
//! body already in that shape keeps its type and message.
//!
//! Input: two bytes choose the status (400–599) and one the content type;
//! the rest is the body.
#![no_main]

use http::{Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use ordergate::config::FaultTypes;
use ordergate::faults::{normalise, render_into};
use serde_json::Value;

const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/json"),
    Some("text/html; charset=utf-8"),
    Some("text/plain"),
    Some("TEXT/HTML"),
];

fuzz_target!(|data: &[u8]| {
    let [a, b, c, body @ ..] = data else { return };
    let code = 400 + u16::from_be_bytes([*a, *b]) % 200;
    let Ok(status) = StatusCode::from_u16(code) else {
        return;
    };
    let content_type = TYPES[usize::from(*c) % TYPES.len()];
    let types = FaultTypes::default();
    // The body over the cap (`None`) is a case of its own.
    let body = (*c != 0xff).then_some(body);
    let found = normalise(status, content_type, body, &types);

    // The upstream's own shape keeps its type and message (even an empty
    // one: it is the upstream's); anything else gets a message.
    let documented = body
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| match v {
            Value::Object(up) if up.len() == 1 => up.into_iter().next(),
            _ => None,
        })
        .and_then(|(kind, inner)| {
            let named = !kind.is_empty()
                && kind
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            let message = inner.get("message")?.as_str()?.to_owned();
            (named && inner.get("code").is_some()).then_some((kind, message))
        });
    match &documented {
        Some((kind, message)) => assert_eq!((&found.kind, &found.message), (kind, message)),
        None => assert!(!found.message.trim().is_empty(), "no message: {found:?}"),
    }
    assert!(
        !found.kind.is_empty()
            && found
                .kind
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_'),
        "type name {:?}",
        found.kind
    );

    let mut resp = Response::new(ordergate::body::empty());
    *resp.status_mut() = status;
    render_into(
        &mut resp,
        &found.kind,
        "req-1",
        &found.message,
        &found.details,
    );
    let len: usize = resp.headers()[http::header::CONTENT_LENGTH]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX);
    let rendered = body_bytes(resp.into_body());
    assert_eq!(rendered.len(), len);
    let fault: Value = serde_json::from_slice(&rendered).unwrap_or_default();
    let obj = fault.as_object().filter(|o| o.len() == 1);
    let Some((kind, inner)) = obj.and_then(|o| o.iter().next()) else {
        panic!("not a fault: {}", String::from_utf8_lossy(&rendered));
    };
    assert_eq!(kind, &found.kind);
    assert_eq!(inner["code"], u64::from(code));
    assert_eq!(inner["guid"], "req-1");
    assert_eq!(inner["message"], found.message.as_str());
    assert!(inner["details"].is_string());
});

fn body_bytes(body: ordergate::body::Body) -> bytes::Bytes {
    use http_body::Body as _;
    let mut body = std::pin::pin!(body);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    while let std::task::Poll::Ready(Some(Ok(frame))) = body.as_mut().poll_frame(&mut cx) {
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    out.into()
}
