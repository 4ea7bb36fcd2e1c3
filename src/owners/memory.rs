//! In-memory owner store: fast, lost on restart. Also the read cache of the
//! redb store.

use super::OwnerId;
use super::store::{Association, OrderId, OwnerStore, StoreError};
use async_trait::async_trait;
// Keys come from clients: a seeded hash, quicker than SipHash.
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Maps>,
}

/// Both directions of the associations, kept compact: a million of them are
/// about 70 MiB. Each association is one [`Slot`] (48 bytes, the order id
/// stored once, packed when it is the upstream's hex); the two indexes hold
/// only the slot's number.
#[derive(Default)]
pub(crate) struct Maps {
    slots: Vec<Slot>,
    /// Slots whose association ended, to be used again.
    free: Vec<u32>,
    by_owner: HashTable<u32>,
    by_order: HashTable<u32>,
    hasher: RandomState,
}

struct Slot {
    owner: u128,
    touched_ms: u64,
    order: Packed,
}

/// An order id as the maps hold it. The upstream's ids are 40 lowercase hex
/// digits: those (and any other lowercase hex id of at most 40 digits) take
/// 20 bytes inline instead of a heap string.
#[derive(PartialEq, Eq)]
enum Packed {
    Hex { digits: u8, bytes: [u8; HEX_BYTES] },
    Text(Box<str>),
}

const HEX_BYTES: usize = 20;
const HEX_DIGITS: usize = HEX_BYTES * 2;

/// Each byte's value as a lowercase hex digit; 0xff for any other byte.
static NIBBLE: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut d = 0;
    while d < 16 {
        table[DIGITS[d] as usize] = d as u8;
        d += 1;
    }
    table
};

/// The packed bytes of a lowercase hex id, or `None` for any other id.
/// Two digits per step, by table: every lookup of a tracked order packs
/// the id it looks for.
fn pack_hex(s: &str) -> Option<[u8; HEX_BYTES]> {
    let s = s.as_bytes();
    if s.len() > HEX_DIGITS {
        return None;
    }
    let mut bytes = [0u8; HEX_BYTES];
    // A digit's value has no high bits; a byte that is no digit has them.
    let mut high = 0u8;
    for (out, pair) in bytes.iter_mut().zip(s.chunks(2)) {
        let hi = NIBBLE[usize::from(pair[0])];
        // An odd count leaves the last low half zero.
        let lo = pair.get(1).map_or(0, |&b| NIBBLE[usize::from(b)]);
        high |= (hi | lo) & 0xf0;
        *out = (hi << 4) | lo;
    }
    (high == 0).then_some(bytes)
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Each byte as its two lowercase hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    table
};

impl Packed {
    fn new(order: &str) -> Self {
        match pack_hex(order) {
            Some(bytes) => Self::Hex {
                // At most 40: fits.
                digits: order.len() as u8,
                bytes,
            },
            None => Self::Text(order.into()),
        }
    }

    /// Whether this is `order`: the packed id is unpacked by table and
    /// compared (packing `order` instead would check each of its bytes).
    fn matches(&self, order: &str) -> bool {
        match self {
            Self::Hex { digits, .. } if usize::from(*digits) != order.len() => false,
            _ => self.with_bytes(|b| b == order.as_bytes()),
        }
    }

    /// Calls `f` with the id's text as bytes, unpacked on the stack.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Self::Hex { digits, bytes } => {
                let mut text = [0u8; HEX_DIGITS];
                let n = usize::from(*digits);
                // Two digits per byte, by table; an odd count leaves the
                // last unused.
                for (pair, b) in text.chunks_exact_mut(2).zip(bytes) {
                    pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
                }
                f(&text[..n])
            }
            Self::Text(text) => f(text.as_bytes()),
        }
    }

    /// Calls `f` with the id as text, unpacked on the stack.
    fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        // Hex digits are ASCII, a text id is text.
        self.with_bytes(|b| f(std::str::from_utf8(b).unwrap_or_default()))
    }

    fn to_order_id(&self) -> OrderId {
        self.with_str(OrderId::from_valid)
    }
}

