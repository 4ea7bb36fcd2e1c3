//! Fault type names as configured: the documented name for each status,
//! overridable per status. [`crate::faults`] writes them.

use http::StatusCode;
use std::collections::HashMap;
use std::sync::Arc;

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
