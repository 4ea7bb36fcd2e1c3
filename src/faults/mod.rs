//! Faults: the errors of the request path and the one renderer of fault bodies.
//!
//! Every error the gateway itself answers with is an [`Error`]. Its
//! [`Source`] decides the status, as the blame lies: the client's mistakes
//! are 4xx, a rule of the gateway's policy refuses with 409 or 429, the
//! upstream's trouble is 502/504, the gateway's own 503/500. An error carries
//! the words the client reads and, apart, the cause that only the log sees
//! (addresses, OS and library error text never reach a client).
//!
//! Inner layers answer with a [`fault`] mark; [`FaultLayer`], near the top of
//! the stack, is the one place that writes the documented shape,
//! `{"<faultType>": {"guid", "message", "code", "details"}}`, for those and
//! for every error answer of the upstream.

mod layer;
mod normalise;

pub use layer::{FaultLayer, FaultService};
pub use normalise::{Normalised, normalise};

use crate::body::{self, Body, BoxError};
use http::header::{self, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use std::borrow::Cow;

pub const JSON_UTF8: HeaderValue = HeaderValue::from_static("application/json; charset=UTF-8");

/// Who is to blame for a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client's request cannot be served as it was sent.
    Client(Client),
    /// A rule of the gateway refuses the request.
    Policy(Policy),
    /// The upstream failed.
    Upstream(Upstream),
    /// The gateway itself cannot serve the request now.
    Gateway(Gateway),
}

/// The client's mistakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// 400: a path, a body or framing the gateway will not forward.
    BadRequest,
    /// 401: no usable `OwnerId`.
    Unauthorized,
    /// 404: nothing there (no open order behind the shorthand).
    NotFound,
    /// 405: a method the gateway does not serve.
    BadMethod,
    /// 408: the client stopped sending its body.
    Timeout,
    /// 413: a body over the limit.
    TooLarge,
    /// 431: a request head over the limits.
    HeadTooLarge,
}

/// Refusals by the gateway's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// 409: the owner already has an open order.
    Conflict,
    /// 429: over a rate limit.
    OverLimit,
}

/// The upstream's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// 502: no connection could be made.
    Unreachable,
    /// 504: no answer in time.
    Timeout,
    /// 502: the connection broke or spoke invalid HTTP.
    Broken,
    /// 502: an answer the gateway cannot read or use.
    BadAnswer,
}

/// The gateway's own trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// 503: a store or a lease it needs does not answer, or is busy.
    Unavailable,
    /// 500.
    Internal,
}

impl Source {
    pub fn status(self) -> StatusCode {
        match self {
            Source::Client(c) => match c {
                Client::BadRequest => StatusCode::BAD_REQUEST,
                Client::Unauthorized => StatusCode::UNAUTHORIZED,
                Client::NotFound => StatusCode::NOT_FOUND,
                Client::BadMethod => StatusCode::METHOD_NOT_ALLOWED,
                Client::Timeout => StatusCode::REQUEST_TIMEOUT,
                Client::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                Client::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            },
            Source::Policy(Policy::Conflict) => StatusCode::CONFLICT,
            Source::Policy(Policy::OverLimit) => StatusCode::TOO_MANY_REQUESTS,
            Source::Upstream(Upstream::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Source::Upstream(_) => StatusCode::BAD_GATEWAY,
            Source::Gateway(Gateway::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Source::Gateway(Gateway::Internal) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error of the request path: its source, the client's words, and the
/// cause for the log.
#[derive(Debug)]
pub struct Error {
    pub source: Source,
    message: Cow<'static, str>,
    details: Cow<'static, str>,
    cause: Option<BoxError>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {}", error_chain(&**cause))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|e| e as _)
    }
}

impl Error {
    pub fn new(source: Source, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            source,
            message: message.into(),
            details: Cow::Borrowed(""),
            cause: None,
        }
    }

    pub fn client(kind: Client, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Source::Client(kind), message)
    }

    pub fn policy(kind: Policy, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Source::Policy(kind), message)
    }

    /// An upstream failure, in the words its kind has for the client.
    pub fn upstream(kind: Upstream) -> Self {
        let message = match kind {
            Upstream::Unreachable => "The upstream cannot be reached",
            Upstream::Timeout => "The upstream did not answer in time",
            Upstream::Broken => "The upstream connection failed",
            Upstream::BadAnswer => "The upstream's answer cannot be read",
        };
        Self::new(Source::Upstream(kind), message)
    }

    pub fn gateway(kind: Gateway, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Source::Gateway(kind), message)
    }

