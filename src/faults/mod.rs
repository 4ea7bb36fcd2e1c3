//! Faults: the errors of the request path and the one renderer of fault bodies.
//!
//! Every error the gateway itself answers with is a [`GatewayError`]; its
//! source decides the status (client mistakes 4xx, upstream trouble 502/504,
//! the gateway's own trouble 5xx), and [`render`] writes the one documented
//! shape, `{"<faultType>": {"guid", "message", "code", "details"}}`.

use crate::body::{self, Body};
use crate::owners::CookieError;
use crate::shorthand::PathError;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

pub const JSON_UTF8: HeaderValue = HeaderValue::from_static("application/json; charset=UTF-8");

/// Why the upstream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream cannot be reached: {0}")]
    Connect(String),
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream connection failed: {0}")]
    Protocol(String),
    #[error("the upstream answer cannot be read: {0}")]
    BadAnswer(String),
    /// Not the upstream's fault: the client's body went over the limit while
    /// it was being forwarded.
    #[error("the request body is too large")]
    ClientBodyTooLarge,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("Bad request path: {0}")]
    BadPath(#[from] PathError),
    #[error("Unauthorized: {0}")]
    BadOwner(#[from] CookieError),
    #[error("The OwnerId cookie is required to use /order")]
    NoOwner,
    #[error("There is no new order associated with the OwnerId")]
    NoOpenOrder,
    #[error("There is already a new order associated with the same OwnerId")]
    OpenOrderExists,
    #[error("The request body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("The request body could not be read")]
    BodyRead,
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("The upstream created no order")]
    NoOrderCreated,
    #[error("The owner store is unavailable")]
    Store(#[from] crate::owners::StoreError),
    /// The upstream refused a call the gateway made for the client (such as
    /// the creation of an order): its answer is the client's answer.
    #[error("the upstream refused the call")]
    Refused(Response<Body>),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            BadPath(_) | BodyRead => StatusCode::BAD_REQUEST,
            BadOwner(_) | NoOwner => StatusCode::UNAUTHORIZED,
            NoOpenOrder => StatusCode::NOT_FOUND,
            OpenOrderExists => StatusCode::CONFLICT,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Upstream(UpstreamError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Upstream(UpstreamError::ClientBodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Refused(resp) => resp.status(),
            Upstream(_) | NoOrderCreated => StatusCode::BAD_GATEWAY,
            Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The fault type name the gateway uses for a status.
pub fn fault_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        409 => "conflict",
        413 => "requestEntityTooLarge",
        429 => "overLimit",
        502 => "badGateway",
        503 => "serviceUnavailable",
        504 => "gatewayTimeout",
        _ => "computeFault",
    }
}

/// Renders a fault body. `guid` is the request id.
pub fn render(status: StatusCode, guid: &str, message: &str, details: &str) -> Response<Body> {
    let body = serde_json::json!({
        fault_type(status): { "guid": guid, "message": message, "code": status.as_u16(), "details": details }
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(body::full(bytes.clone()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON_UTF8);
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    resp
}

/// The response for a gateway error.
pub fn respond(err: GatewayError, guid: &str) -> Response<Body> {
    if let GatewayError::Refused(resp) = err {
        return resp;
    }
    let status = err.status();
    if status.is_server_error() {
        tracing::warn!(request_id = guid, error = %err, "request failed");
    }
    render(status, guid, &err.to_string(), "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_the_documented_shape() {
        let resp = respond(GatewayError::OpenOrderExists, "g-1");
        assert_eq!(resp.status(), 409);
        assert_eq!(
            resp.headers()[CONTENT_TYPE],
            "application/json; charset=UTF-8"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"conflict": {"guid": "g-1", "message": "There is already a new order associated with the same OwnerId", "code": 409, "details": ""}})
        );
    }

    #[test]
    fn source_decides_status() {
        assert_eq!(GatewayError::Upstream(UpstreamError::Timeout).status(), 504);
        assert_eq!(
            GatewayError::Upstream(UpstreamError::Connect("x".into())).status(),
            502
        );
        assert_eq!(GatewayError::BadPath(PathError::DotSegment).status(), 400);
        assert_eq!(GatewayError::BadOwner(CookieError::Invalid).status(), 401);
        assert_eq!(GatewayError::BodyTooLarge { limit: 1 }.status(), 413);
    }
}
