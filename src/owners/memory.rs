//! In-memory owner store: fast, lost on restart. Also the read cache of the
//! redb store.

use super::OwnerId;
use super::store::{Association, OrderId, OwnerStore, StoreError};
use async_trait::async_trait;
// Keys come from clients: a seeded hash, quicker than SipHash.
use foldhash::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Maps>,
}

#[derive(Default)]
pub(crate) struct Maps {
    owners: HashMap<u128, Association>,
    orders: HashMap<OrderId, u128>,
}

impl Maps {
    pub(crate) fn put(&mut self, owner: OwnerId, order: &OrderId, now_ms: u64) {
        let key = owner.as_u128();
        if let Some(previous_owner) = self.orders.insert(order.clone(), key)
            && previous_owner != key
        {
            self.owners.remove(&previous_owner);
        }
        let assoc = Association {
            order: order.clone(),
            touched_ms: now_ms,
        };
        if let Some(old) = self.owners.insert(key, assoc)
            && &old.order != order
        {
            self.orders.remove(&old.order);
        }
    }

    pub(crate) fn end_order(&mut self, order: &OrderId) -> Option<OwnerId> {
        let owner = self.orders.remove(order)?;
        self.owners.remove(&owner);
        Some(OwnerId::from_u128(owner))
    }

    pub(crate) fn idle(&self, before_ms: u64) -> Vec<OrderId> {
        self.owners
            .values()
            .filter(|a| a.touched_ms < before_ms)
            .map(|a| a.order.clone())
            .collect()
    }

    pub(crate) fn get(&self, owner: OwnerId) -> Option<Association> {
        self.owners.get(&owner.as_u128()).cloned()
    }

    pub(crate) fn owner_of(&self, order: &OrderId) -> Option<OwnerId> {
        self.orders.get(order).copied().map(OwnerId::from_u128)
    }

    pub(crate) fn len(&self) -> usize {
        self.owners.len()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn from_maps(maps: Maps) -> Self {
        Self {
            inner: Mutex::new(maps),
        }
    }

    /// The lock is never held across an await, and a panic while holding it
    /// cannot leave the maps half-written in a way that matters more than
    /// refusing every later request would, so a poisoned lock is recovered.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Maps> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl OwnerStore for MemoryStore {
    async fn get(&self, owner: OwnerId) -> Result<Option<Association>, StoreError> {
        Ok(self.lock().get(owner))
    }

    async fn put(&self, owner: OwnerId, order: &OrderId, now_ms: u64) -> Result<(), StoreError> {
        self.lock().put(owner, order, now_ms);
        Ok(())
    }

    async fn owner_of(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        Ok(self.lock().owner_of(order))
    }

    async fn end_order(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        Ok(self.lock().end_order(order))
    }

    async fn expire(&self, before_ms: u64) -> Result<usize, StoreError> {
        let mut maps = self.lock();
        let idle = maps.idle(before_ms);
        for order in &idle {
            maps.end_order(order);
        }
        Ok(idle.len())
    }

    async fn count(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        super::super::store::conformance::run(&super::MemoryStore::new()).await;
    }
}
