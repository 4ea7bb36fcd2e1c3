//! Creation leases: exactly one order creation per owner across gateway
//! replicas that share an owner store.
//!
//! Inside one process [`super::CreationLocks`] serialises creations; when the
//! store is shared ([`OwnerStore::lease_ttl`] is set), the caller holding an
//! owner's lock also takes the owner's lease in the store before it creates.
//! A caller that finds the lease taken polls until the association the
//! holder writes appears (it then uses that order) or the lease is free
//! again (the holder gave up, or died and its lease expired). The holder
//! renews the lease while it works, so a slow upstream does not let a second
//! creation in, and a dead replica blocks the owner for one lease life at
//! most. For stores that are not shared, none of this costs a thing.

use crate::owners::{Association, OwnerId, OwnerStore, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time between two looks at a lease held elsewhere.
const POLL: Duration = Duration::from_millis(20);

/// A held creation lease. Give it back with [`Lease::release`]; dropped
/// without that (the request was cancelled), it is released in the
/// background.
pub struct Lease {
    held: Option<Held>,
}

struct Held {
    store: Arc<dyn OwnerStore>,
    owner: OwnerId,
    token: u128,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    fn unshared() -> Self {
        Self { held: None }
    }

    pub async fn release(mut self) {
        if let Some(held) = self.held.take() {
            held.renew.abort();
            if let Err(e) = held.store.release_lease(held.owner, held.token).await {
                tracing::warn!(error = %e, "cannot release a creation lease; it expires by itself");
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.renew.abort();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = held.store.release_lease(held.owner, held.token).await;
                });
            }
        }
    }
}

/// What waiting for an owner's lease came to.
pub enum Acquired {
    /// This caller holds the lease: it may create.
    Leased(Lease),
    /// While waiting, another replica's creation appeared.
    Found(Association),
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lease stayed taken for longer than any creation may last.
    #[error("an order creation for this owner is in progress elsewhere")]
    Busy,
}

/// Takes `owner`'s creation lease, waiting at most `max_wait`. With
/// `watch`, a waiter returns as soon as the owner has an association.
pub async fn acquire(
    store: &Arc<dyn OwnerStore>,
    owner: OwnerId,
    watch: bool,
    max_wait: Duration,
) -> Result<Acquired, LeaseError> {
    let waiting = acquire_untraced(store, owner, watch, max_wait);
    crate::telemetry::trace::in_span("order.lease_wait", waiting).await
}

async fn acquire_untraced(
    store: &Arc<dyn OwnerStore>,
    owner: OwnerId,
    watch: bool,
    max_wait: Duration,
) -> Result<Acquired, LeaseError> {
    let Some(ttl) = store.lease_ttl() else {
        return Ok(Acquired::Leased(Lease::unshared()));
    };
    let token = uuid::Uuid::new_v4().as_u128();
    let start = Instant::now();
    loop {
        if store.try_lease(owner, token).await? {
            let renew = tokio::spawn(renew(Arc::clone(store), owner, token, ttl));
            return Ok(Acquired::Leased(Lease {
                held: Some(Held {
                    store: Arc::clone(store),
                    owner,
                    token,
                    renew,
                }),
            }));
        }
        if watch && let Some(a) = store.get(owner).await? {
            return Ok(Acquired::Found(a));
        }
        if start.elapsed() >= max_wait {
            return Err(LeaseError::Busy);
        }
        // A little jitter keeps waiting replicas from polling in step.
        let jitter = Duration::from_millis(u64::from(token as u8 % 10));
        tokio::time::sleep(POLL + jitter).await;
    }
}

/// Keeps the lease alive while its holder works: renewed at a third of its
/// life, so two renewals may fail before it lapses.
async fn renew(store: Arc<dyn OwnerStore>, owner: OwnerId, token: u128, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.renew_lease(owner, token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("a creation lease lapsed before its creation finished");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew a creation lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owners::MemoryStore;

    #[tokio::test]
    async fn unshared_stores_lease_at_once_without_a_task() {
        let store: Arc<dyn OwnerStore> = Arc::new(MemoryStore::new());
        let got = acquire(&store, OwnerId::mint(), true, Duration::ZERO)
            .await
            .unwrap();
        let Acquired::Leased(lease) = got else {
            panic!("no lease")
        };
        assert!(lease.held.is_none());
        lease.release().await;
    }
}
