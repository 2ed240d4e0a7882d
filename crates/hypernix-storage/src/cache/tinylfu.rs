//! Window TinyLFU (G. Einziger, R. Friedman and B. Manes, "TinyLFU: A Highly Efficient
//! Cache Admission Policy", ACM ToS 2017), with the store's decayed heat as its frequency
//! estimate instead of a count-min sketch.
//!
//! 1. A miss enters an LRU window (20% of the capacity: the traces in BENCHMARKS.md favour
//!    recency more than Caffeine's 1% default assumes).
//! 2. The key the window pushes out is a candidate for the main cache, a segmented LRU
//!    (probation, then protected once hit again; protected holds 80%).
//! 3. When the main cache is full the candidate is admitted only if its heat is higher than
//!    that of the key main would evict; otherwise the candidate leaves.
//!
//! The heat map already counts every access with exponential decay, so admission costs no
//! extra memory, and its half-life plays the part of TinyLFU's periodic reset.

use std::hash::Hash;

use super::list::LruList;
use super::{Outcome, Policy};

/// A W-TinyLFU cache of `capacity` keys.
pub struct TinyLfu<K> {
    window: LruList<K>,
    probation: LruList<K>,
    protected: LruList<K>,
    window_cap: usize,
    main_cap: usize,
    protected_cap: usize,
}

impl<K: Hash + Eq + Copy> TinyLfu<K> {
    /// An empty cache holding at most `capacity` keys, `window` percent of them in the
    /// admission window.
    pub fn new(capacity: usize, window: f64) -> Self {
        let capacity = capacity.max(2);
        let window_cap = ((capacity as f64 * window / 100.0) as usize).clamp(1, capacity - 1);
        let main_cap = capacity - window_cap;
        TinyLfu {
            window: LruList::new(),
            probation: LruList::new(),
            protected: LruList::new(),
            window_cap,
            main_cap,
            protected_cap: main_cap * 4 / 5,
        }
    }

    /// Offers the key the window pushed out to the main cache; returns the key that left.
    fn admit(&mut self, candidate: K, freq: &dyn Fn(&K) -> f64) -> Option<K> {
        if self.probation.len() + self.protected.len() < self.main_cap {
            self.probation.push_front(candidate);
            return None;
        }
        let victim = self.probation.back().or_else(|| self.protected.back())?;
        if freq(&candidate) > freq(&victim) {
            self.probation.remove(&victim);
            self.protected.remove(&victim);
            self.probation.push_front(candidate);
            Some(victim)
        } else {
            Some(candidate)
        }
    }
}

impl<K: Hash + Eq + Copy + Send> Policy<K> for TinyLfu<K> {
    fn access(&mut self, key: K, freq: &dyn Fn(&K) -> f64) -> Outcome<K> {
        if self.window.contains(&key) {
            self.window.push_front(key);
            return Outcome::hit();
        }
        if self.probation.remove(&key) {
            self.protected.push_front(key);
            if self.protected.len() > self.protected_cap
                && let Some(k) = self.protected.pop_back()
            {
                self.probation.push_front(k);
            }
            return Outcome::hit();
        }
        if self.protected.contains(&key) {
            self.protected.push_front(key);
            return Outcome::hit();
        }
        self.window.push_front(key);
        let evicted = if self.window.len() > self.window_cap {
            self.window
                .pop_back()
                .and_then(|candidate| self.admit(candidate, freq))
        } else {
            None
        };
        Outcome {
            hit: false,
            admitted: evicted != Some(key),
            evicted: evicted.filter(|&k| k != key),
        }
    }

    fn contains(&self, key: &K) -> bool {
        self.window.contains(key) || self.probation.contains(key) || self.protected.contains(key)
    }

    fn remove(&mut self, key: &K) {
        self.window.remove(key);
        self.probation.remove(key);
        self.protected.remove(key);
    }

    fn len(&self) -> usize {
        self.window.len() + self.probation.len() + self.protected.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn admits_a_candidate_only_if_hotter_than_the_victim() {
        // Capacity 3: window 1, main 2. Heat: 1 and 2 are hot, 9 and 8 are cold.
        let heat: HashMap<u32, f64> = [(1, 5.0), (2, 4.0), (9, 1.0), (8, 1.0), (3, 6.0)].into();
        let freq = |k: &u32| heat.get(k).copied().unwrap_or(0.0);
        let mut c = TinyLfu::new(3, 1.0);
        let mut seq = String::new();
        for k in [1, 2, 1, 9, 8, 1, 3, 2] {
            let o = c.access(k, &freq);
            seq.push(if o.hit { 'H' } else { 'M' });
            if k == 9 {
                // 2 left the window for probation while main had room; 9 is in the window.
                assert_eq!(o.evicted, None);
            }
            if k == 8 {
                // 9 leaves the window; main is full (1 protected, 2 on probation) and 9 is
                // colder than the probation victim 2: 9 is turned away.
                assert_eq!(o.evicted, Some(9));
            }
            if k == 3 {
                // 8 leaves the window, colder than 2: turned away too.
                assert_eq!(o.evicted, Some(8));
            }
        }
        // 1 and 2 were hit in main: the cold keys 9 and 8 never pushed them out.
        assert_eq!(seq, "MMHMMHMH");
        assert!(c.contains(&3) && c.contains(&1) && c.contains(&2));
        assert_eq!(c.len(), 3);
    }
}
