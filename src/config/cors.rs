//! CORS as configured: which origins may send credentials, which headers
//! browsers may send and read. [`crate::guards::cors`] applies it.

use http::HeaderValue;

#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Origins echoed back with credentials allowed (`scheme://host[:port]`).
    pub allowed_origins: Vec<HeaderValue>,
    /// Request headers a preflight may ask for; empty: whatever it asks.
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: HeaderValue,
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_headers: None,
            expose_headers: HeaderValue::from_static(
                "location, x-request-id, retry-after, ratelimit, ratelimit-policy",
            ),
            max_age_secs: 600,
        }
    }
}
