//! Per-extent heat: exponentially decayed read and write counters.
//!
//! Each extent touched keeps a [`Counter`] of 12 bytes (two `f32` counts and the second of
//! the last update); untouched extents cost nothing. A count decays by half every
//! half-life: on each update it is multiplied by `2^(-elapsed / half_life)` before the new
//! access is added, so no background task is needed. Time is passed in explicitly (seconds
//! since the store opened), which lets tests run in simulated time.

use std::collections::HashMap;

/// One extent's heat.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Counter {
    /// Decayed read count at `last`.
    pub reads: f32,
    /// Decayed write count at `last`.
    pub writes: f32,
    /// Second of the last access.
    pub last: u32,
}

/// Heat metadata bytes per touched extent.
pub const BYTES_PER_EXTENT: usize = std::mem::size_of::<Counter>();

/// The heat of every touched extent, keyed by (volume id, extent index).
#[derive(Debug, Clone)]
pub struct HeatMap {
    half_life: f64,
    counters: HashMap<(u64, u64), Counter>,
}

impl HeatMap {
    /// An empty map whose counts halve every `half_life_secs` seconds.
    pub fn new(half_life_secs: f64) -> HeatMap {
        HeatMap {
            half_life: half_life_secs.max(1.0),
            counters: HashMap::new(),
        }
    }

    fn decay(&self, c: Counter, now: u32) -> Counter {
        let dt = f64::from(now.saturating_sub(c.last));
        let f = (-dt / self.half_life).exp2() as f32;
        Counter {
            reads: c.reads * f,
            writes: c.writes * f,
            last: now.max(c.last),
        }
    }

    /// Counts one access to extent `key` at second `now`.
    pub fn record(&mut self, key: (u64, u64), now: u32, write: bool) {
        let c = self.counters.get(&key).copied().unwrap_or(Counter {
            last: now,
            ..Counter::default()
        });
        let mut c = self.decay(c, now);
        if write {
            c.writes += 1.0;
        } else {
            c.reads += 1.0;
        }
        self.counters.insert(key, c);
    }

    /// The decayed access count (reads + writes) of `key` at `now`.
    pub fn count(&self, key: (u64, u64), now: u32) -> f64 {
        self.counters.get(&key).map_or(0.0, |&c| {
            let c = self.decay(c, now);
            f64::from(c.reads + c.writes)
        })
    }

    /// Seconds since the last access of `key` (`None`: never touched since open).
    pub fn idle(&self, key: (u64, u64), now: u32) -> Option<u32> {
        self.counters.get(&key).map(|c| now.saturating_sub(c.last))
    }

    /// The hottest decayed count at `now` (0 when nothing was touched).
    pub fn hottest(&self, now: u32) -> f64 {
        self.counters
            .keys()
            .map(|&k| self.count(k, now))
            .fold(0.0, f64::max)
    }

    /// Forgets extent `key` (freed or removed).
    pub fn forget(&mut self, key: (u64, u64)) {
        self.counters.remove(&key);
    }

    /// How many extents carry a counter.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether no extent carries a counter.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_halve_every_half_life() {
        let mut h = HeatMap::new(100.0);
        for _ in 0..8 {
            h.record((1, 0), 0, false);
        }
        assert!((h.count((1, 0), 0) - 8.0).abs() < 1e-3);
        assert!((h.count((1, 0), 100) - 4.0).abs() < 1e-3);
        assert!((h.count((1, 0), 300) - 1.0).abs() < 1e-3);
        h.record((1, 0), 300, true);
        assert!((h.count((1, 0), 300) - 2.0).abs() < 1e-3);
        assert_eq!(h.idle((1, 0), 350), Some(50));
        assert_eq!(h.idle((1, 1), 350), None);
        assert_eq!(BYTES_PER_EXTENT, 12);
    }
}
