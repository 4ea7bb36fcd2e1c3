//! A bounded memo for values made per order and used again and again: kept
//! until it holds too many, then forgotten all at once. Orders come and go;
//! the memo refills with the ones in use.

use dashmap::DashMap;
use foldhash::fast::RandomState;
use std::borrow::Borrow;
use std::hash::Hash;

pub struct Memo<K, V> {
    // Keys come from request paths: a seeded hash, quicker than SipHash.
    map: DashMap<K, V, RandomState>,
    cap: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            map: DashMap::with_hasher(RandomState::default()),
            cap,
        }
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map.get(key).map(|v| v.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.map.clear();
        }
        self.map.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_values_up_to_its_bound_then_starts_afresh() {
        let memo = Memo::new(3);
        for i in 0..3 {
            memo.insert(i, i * 10);
        }
        assert_eq!(memo.get(&2), Some(20));
        assert_eq!(memo.len(), 3);
        memo.insert(3, 30);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(&0), None);
        assert_eq!(memo.get(&3), Some(30));
        // A key inserted again replaces its value, even when the memo is full.
        memo.insert(4, 40);
        memo.insert(5, 50);
        memo.insert(3, 31);
        assert_eq!(
            (memo.len(), memo.get(&3), memo.get(&4)),
            (3, Some(31), Some(40))
        );
    }
}
