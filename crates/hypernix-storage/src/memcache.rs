//! The memory tier of a durable store as a read cache of extents.
//!
//! A durable store never maps extents to a memory tier (their data would not survive a
//! restart); instead the memory tier keeps copies of extents that live on durable tiers:
//! 1. a read of a mapped extent asks the policy ([`crate::cache`], W-TinyLFU by default);
//!    a hit is served from the copy;
//! 2. a miss reads the durable tier; if the policy admits the extent, the whole extent is
//!    read into a copy (under the cache lock, so no write can slip between);
//! 3. every write to a durable tier updates the copy after the tier (write-through) or
//!    drops it (write-around); freeing an extent drops it; moves leave it alone (same data).

use std::collections::HashMap;

use crate::cache::{Outcome, Policy};
use crate::heat::HeatMap;
use crate::options::{CacheSpec, CacheWrite};

/// Cached extent copies and the policy that picks them.
pub(crate) struct MemCache {
    policy: Box<dyn Policy<(u64, u64)>>,
    copies: HashMap<(u64, u64), Box<[u8]>>,
    write: CacheWrite,
    /// The memory tier's index in the store's tiers.
    pub tier: usize,
    /// Capacity in extents.
    pub capacity: u64,
}

impl MemCache {
    /// A cache of `capacity` extents on tier index `tier`.
    pub fn new(spec: &CacheSpec, tier: usize, capacity: u64) -> MemCache {
        MemCache {
            policy: spec.policy.build(capacity as usize),
            copies: HashMap::new(),
            write: spec.write,
            tier,
            capacity,
        }
    }

    /// Counts an access to `key` with the policy at time `now`.
    pub fn access(&mut self, key: (u64, u64), heat: &HeatMap, now: u32) -> Outcome<(u64, u64)> {
        let outcome = self.policy.access(key, &|k| heat.count(*k, now));
        if let Some(gone) = outcome.evicted {
            self.copies.remove(&gone);
        }
        outcome
    }

    /// The cached copy of `key`.
    pub fn copy(&self, key: &(u64, u64)) -> Option<&[u8]> {
        self.copies.get(key).map(|c| &c[..])
    }

    /// Stores the copy of an admitted extent.
    pub fn insert(&mut self, key: (u64, u64), data: Box<[u8]>) {
        if self.policy.contains(&key) {
            self.copies.insert(key, data);
        }
    }

    /// Applies a write of `data` at `off` in extent `key` that reached its durable tier.
    pub fn written(&mut self, key: (u64, u64), off: u64, data: &[u8]) {
        match self.write {
            CacheWrite::Through => {
                if let Some(c) = self.copies.get_mut(&key) {
                    c[off as usize..off as usize + data.len()].copy_from_slice(data);
                }
            }
            CacheWrite::Around => self.drop_key(&key),
        }
    }

    /// Forgets `key` (freed, or its data changed outside a write).
    pub fn drop_key(&mut self, key: &(u64, u64)) {
        self.copies.remove(key);
        self.policy.remove(key);
    }

    /// Extents held.
    pub fn len(&self) -> u64 {
        self.copies.len() as u64
    }
}
