//! The owner store trait: where owner → open order associations live.
//!
//! Kept async and free of any backend's types so that a shared store (for
//! several gateway replicas) can stand behind it as well as the embedded ones.

use super::OwnerId;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// An upstream order id as it appears in `/orders/<id>`: validated so that it
/// can be placed in a path and a store key as it is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrderId(Arc<str>);

/// The bytes an order id may hold, as a table: one load per byte.
static ID_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
        b += 1;
    }
    table
};

impl OrderId {
    pub const MAX_LEN: usize = 128;

    /// Accepts ASCII letters, digits, `-`, `_` and `.` (not a dot segment).
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s != "."
            && s != ".."
            && s.bytes().all(|b| ID_BYTE[usize::from(b)]);
        ok.then(|| Self(Arc::from(s)))
    }

    /// An id already validated, read back from where it was kept.
    pub(crate) fn from_valid(s: &str) -> Self {
        Self(Arc::from(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrderId({})", self.0)
    }
}

/// One owner's open order and when the association was last used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Association {
    pub order: OrderId,
    /// Milliseconds since the Unix epoch.
    pub touched_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("owner store: {0}")]
    Backend(String),
}

/// Owner → open order associations. Every owner has at most one open order and
/// every order at most one owner.
#[async_trait]
pub trait OwnerStore: Send + Sync + 'static {
    /// The owner's open order, if any.
    async fn get(&self, owner: OwnerId) -> Result<Option<Association>, StoreError>;

    /// Associates `owner` with `order` (replacing the owner's older association
    /// and any other owner's claim on `order`), stamped `now_ms`. Putting the
    /// same pair again refreshes the stamp.
    async fn put(&self, owner: OwnerId, order: &OrderId, now_ms: u64) -> Result<(), StoreError>;

    /// The owner whose open order is `order`, if any.
    async fn owner_of(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError>;

    /// [`Self::owner_of`], when the store can answer without waiting (its
    /// associations are in this process); `None` when it must be asked.
    /// Every passthrough read of an order asks, and a boxed future costs
    /// more than the lookup.
    fn owner_of_now(&self, _order: &OrderId) -> Option<Option<OwnerId>> {
        None
    }

    /// Ends the association that points at `order`, whoever holds it, and
    /// returns that owner.
    async fn end_order(&self, order: &OrderId) -> Result<Option<OwnerId>, StoreError>;

    /// Ends every association not used since `before_ms`; returns how many.
    async fn expire(&self, before_ms: u64) -> Result<usize, StoreError>;

    /// Refreshes the stamp of `owner`'s association if it still points at
    /// `order`, and says whether it did: an association ended meanwhile (by
    /// another replica, say) stays ended.
    async fn touch(
        &self,
        owner: OwnerId,
        order: &OrderId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        match self.get(owner).await? {
            Some(a) if &a.order == order => {
                self.put(owner, order, now_ms).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// How many associations are held, where the store can tell cheaply.
    async fn count(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Flushes and closes whatever the store holds open.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the store can serve requests now (readiness).
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// How many calls were served from this replica's local state because the
    /// shared backend failed (fail-open); 0 for stores that are not shared.
    fn fail_open_count(&self) -> u64 {
        0
    }
}

/// Conformance tests every [`OwnerStore`] must pass; public so that the
/// integration tests run them against stores on servers they start.
#[doc(hidden)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod conformance {
    use super::*;

    fn owner(n: u128) -> OwnerId {
        OwnerId::from_u128(n)
    }
    fn order(s: &str) -> OrderId {
        OrderId::parse(s).unwrap()
    }

    /// The owner of `order`, asked both ways: what the store answers at
    /// once, when it can, is what it answers when asked.
    async fn owner_of(store: &dyn OwnerStore, order: &OrderId) -> Option<OwnerId> {
        let asked = store.owner_of(order).await.unwrap();
        if let Some(now) = store.owner_of_now(order) {
            assert_eq!(now, asked, "{}", order.as_str());
        }
        asked
    }

    pub async fn run(store: &dyn OwnerStore) {
        assert_eq!(store.get(owner(1)).await.unwrap(), None);

        store.put(owner(1), &order("o1"), 10).await.unwrap();
        let a = store.get(owner(1)).await.unwrap().unwrap();
        assert_eq!((a.order.as_str(), a.touched_ms), ("o1", 10));
        assert_eq!(owner_of(store, &order("o1")).await, Some(owner(1)));

        // Refresh keeps the pair and moves the stamp.
        store.put(owner(1), &order("o1"), 20).await.unwrap();
        assert_eq!(store.get(owner(1)).await.unwrap().unwrap().touched_ms, 20);

        // A new order for the same owner replaces the old one in both directions.
        store.put(owner(1), &order("o2"), 30).await.unwrap();
        assert_eq!(
            store.get(owner(1)).await.unwrap().unwrap().order.as_str(),
            "o2"
        );
        assert_eq!(owner_of(store, &order("o1")).await, None);

        // An order claimed by another owner leaves the first owner without it.
        store.put(owner(2), &order("o2"), 40).await.unwrap();
        assert_eq!(store.get(owner(1)).await.unwrap(), None);
        assert_eq!(owner_of(store, &order("o2")).await, Some(owner(2)));

        // Ending by order id.
        assert_eq!(store.end_order(&order("o2")).await.unwrap(), Some(owner(2)));
        assert_eq!(store.get(owner(2)).await.unwrap(), None);
        assert_eq!(store.end_order(&order("o2")).await.unwrap(), None);

        // Expiry ends only the idle ones.
        store.put(owner(3), &order("o3"), 100).await.unwrap();
        store.put(owner(4), &order("o4"), 200).await.unwrap();
        assert_eq!(store.expire(150).await.unwrap(), 1);
        assert_eq!(store.get(owner(3)).await.unwrap(), None);
        assert_eq!(owner_of(store, &order("o3")).await, None);
        assert!(store.get(owner(4)).await.unwrap().is_some());
        if let Some(n) = store.count().await.unwrap() {
            assert_eq!(n, 1);
        }

        // Touch refreshes a live association only.
        assert!(store.touch(owner(4), &order("o4"), 300).await.unwrap());
        assert_eq!(store.get(owner(4)).await.unwrap().unwrap().touched_ms, 300);
        assert!(!store.touch(owner(4), &order("o3"), 400).await.unwrap());
        store.end_order(&order("o4")).await.unwrap();
        assert!(!store.touch(owner(4), &order("o4"), 500).await.unwrap());
        assert_eq!(store.get(owner(4)).await.unwrap(), None);
        assert_eq!(owner_of(store, &order("o4")).await, None);

        store.ping().await.unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_path_safe() {
        assert!(OrderId::parse("00000145ffa79d31de17529f007f000000010001").is_some());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a%2fb",
            "a b",
            "a?b",
            &"x".repeat(129),
        ] {
            assert!(OrderId::parse(bad).is_none(), "{bad}");
        }
        // Every character, ASCII or not, against the rule in words.
        for c in (0..=0x7f_u8)
            .map(char::from)
            .chain(['é', 'Ä', '\u{2028}', '😀'])
        {
            let id = format!("x{c}y");
            let allowed = c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            assert_eq!(OrderId::parse(&id).is_some(), allowed, "{id:?}");
        }
    }
}