    /// The one 413: a request body over `limit` bytes.
    pub fn body_too_large(limit: u64) -> Self {
        Self::client(
            Client::TooLarge,
            format!("The request body is larger than {limit} bytes"),
        )
    }

    /// The one 408: the client stopped sending its body.
    pub fn body_timeout() -> Self {
        Self::client(
            Client::Timeout,
            "The client stopped sending the request body",
        )
    }

    /// A request body that broke off or was framed wrongly: the client's.
    pub fn body_broken() -> Self {
        Self::client(Client::BadRequest, "The request body could not be read")
    }

    /// The client's error, when `e` (or one of its sources) is its request
    /// body failing while the gateway read or forwarded it: over the size
    /// limit (413), stalled (408), or framed wrongly or cut short (400).
    /// `None` when the fault lies elsewhere.
    pub fn from_client_body(e: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(too_large) = err.downcast_ref::<body::TooLarge>() {
                return Some(Self::body_too_large(too_large.limit));
            }
            if err.is::<body::BodyTimeout>() {
                return Some(Self::body_timeout());
            }
            cur = err.source();
        }
        // hyper says so of a request body that failed while it was sent.
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(h) = err.downcast_ref::<hyper::Error>()
                && h.is_user()
            {
                return Some(Self::body_broken().because(error_chain(e)));
            }
            cur = err.source();
        }
        None
    }

    /// The client-facing details.
    pub fn with_details(mut self, details: impl Into<Cow<'static, str>>) -> Self {
        self.details = details.into();
        self
    }

    /// The cause, for the log only.
    pub fn because(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.source.status()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The answer for this error, logged under the request id `guid` with
    /// its cause: a mark [`FaultLayer`] renders.
    pub fn respond(self, guid: &str) -> Response<Body> {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(request_id = guid, status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(request_id = guid, status = status.as_u16(), error = %self, "request refused");
        }
        fault(status, self.message, self.details)
    }
}

/// An error and its sources, joined, for the log.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        // Wrappers often repeat their source's words.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// Whether `e` (or one of its sources) is of type `T`.
pub fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The mark of a fault the gateway made: an inner layer answers with an
/// empty response carrying it, and [`FaultLayer`] renders the body.
#[derive(Debug, Clone)]
pub struct FaultInfo {
    pub message: Cow<'static, str>,
    pub details: Cow<'static, str>,
}

/// Writes the documented fault body into `resp`, keeping its other headers.
pub fn render_into(
    resp: &mut Response<Body>,
    kind: &str,
    guid: &str,
    message: &str,
    details: &str,
) {
    let status = resp.status();
    let body = serde_json::json!({
        kind: { "guid": guid, "message": message, "code": status.as_u16(), "details": details }
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let headers = resp.headers_mut();
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(CONTENT_TYPE, JSON_UTF8);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    *resp.body_mut() = body::full(bytes);
}

/// A gateway-made fault, to be rendered by [`FaultLayer`].
pub fn fault(
    status: StatusCode,
    message: impl Into<Cow<'static, str>>,
    details: impl Into<Cow<'static, str>>,
) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    resp.extensions_mut().insert(FaultInfo {
        message: message.into(),
        details: details.into(),
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_decides_status() {
        for (err, status) in [
            (Error::upstream(Upstream::Timeout), 504),
            (Error::upstream(Upstream::Unreachable), 502),
            (Error::upstream(Upstream::BadAnswer), 502),
            (Error::client(Client::BadRequest, "x"), 400),
            (Error::client(Client::Unauthorized, "x"), 401),
            (Error::body_too_large(1), 413),
            (Error::body_timeout(), 408),
            (Error::policy(Policy::Conflict, "x"), 409),
            (Error::policy(Policy::OverLimit, "x"), 429),
            (Error::gateway(Gateway::Unavailable, "x"), 503),
        ] {
            assert_eq!(err.status(), status, "{err}");
        }
    }

    #[test]
    fn the_cause_stays_out_of_the_clients_words() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connect 10.1.2.3:9000: Connection refused (os error 111)",
        );
        let err = Error::upstream(Upstream::Unreachable).because(io);
        // The log line has it all ...
        assert!(err.to_string().contains("10.1.2.3:9000"));
        // ... the client's fault nothing of it.
        let resp = err.respond("g");
        let info = resp.extensions().get::<FaultInfo>().unwrap();
        assert_eq!(resp.status(), 502);
        assert_eq!(info.message, "The upstream cannot be reached");
        assert!(!info.details.contains("10.1.2.3"));
    }
}
