//! Cache replacement and admission policies over extent keys: LRU and ARC as baselines,
//! and W-TinyLFU with an adaptive window, which the memory tier uses by default.
//!
//! A policy tracks keys only; whoever owns the data ([`crate::memcache`], the trace
//! replay) copies it in or drops it by the [`Outcome`] of each access.

mod arc;
mod list;
mod lru;
mod tinylfu;

use std::hash::Hash;

use serde::Serialize;

pub use arc::Arc;
pub use lru::Lru;
pub use tinylfu::{Admission, TinyLfu, Tuning};

/// What one access did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<K> {
    /// The key was cached.
    pub hit: bool,
    /// After a miss: the key is now cached (its data should be copied in).
    pub admitted: bool,
    /// A key that left the cache (its data should be dropped).
    pub evicted: Option<K>,
}

impl<K> Outcome<K> {
    fn hit() -> Self {
        Outcome {
            hit: true,
            admitted: false,
            evicted: None,
        }
    }
}

/// A replacement (and maybe admission) policy over keys.
pub trait Policy<K>: Send {
    /// Records an access to `key`; `freq` is the key's current heat (used by admission).
    fn access(&mut self, key: K, freq: &dyn Fn(&K) -> f64) -> Outcome<K>;
    /// Whether `key` is cached.
    fn contains(&self, key: &K) -> bool;
    /// Drops `key` (its data changed or was freed).
    fn remove(&mut self, key: &K);
    /// How many keys are cached.
    fn len(&self) -> usize;
    /// Whether nothing is cached.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The policies this build implements (`storage.fabric.caching.layers.*.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// Adaptive Replacement Cache.
    Arc,
    /// Window TinyLFU with an adaptive window.
    Tinylfu,
}

impl PolicyKind {
    /// A new, empty cache of this policy holding `capacity` keys.
    pub fn build<K: Hash + Eq + Copy + Send + 'static>(
        self,
        capacity: usize,
    ) -> Box<dyn Policy<K>> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::Arc => Box::new(Arc::new(capacity)),
            PolicyKind::Tinylfu => Box::new(TinyLfu::new(capacity, Tuning::default())),
        }
    }
}

/// Runs `keys` through `cache` with no heat; `H` for each hit, `M` for each miss.
#[cfg(test)]
fn run<P: Policy<u32>>(cache: &mut P, keys: &[u32]) -> String {
    keys.iter()
        .map(|&k| {
            if cache.access(k, &|_| 0.0).hit {
                'H'
            } else {
                'M'
            }
        })
        .collect()
}
