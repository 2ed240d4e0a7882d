//! Least recently used: the baseline every cache is compared with.

use std::hash::Hash;

use super::list::LruList;
use super::{Outcome, Policy};

/// An LRU cache of `capacity` keys.
pub struct Lru<K> {
    list: LruList<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Copy> Lru<K> {
    /// An empty cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Lru {
            list: LruList::new(),
            capacity: capacity.max(1),
        }
    }
}

impl<K: Hash + Eq + Copy + Send> Policy<K> for Lru<K> {
    fn access(&mut self, key: K, _freq: &dyn Fn(&K) -> f64) -> Outcome<K> {
        if self.list.contains(&key) {
            self.list.push_front(key);
            return Outcome::hit();
        }
        let evicted = if self.list.len() >= self.capacity {
            self.list.pop_back()
        } else {
            None
        };
        self.list.push_front(key);
        Outcome {
            hit: false,
            admitted: true,
            evicted,
        }
    }

    fn contains(&self, key: &K) -> bool {
        self.list.contains(key)
    }

    fn remove(&mut self, key: &K) {
        self.list.remove(key);
    }

    fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        // Capacity 2: 1 2 1 3 (evicts 2) 2 (miss, evicts 1) 1 (miss) 3 (miss).
        let mut c = Lru::new(2);
        assert_eq!(run(&mut c, &[1, 2, 1, 3, 2, 1, 3]), "MMHMMMM".to_string());
        let mut c = Lru::new(2);
        assert_eq!(run(&mut c, &[1, 2, 1, 2, 3, 2]), "MMHHMH");
    }
}
