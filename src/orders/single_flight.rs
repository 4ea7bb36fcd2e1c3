//! Single flight of order creation per owner.
//!
//! Whoever creates an order for an owner (implicitly or by `POST /orders`)
//! holds that owner's creation lock; concurrent callers for the same owner wait
//! for it and then find the order it made. Entries exist only while held or
//! awaited, so the map stays as small as the number of owners creating now.

use crate::owners::OwnerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

type Entry = Arc<tokio::sync::Mutex<()>>;

#[derive(Default, Clone)]
pub struct CreationLocks {
    map: Arc<Mutex<HashMap<OwnerId, Entry>>>,
}

/// Held while creating an order for one owner.
pub struct CreationGuard {
    owner: OwnerId,
    map: Arc<Mutex<HashMap<OwnerId, Entry>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl CreationLocks {
    pub async fn lock(&self, owner: OwnerId) -> CreationGuard {
        let entry = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(owner).or_default())
        };
        let guard =
            crate::telemetry::trace::in_span("order.single_flight_wait", entry.lock_owned()).await;
        CreationGuard {
            owner,
            map: Arc::clone(&self.map),
            guard: Some(guard),
        }
    }

    /// Locks `owner` if there is one: a caller without an owner id has no
    /// one to race with.
    pub async fn lock_if(&self, owner: Option<OwnerId>) -> Option<CreationGuard> {
        match owner {
            Some(o) => Some(self.lock(o).await),
            None => None,
        }
    }

    /// Owners with a creation under way or awaited.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for CreationGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Clones of the entry live only in the map, in this guard and in
        // waiters, which take theirs under the map lock: two means no waiter.
        if map
            .get(&self.owner)
            .is_some_and(|e| Arc::strong_count(e) <= 2)
        {
            map.remove(&self.owner);
        }
        self.guard.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_creator_at_a_time_per_owner_and_map_empties() {
        let locks = CreationLocks::default();
        let owner = OwnerId::mint();
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (locks, inside, max) = (locks.clone(), inside.clone(), max.clone());
                tokio::spawn(async move {
                    let _g = locks.lock(owner).await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn different_owners_do_not_wait() {
        let locks = CreationLocks::default();
        let _a = locks.lock(OwnerId::mint()).await;
        let _b = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            locks.lock(OwnerId::mint()),
        )
        .await
        .unwrap();
        assert_eq!(locks.len(), 2);
    }
}
