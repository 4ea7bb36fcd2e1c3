//! The orders phase: what ordergate knows about the orders API.
//!
//! The innermost service of the stack. [`plan`] holds every rule of SPEC
//! §2–4 as a decision table over the request facts and the upstream's
//! answers; [`service`] runs its plans and applies its effects: it resolves
//! `/order[/…]` to the owner's open order, creates orders ([`create`],
//! single flight per owner, leases across replicas), forwards through
//! [`crate::upstream`], and learns and ends associations in the
//! [`crate::owners`] store. [`order_body`] reads order and action bodies.
//!
//! It answers 400 for climbing paths, 401 without a usable `OwnerId` on the
//! shorthand, 404 when the shorthand has no open order, 409 for a second
//! open order, and whatever the upstream answers otherwise.

mod create;
mod memo;
pub mod order_body;
pub mod plan;
pub mod service;
mod single_flight;
#[cfg(test)]
mod tests;

pub use service::{OrdersService, OrdersSettings};
pub use single_flight::{CreationGuard, CreationLocks};

use crate::faults::{Error, Gateway};
use crate::owners::StoreError;
use crate::owners::lease::LeaseError;

impl From<StoreError> for Error {
    /// The store is the gateway's own: it answers 503, the cause to the log.
    fn from(e: StoreError) -> Self {
        Self::gateway(Gateway::Unavailable, "The owner store is unavailable").because(e)
    }
}

impl From<LeaseError> for Error {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Store(e) => e.into(),
            LeaseError::Busy => Self::gateway(
                Gateway::Unavailable,
                "An order is being created for this OwnerId elsewhere; retry shortly",
            ),
        }
    }
}
