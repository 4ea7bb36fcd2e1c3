//! Order creation: explicit (`POST /orders`, `POST /order`) with its 409, and
//! implicit (a `PUT`/`POST` to a shorthand child with no open order).
//!
//! One creation per owner at a time: in this process the owner's creation
//! lock ([`super::CreationLocks`]) serialises callers, and across replicas
//! sharing a store the owner's lease ([`crate::owners::lease`]) does. A
//! caller that waited finds the order the other one made and uses it.

use super::plan::Exchange;
use super::service::{Call, Delegate, Orders, conflict};
use crate::body::Body;
use crate::context::Facts;
use crate::faults::{Error, Upstream};
use crate::owners::lease::{self, Acquired};
use crate::owners::{OrderId, OwnerId, owner_from_set_cookie};
use http::header::{self, HeaderValue};
use http::{Method, Response};
use std::sync::Arc;

/// What an implicit creation came to.
pub enum Creation {
    /// The owner's order, made now or found made by a caller that went first.
    Made(OwnerId, OrderId),
    /// The upstream refused to create it: its answer is the client's.
    Refused(Response<Body>),
}

impl Orders {
    /// `POST /orders` (or `POST /order`, `shorthand`): 409 while the owner's
    /// order is still new upstream, else forwarded and learned.
    pub(super) async fn create_explicit(
        &self,
        req: super::service::Outgoing,
        facts: &Facts,
        shorthand: bool,
    ) -> Result<Response<Body>, Error> {
        let owner = facts.valid_owner();
        let _creating = self.locks.lock_if(owner).await;
        let mut lease = None;
        if let Some(o) = owner {
            // Other replicas too: the check and the creation under the lease.
            if let Acquired::Leased(l) = crate::telemetry::trace::in_span(
                "order.lease_wait",
                lease::acquire(self.leases.as_ref(), &self.store, o, false, self.lease_wait),
            )
            .await?
            {
                lease = Some(l);
            }
            let client = self.delegate(&req);
            let open = match self.open_order(o).await? {
                Some(order) => self.still_open(&order, facts, &client, o).await?,
                None => false,
            };
            if open {
                self.metrics.conflict();
                if let Some(l) = lease {
                    l.release().await;
                }
                return Err(conflict());
            }
        }
        let call = Call {
            req,
            exchange: Exchange::create(shorthand),
            path: Some("/orders".to_owned()),
            order: None,
            rewriter: Arc::clone(self.bases.rewriter()),
            owner,
        };
        let out = self.exchange(call, facts).await;
        if let Some(l) = lease {
            l.release().await;
        }
        out
    }

    /// Creates the owner's order for an implicit creation, or finds the one
    /// a caller that went first made.
    pub(super) async fn create_implicitly(
        &self,
        client: &Delegate,
        facts: &Facts,
        owner: Option<OwnerId>,
    ) -> Result<Creation, Error> {
        let _creating = self.locks.lock_if(owner).await;
        // Someone may have created it while this call waited.
        if let Some(o) = owner
            && let Some(order) = self.open_order(o).await?
        {
            return Ok(Creation::Made(o, order));
        }
        let create = async {
            match owner {
                // Without an owner id there is no one to race with.
                None => self.create_for(client, facts, None).await,
                Some(o) => self.create_leased(client, facts, o).await,
            }
        };
        crate::telemetry::trace::in_span("order.create", create).await
    }

    /// Creates an order upstream for an implicit creation and records it.
    async fn create_for(
        &self,
        client: &Delegate,
        facts: &Facts,
        owner: Option<OwnerId>,
    ) -> Result<Creation, Error> {
        let mut req = self.delegated(client, Method::POST, owner);
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self
            .upstream
            .forward(req, Some("/orders".to_owned()), facts)
            .await?;
        if !resp.status().is_success() {
            let answer = self.upstream.finish(resp, self.bases.rewriter())?;
            return Ok(Creation::Refused(answer));
        }
        let order = self
            .created_order(resp.status(), resp.headers())
            .ok_or_else(|| {
                Error::upstream(Upstream::BadAnswer)
                    .because("the upstream's answer to POST /orders names no order")
            })?;
        let owner = owner
            .or_else(|| owner_from_set_cookie(resp.headers()))
            .unwrap_or_else(OwnerId::mint);
        self.store
            .put(owner, &order, crate::clock::now_ms())
            .await?;
        self.metrics.implicit_creation();
        Ok(Creation::Made(owner, order))
    }

    /// Implicit creation for a known owner, under the owner's creation lease
    /// when the store is shared: a creation that another replica finishes
    /// while this one waits is used, not repeated.
    async fn create_leased(
        &self,
        client: &Delegate,
        facts: &Facts,
        owner: OwnerId,
    ) -> Result<Creation, Error> {
        if self.leases.is_none() {
            // This process is the store's only user: its creation lock,
            // held by the caller, is all the exclusion there is to have.
            return self.create_for(client, facts, Some(owner)).await;
        }
        let leases = self.leases.as_ref();
        match crate::telemetry::trace::in_span(
            "order.lease_wait",
            lease::acquire(leases, &self.store, owner, true, self.lease_wait),
        )
        .await?
        {
            Acquired::Found(a) => Ok(Creation::Made(owner, a.order)),
            Acquired::Leased(lease) => {
                // The holder before this one may have finished just now.
                let created = match self.open_order(owner).await {
                    Ok(Some(order)) => Ok(Creation::Made(owner, order)),
                    Ok(None) => self.create_for(client, facts, Some(owner)).await,
                    Err(e) => Err(e),
                };
                lease.release().await;
                created
            }
        }
    }
}
