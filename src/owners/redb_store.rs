//! Persistent owner store on redb (the default).
//!
//! Every write is committed to the file before it is acknowledged, so the
//! associations survive a crash of the gateway. Reads are served from an
//! in-memory mirror loaded at open: redb holds an exclusive lock on its file, so
//! this process is the only writer and the mirror cannot go stale. File I/O runs
//! on tokio's blocking pool, never on the reactor.

use super::OwnerId;
use super::memory::{Maps, MemoryStore};
use super::store::{Association, OrderId, OwnerStore, StoreError};
use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// owner (UUID as u128) → (order id, last used in ms since the epoch)
const OWNERS: TableDefinition<u128, (&str, u64)> = TableDefinition::new("owners");
/// order id → owner
const ORDERS: TableDefinition<&str, u128> = TableDefinition::new("orders");

/// redb's own page cache. Reads are served from the mirror, so the cache only
/// speeds up the writes' walk down the trees; redb's default (1 GiB) would
/// keep the whole file resident as it grows.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

pub struct RedbStore {
    shared: Arc<Shared>,
}

struct Shared {
    db: Database,
    mirror: MemoryStore,
}

fn backend<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store file and loads the associations. Blocking:
    /// call it at start-up or from the blocking pool.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", dir.display())))?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| {
            StoreError::Backend(match e {
                redb::DatabaseError::DatabaseAlreadyOpen => format!(
                    "{} is in use by another process (one gateway per redb file; several share Redis)",
                    path.display()
                ),
                    e => format!("{}: {e}", path.display()),
                })
            })?;
        let mut maps = Maps::default();
        let txn = db.begin_write().map_err(backend)?;
        {
            // Opening the tables in a write transaction creates them on first use.
            let owners = txn.open_table(OWNERS).map_err(backend)?;
            txn.open_table(ORDERS).map_err(backend)?;
            for entry in owners.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                let (order, touched) = v.value();
                if let Some(order) = OrderId::parse(order) {
                    maps.put(OwnerId::from_u128(k.value()), &order, touched);
                }
            }
        }
        txn.commit().map_err(backend)?;
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                mirror: MemoryStore::from_maps(maps),
            }),
        })
    }

    /// Applies `changes` in one write transaction on the blocking pool, then to
    /// the mirror once they are durable. The mirror's lock is held from the
    /// start of the transaction to the mirror update, so concurrent writers land
    /// in the same order in both. Returns the owner of the last ended order.
    async fn write(&self, changes: Vec<Change>) -> Result<Option<OwnerId>, StoreError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut maps = shared.mirror.lock();
            let txn = shared.db.begin_write().map_err(backend)?;
            let mut ended = None;
            for change in &changes {
                match change {
                    Change::Put(owner, order, now) => put_tx(&txn, *owner, order, *now)?,
                    Change::End(order) => ended = end_tx(&txn, order)?,
                }
            }
            txn.commit().map_err(backend)?;
            for change in &changes {
                match change {
                    Change::Put(owner, order, now) => maps.put(*owner, order, *now),
                    Change::End(order) => {
                        maps.end_order(order);
                    }
                }
            }
            Ok(ended)
        })
        .await
        .map_err(backend)?
    }
}

enum Change {
    Put(OwnerId, OrderId, u64),
    End(OrderId),
}

fn put_tx(
    txn: &redb::WriteTransaction,
    owner: OwnerId,
    order: &OrderId,
    now_ms: u64,
) -> Result<(), StoreError> {
    let mut owners = txn.open_table(OWNERS).map_err(backend)?;
    let mut orders = txn.open_table(ORDERS).map_err(backend)?;
    let key = owner.as_u128();
    let previous_owner = orders
        .insert(order.as_str(), key)
        .map_err(backend)?
        .map(|g| g.value());
    if let Some(prev) = previous_owner.filter(|p| *p != key) {
        owners.remove(prev).map_err(backend)?;
    }
    let old_order = owners
        .insert(key, (order.as_str(), now_ms))
        .map_err(backend)?
        .map(|g| g.value().0.to_owned());
    if let Some(old) = old_order.filter(|o| o != order.as_str()) {
        orders.remove(old.as_str()).map_err(backend)?;
    }
    Ok(())
}

fn end_tx(txn: &redb::WriteTransaction, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
    let mut owners = txn.open_table(OWNERS).map_err(backend)?;
    let mut orders = txn.open_table(ORDERS).map_err(backend)?;
    let owner = orders
        .remove(order.as_str())
        .map_err(backend)?
        .map(|g| g.value());
    if let Some(owner) = owner {
        owners.remove(owner).map_err(backend)?;
    }
    Ok(owner.map(OwnerId::from_u128))
}

#[async_trait]
impl OwnerStore for RedbStore {
    async fn get(&self, owner: OwnerId) -> Result<Option<Association>, StoreError> {
        Ok(self.shared.mirror.lock().get(owner))
    }

    async fn put(&self, owner: OwnerId, order: &OrderId, now_ms: u64) -> Result<(), StoreError> {
        self.write(vec![Change::Put(owner, order.clone(), now_ms)])
            .await?;
        Ok(())
    }

    async fn owner_of(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        Ok(self.shared.mirror.lock().owner_of(order))
    }

    fn owner_of_now(&self, order: &OrderId) -> Option<Option<OwnerId>> {
        Some(self.shared.mirror.lock().owner_of(order))
    }

    async fn end_order(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError> {
        // Most ended orders (every explicit submit, say) were never tracked:
        // no need to touch the file for them.
        if self.shared.mirror.lock().owner_of(order).is_none() {
            return Ok(None);
        }
        self.write(vec![Change::End(order.clone())]).await
    }

    async fn expire(&self, before_ms: u64) -> Result<usize, StoreError> {
        let idle = self.shared.mirror.lock().idle(before_ms);
        let n = idle.len();
        if n > 0 {
            self.write(idle.into_iter().map(Change::End).collect())
                .await?;
        }
        Ok(n)
    }

    async fn count(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.shared.mirror.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("owners.redb")).unwrap();
        super::super::store::conformance::run(&store).await;
    }

    #[tokio::test]
    async fn associations_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/owners.redb");
        let owner = OwnerId::mint();
        let order = OrderId::parse("o1").unwrap();
        {
            let store = RedbStore::open(&path).unwrap();
            store.put(owner, &order, 5).await.unwrap();
            store
                .put(OwnerId::mint(), &OrderId::parse("o2").unwrap(), 6)
                .await
                .unwrap();
            store
                .end_order(&OrderId::parse("o2").unwrap())
                .await
                .unwrap();
        }
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.get(owner).await.unwrap().unwrap().order, order);
        assert_eq!(store.owner_of(&order).await.unwrap(), Some(owner));
        assert_eq!(store.shared.mirror.len(), 1);
    }

    #[test]
    fn unreadable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"not a database").unwrap();
        assert!(RedbStore::open(&file).is_err());
    }
}
