//! Adaptive Replacement Cache (N. Megiddo and D. S. Modha, "ARC: A Self-Tuning, Low
//! Overhead Replacement Cache", USENIX FAST 2003), as the paper's Figure 4 gives it.
//!
//! `t1` holds keys seen once recently, `t2` keys seen at least twice; `b1` and `b2` are
//! their ghosts (keys only, no data). A ghost hit in `b1` grows the target size `p` of
//! `t1`, one in `b2` shrinks it, so the split between recency and frequency adapts.

use std::hash::Hash;

use super::list::LruList;
use super::{Outcome, Policy};

/// An ARC cache of `c` keys.
pub struct Arc<K> {
    t1: LruList<K>,
    t2: LruList<K>,
    b1: LruList<K>,
    b2: LruList<K>,
    p: usize,
    c: usize,
}

impl<K: Hash + Eq + Copy> Arc<K> {
    /// An empty cache holding at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Arc {
            t1: LruList::new(),
            t2: LruList::new(),
            b1: LruList::new(),
            b2: LruList::new(),
            p: 0,
            c: capacity.max(1),
        }
    }

    /// REPLACE(x, p): moves the LRU key of `t1` or `t2` to its ghost list; returns it.
    /// Does nothing while the cache has room (possible after [`Policy::remove`]).
    fn replace(&mut self, in_b2: bool) -> Option<K> {
        if self.t1.len() + self.t2.len() < self.c {
            return None;
        }
        let t1 = self.t1.len();
        let from_t1 = t1 >= 1 && ((in_b2 && t1 == self.p) || t1 > self.p);
        if from_t1 || self.t2.len() == 0 {
            let k = self.t1.pop_back()?;
            self.b1.push_front(k);
            Some(k)
        } else {
            let k = self.t2.pop_back()?;
            self.b2.push_front(k);
            Some(k)
        }
    }
}

impl<K: Hash + Eq + Copy + Send> Policy<K> for Arc<K> {
    fn access(&mut self, key: K, _freq: &dyn Fn(&K) -> f64) -> Outcome<K> {
        // Case I: a hit.
        if self.t1.remove(&key) || self.t2.contains(&key) {
            self.t2.push_front(key);
            return Outcome::hit();
        }
        let evicted = if self.b1.contains(&key) {
            // Case II: a ghost hit in b1 favours recency.
            let delta = (self.b2.len() / self.b1.len()).max(1);
            self.p = (self.p + delta).min(self.c);
            let evicted = self.replace(false);
            self.b1.remove(&key);
            self.t2.push_front(key);
            evicted
        } else if self.b2.contains(&key) {
            // Case III: a ghost hit in b2 favours frequency.
            let delta = (self.b1.len() / self.b2.len()).max(1);
            self.p = self.p.saturating_sub(delta);
            let evicted = self.replace(true);
            self.b2.remove(&key);
            self.t2.push_front(key);
            evicted
        } else {
            // Case IV: a complete miss.
            let l1 = self.t1.len() + self.b1.len();
            let total = l1 + self.t2.len() + self.b2.len();
            let evicted = if l1 >= self.c {
                if self.t1.len() < self.c {
                    self.b1.pop_back();
                    self.replace(false)
                } else {
                    self.t1.pop_back()
                }
            } else if total >= self.c {
                if total >= 2 * self.c {
                    self.b2.pop_back();
                }
                self.replace(false)
            } else {
                None
            };
            self.t1.push_front(key);
            evicted
        };
        Outcome {
            hit: false,
            admitted: true,
            evicted,
        }
    }

    fn contains(&self, key: &K) -> bool {
        self.t1.contains(key) || self.t2.contains(key)
    }

    fn remove(&mut self, key: &K) {
        self.t1.remove(key);
        self.t2.remove(key);
    }

    fn len(&self) -> usize {
        self.t1.len() + self.t2.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::run;
    use super::*;

    #[test]
    fn keeps_a_twice_seen_key_through_a_scan_where_lru_loses_it() {
        // Capacity 2. 1 1: key 1 goes to t2. 2: t1. 3: REPLACE moves 2 (t1 > p = 0) to b1.
        // 1 is still in t2: a hit (LRU would have evicted it: MHMMM).
        let mut c = Arc::new(2);
        assert_eq!(run(&mut c, &[1, 1, 2, 3, 1]), "MHMMH");
    }

    #[test]
    fn ghost_hits_adapt_the_target() {
        // Capacity 2, worked by hand from the paper's cases:
        // 1 M t1=[1]; 2 M t1=[2,1]; 1 H t1=[2] t2=[1]; 3 M (2 → b1) t1=[3];
        // 2 M (b1 hit: p=1, 1 → b2) t2=[2]; 1 M (b2 hit: p=0, 3 → b1) t2=[1,2];
        // 3 M (b1 hit: p=1, 2 → b2) t2=[3,1]; 1 H.
        let mut c = Arc::new(2);
        assert_eq!(run(&mut c, &[1, 2, 1, 3, 2, 1, 3, 1]), "MMHMMMMH");
        assert_eq!(c.p, 1);
        assert!(c.contains(&3) && c.contains(&1) && !c.contains(&2));
        assert!(c.b2.contains(&2) && c.len() == 2);
    }
}