impl Maps {
    fn slot(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    fn owner_hash(&self, owner: u128) -> u64 {
        self.hasher.hash_one(owner)
    }

    fn order_hash(&self, order: &str) -> u64 {
        self.hasher.hash_one(order.as_bytes())
    }

    fn find_owner(&self, owner: u128) -> Option<u32> {
        let slots = &self.slots;
        self.by_owner
            .find(self.owner_hash(owner), |&i| {
                slots[i as usize].owner == owner
            })
            .copied()
    }

    fn find_order(&self, order: &str) -> Option<u32> {
        let slots = &self.slots;
        self.by_order
            .find(self.order_hash(order), |&i| {
                slots[i as usize].order.matches(order)
            })
            .copied()
    }

    fn index_order(&mut self, i: u32) {
        let Self {
            slots,
            by_order,
            hasher,
            ..
        } = self;
        let hash = slots[i as usize].order.with_bytes(|b| hasher.hash_one(b));
        by_order.insert_unique(hash, i, |&j| {
            slots[j as usize].order.with_bytes(|b| hasher.hash_one(b))
        });
    }

    fn unindex_order(&mut self, i: u32) {
        let hash = self.slot(i).order.with_str(|s| self.order_hash(s));
        if let Ok(found) = self.by_order.find_entry(hash, |&j| j == i) {
            found.remove();
        }
    }

    /// Ends the association in slot `i` and frees the slot.
    fn remove(&mut self, i: u32) {
        self.unindex_order(i);
        let hash = self.owner_hash(self.slot(i).owner);
        if let Ok(found) = self.by_owner.find_entry(hash, |&j| j == i) {
            found.remove();
        }
        // Drops a heap id now rather than when the slot is used again.
        self.slots[i as usize].order = Packed::Hex {
            digits: 0,
            bytes: [0; HEX_BYTES],
        };
        self.free.push(i);
    }

    pub(crate) fn put(&mut self, owner: OwnerId, order: &OrderId, now_ms: u64) {
        let key = owner.as_u128();
        if let Some(i) = self.find_order(order.as_str()) {
            if self.slot(i).owner == key {
                self.slots[i as usize].touched_ms = now_ms;
                return;
            }
            // The order changes hands: its previous owner is left without it.
            self.remove(i);
        }
        if let Some(i) = self.find_owner(key) {
            // The owner's older order is no longer theirs.
            self.unindex_order(i);
            let slot = &mut self.slots[i as usize];
            slot.order = Packed::new(order.as_str());
            slot.touched_ms = now_ms;
            self.index_order(i);
            return;
        }
        let slot = Slot {
            owner: key,
            touched_ms: now_ms,
            order: Packed::new(order.as_str()),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                // Past 4 billion associations memory runs out long before
                // the numbering does.
                let i = self.slots.len() as u32;
                self.slots.push(slot);
                i
            }
        };
        let Self {
            slots,
            by_owner,
            hasher,
            ..
        } = self;
        by_owner.insert_unique(hasher.hash_one(key), i, |&j| {
            hasher.hash_one(slots[j as usize].owner)
        });
        self.index_order(i);
    }

    pub(crate) fn end_order(&mut self, order: &OrderId) -> Option<OwnerId> {
        let i = self.find_order(order.as_str())?;
        let owner = self.slot(i).owner;
        self.remove(i);
        Some(OwnerId::from_u128(owner))
    }

    pub(crate) fn idle(&self, before_ms: u64) -> Vec<OrderId> {
        self.by_owner
            .iter()
            .map(|&i| self.slot(i))
            .filter(|s| s.touched_ms < before_ms)
            .map(|s| s.order.to_order_id())
            .collect()
    }

    pub(crate) fn get(&self, owner: OwnerId) -> Option<Association> {
        let slot = self.slot(self.find_owner(owner.as_u128())?);
        Some(Association {
            order: slot.order.to_order_id(),
            touched_ms: slot.touched_ms,
        })
    }

