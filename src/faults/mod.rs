//! Faults: the errors of the request path and the one renderer of fault bodies.
//!
//! Every error the gateway itself answers with is a [`GatewayError`]; its
//! source decides the status (client mistakes 4xx, upstream trouble 502/504,
//! the gateway's own trouble 5xx). Inner layers answer with a [`fault`]
//! mark; [`FaultLayer`], near the top of the stack, is the one place that
//! writes the documented shape, `{"<faultType>": {"guid", "message", "code",
//! "details"}}`, for those and for every error answer of the upstream.

mod layer;
mod normalise;

pub use layer::{FaultLayer, FaultService};
pub use normalise::{Normalised, normalise};

use crate::body::{self, Body};
use crate::owners::CookieError;
use crate::shorthand::PathError;
use http::header::{self, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;

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
    /// Nor this: the client stopped sending its body.
    #[error("The client stopped sending the request body")]
    ClientBodyTimeout,
    /// Nor this: the client's body was malformed (chunked framing hyper
    /// refused) or cut short.
    #[error("The request body could not be read")]
    ClientBodyUnreadable,
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
    #[error("The request has more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("The request's header fields are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("The upstream created no order")]
    NoOrderCreated,
    #[error("The owner store is unavailable")]
    Store(#[from] crate::owners::StoreError),
    /// Another gateway replica holds the owner's creation lease for longer
    /// than any creation may take.
    #[error("An order is being created for this OwnerId elsewhere; retry shortly")]
    CreationBusy,
    /// The upstream refused a call the gateway made for the client (such as
    /// the creation of an order): its answer is the client's answer.
    #[error("the upstream refused the call")]
    Refused(Box<Response<Body>>),
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
            TooManyHeaders { .. } | HeadersTooLarge { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Upstream(UpstreamError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Upstream(UpstreamError::ClientBodyTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Upstream(UpstreamError::ClientBodyTimeout) => StatusCode::REQUEST_TIMEOUT,
            Upstream(UpstreamError::ClientBodyUnreadable) => StatusCode::BAD_REQUEST,
            Refused(resp) => resp.status(),
            Upstream(_) | NoOrderCreated => StatusCode::BAD_GATEWAY,
            Store(_) | CreationBusy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<crate::policy::lease::LeaseError> for GatewayError {
    fn from(e: crate::policy::lease::LeaseError) -> Self {
        match e {
            crate::policy::lease::LeaseError::Store(e) => Self::Store(e),
            crate::policy::lease::LeaseError::Busy => Self::CreationBusy,
        }
    }
}

/// Fault type names by status: the documented defaults, overridable in the
/// `[faults.types]` table of the config.
#[derive(Debug, Clone)]
pub struct FaultTypes {
    names: HashMap<u16, Arc<str>>,
}

const DEFAULT_TYPES: [(u16, &str); 14] = [
    (400, "badRequest"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (404, "itemNotFound"),
    (405, "badMethod"),
    (408, "requestTimeout"),
    (409, "conflict"),
    (413, "requestEntityTooLarge"),
    (429, "overLimit"),
    (431, "requestHeaderFieldsTooLarge"),
    (500, "computeFault"),
    (502, "badGateway"),
    (503, "serviceUnavailable"),
    (504, "gatewayTimeout"),
];

impl Default for FaultTypes {
    fn default() -> Self {
        Self {
            names: DEFAULT_TYPES
                .iter()
                .map(|(s, n)| (*s, Arc::from(*n)))
                .collect(),
        }
    }
}

impl FaultTypes {
    /// The defaults with `overrides` on top.
    pub fn with(overrides: impl IntoIterator<Item = (u16, String)>) -> Self {
        let mut t = Self::default();
        for (status, name) in overrides {
            t.names.insert(status, Arc::from(name));
        }
        t
    }

    /// The type name for a status; unlisted ones fall back by class.
    pub fn name(&self, status: StatusCode) -> &str {
        match self.names.get(&status.as_u16()) {
            Some(n) => n,
            None if status.is_client_error() => "badRequest",
            None => "computeFault",
        }
    }
}

/// The mark of a fault the gateway made: an inner layer answers with an
/// empty response carrying it, and [`FaultLayer`] renders the body.
#[derive(Debug, Clone)]
pub struct FaultInfo {
    pub message: String,
    pub details: String,
}

/// Writes the documented fault body into `resp`, keeping its other headers.
pub fn render_into(
    resp: &mut Response<Body>,
    kind: &str,
    guid: &str,
    message: &str,
    details: &str,
) {
    let bytes = body_bytes(kind, guid, message, resp.status(), details);
    let headers = resp.headers_mut();
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(CONTENT_TYPE, JSON_UTF8);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    *resp.body_mut() = body::full(bytes);
}

/// The documented fault body, also for the answers the server writes
/// before a request reaches the stack.
pub fn body_bytes(
    kind: &str,
    guid: &str,
    message: &str,
    status: StatusCode,
    details: &str,
) -> Vec<u8> {
    let body = serde_json::json!({
        kind: { "guid": guid, "message": message, "code": status.as_u16(), "details": details }
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A gateway-made fault, to be rendered by [`FaultLayer`].
pub fn fault(
    status: StatusCode,
    message: impl Into<String>,
    details: impl Into<String>,
) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    resp.extensions_mut().insert(FaultInfo {
        message: message.into(),
        details: details.into(),
    });
    resp
}

/// The response for a gateway error.
pub fn respond(err: GatewayError, guid: &str) -> Response<Body> {
    if let GatewayError::Refused(resp) = err {
        return *resp;
    }
    let status = err.status();
    if status.is_server_error() {
        tracing::warn!(request_id = guid, error = %err, "request failed");
    }
    fault(status, err.to_string(), "")
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn type_names_default_override_and_fall_back() {
        let t = FaultTypes::with([(404, "notFound".to_owned())]);
        assert_eq!(t.name(StatusCode::NOT_FOUND), "notFound");
        assert_eq!(t.name(StatusCode::CONFLICT), "conflict");
        assert_eq!(t.name(StatusCode::IM_A_TEAPOT), "badRequest");
        assert_eq!(t.name(StatusCode::from_u16(599).unwrap()), "computeFault");
    }
}
