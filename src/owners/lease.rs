//! Creation leases: exactly one order creation per owner across gateway
//! replicas that share an owner store.
//!
//! Inside one process [`crate::orders::CreationLocks`] serialises creations;
//! when the store is shared, it has [`Leases`] too, and the caller holding an
//! owner's lock also takes the owner's lease in the store before it creates.
//! A caller that finds the lease taken polls until the association the
//! holder writes appears (it then uses that order) or the lease is free
//! again (the holder gave up, or died and its lease expired). The holder
//! renews the lease while it works, so a slow upstream does not let a second
//! creation in, and a dead replica blocks the owner for one lease life at
//! most. For stores that are not shared, none of this costs a thing.

use crate::owners::{Association, OwnerId, OwnerStore, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Creation leases in a store that several gateway processes share, so that
/// they do not create an order for the same owner at the same time. A store
/// that only this process uses has none: its creation locks are exclusion
/// enough.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// The life of a lease; its holder renews it while it works.
    fn lease_ttl(&self) -> Duration;

    /// Takes `owner`'s creation lease under `token` unless someone holds it.
    async fn try_lease(&self, owner: OwnerId, token: u128) -> Result<bool, StoreError>;

    /// Extends the lease while `token` still holds it; false when it is lost.
    async fn renew_lease(&self, owner: OwnerId, token: u128) -> Result<bool, StoreError>;

    /// Gives the lease back if `token` still holds it.
    async fn release_lease(&self, owner: OwnerId, token: u128) -> Result<(), StoreError>;
}

/// Time between two looks at a lease held elsewhere.
const POLL: Duration = Duration::from_millis(20);

/// A held creation lease. Give it back with [`Lease::release`]; dropped
/// without that (the request was cancelled), it is released in the
/// background.
pub struct Lease {
    held: Option<Held>,
}

struct Held {
    leases: Arc<dyn Leases>,
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
            if let Err(e) = held.leases.release_lease(held.owner, held.token).await {
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
                    let _ = held.leases.release_lease(held.owner, held.token).await;
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
/// `watch`, a waiter returns as soon as the owner has an association in
/// `store`. Without `leases` (an unshared store), at once.
pub async fn acquire(
    leases: Option<&Arc<dyn Leases>>,
    store: &Arc<dyn OwnerStore>,
    owner: OwnerId,
    watch: bool,
    max_wait: Duration,
) -> Result<Acquired, LeaseError> {
    let Some(leases) = leases else {
        return Ok(Acquired::Leased(Lease::unshared()));
    };
    let ttl = leases.lease_ttl();
    let token = uuid::Uuid::new_v4().as_u128();
    let start = Instant::now();
    loop {
        if leases.try_lease(owner, token).await? {
            let renew = tokio::spawn(renew(Arc::clone(leases), owner, token, ttl));
            return Ok(Acquired::Leased(Lease {
                held: Some(Held {
                    leases: Arc::clone(leases),
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
async fn renew(leases: Arc<dyn Leases>, owner: OwnerId, token: u128, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.tick().await;
    loop {
        tick.tick().await;
        match leases.renew_lease(owner, token).await {
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
        let got = acquire(None, &store, OwnerId::mint(), true, Duration::ZERO)
            .await
            .unwrap();
        let Acquired::Leased(lease) = got else {
            panic!("no lease")
        };
        assert!(lease.held.is_none());
        lease.release().await;
    }
}