    pub(crate) fn owner_of(&self, order: &OrderId) -> Option<OwnerId> {
        let i = self.find_order(order.as_str())?;
        Some(OwnerId::from_u128(self.slot(i).owner))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_owner.len()
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

    fn owner_of_now(&self, order: &OrderId) -> Option<Option<OwnerId>> {
        Some(self.lock().owner_of(order))
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
    use super::*;
    use std::collections::HashMap;

    #[tokio::test]
    async fn conformance() {
        super::super::store::conformance::run(&MemoryStore::new()).await;
    }

    fn order(s: &str) -> OrderId {
        OrderId::parse(s).unwrap()
    }

    #[test]
    fn a_slot_stays_small() {
        assert!(std::mem::size_of::<Slot>() <= 48);
    }

    #[test]
    fn every_shape_of_order_id_reads_back_as_it_was_put() {
        let ids = [
            "00000145ffa79d31de17529f007f000000010001",
            "0",
            "00",
            "000",
            "a",
            "0a",
            "a0",
            "00000145FFA79D31DE17529F007F000000010001",
            "00000145ffa79d31de17529f007f0000000100010",
            "00000145ffa79d31de17529f007f00000001000",
            "order-1",
            "g",
            "x.y_z",
            &"f".repeat(128),
        ];
        let mut maps = Maps::default();
        for (n, id) in ids.iter().enumerate() {
            maps.put(OwnerId::from_u128(n as u128), &order(id), n as u64);
        }
        assert_eq!(maps.len(), ids.len());
        for (n, id) in ids.iter().enumerate() {
            let owner = OwnerId::from_u128(n as u128);
            let a = maps.get(owner).unwrap();
            assert_eq!((a.order.as_str(), a.touched_ms), (*id, n as u64));
            assert_eq!(maps.owner_of(&order(id)), Some(owner), "{id}");
        }
        // Ids that pack alike but differ in length or case stay apart.
        assert_eq!(maps.owner_of(&order("0000")), None);
        assert_eq!(maps.owner_of(&order("A")), None);
    }

    /// Many owners and orders, put, moved and ended in a fixed pseudo-random
    /// mix, checked against two plain maps after every step.
    #[test]
    fn agrees_with_plain_maps_through_many_changes() {
        let mut maps = Maps::default();
        let mut owners: HashMap<u128, (String, u64)> = HashMap::new();
        let mut orders: HashMap<String, u128> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let owner = u128::from(x % 300);
            let id = match (x >> 20) % 3 {
                0 => format!("{:040x}", (x >> 24) % 500),
                1 => format!("{:x}", (x >> 24) % 500),
                _ => format!("Order-{}", (x >> 24) % 500),
            };
            if (x >> 40).is_multiple_of(4) {
                let ended = maps.end_order(&order(&id));
                let expected = orders.remove(&id);
                if let Some(o) = expected {
                    owners.remove(&o);
                }
                assert_eq!(ended.map(|o| o.as_u128()), expected, "step {step}");
            } else {
                maps.put(OwnerId::from_u128(owner), &order(&id), step);
                if let Some(prev) = orders.insert(id.clone(), owner)
                    && prev != owner
                {
                    owners.remove(&prev);
                }
                if let Some((old, _)) = owners.insert(owner, (id.clone(), step))
                    && old != id
                {
                    orders.remove(&old);
                }
            }
            assert_eq!(maps.len(), owners.len(), "step {step}");
        }
        for (owner, (id, touched)) in &owners {
            let a = maps.get(OwnerId::from_u128(*owner)).unwrap();
            assert_eq!((a.order.as_str(), a.touched_ms), (id.as_str(), *touched));
            assert_eq!(maps.owner_of(&order(id)).map(|o| o.as_u128()), Some(*owner));
        }
        for owner in 0..300u128 {
            if !owners.contains_key(&owner) {
                assert_eq!(maps.get(OwnerId::from_u128(owner)), None);
            }
        }
        let idle = maps.idle(10_000);
        let expected = owners.values().filter(|(_, t)| *t < 10_000).count();
        assert_eq!(idle.len(), expected);
    }
}
