//! Per-tier statistics: reads served, moves in, cache hits and misses. Kept in atomics
//! while the store runs and saved to the map's `counters` table now and then, so that
//! `hypernix storage stats` sees them after the server stops.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::map::Op;

/// How often a flush also saves the counters.
const SAVE_EVERY: Duration = Duration::from_secs(30);

/// The counters of one store.
pub(crate) struct Counters {
    names: Vec<String>,
    /// Extent reads served, per tier index (a memory tier: cache hits).
    pub served: Vec<AtomicU64>,
    /// Extents moved in, per tier index.
    pub moves_in: Vec<AtomicU64>,
    /// Cache misses (reads of mapped extents the cache did not hold).
    pub misses: AtomicU64,
    saved: Mutex<Instant>,
}

impl Counters {
    /// Counters for `names` (tier names by index), starting from `loaded`.
    pub fn new(names: Vec<String>, loaded: &BTreeMap<String, u64>) -> Counters {
        let get = |k: String| AtomicU64::new(loaded.get(&k).copied().unwrap_or(0));
        Counters {
            served: names.iter().map(|n| get(format!("reads/{n}"))).collect(),
            moves_in: names.iter().map(|n| get(format!("moves/{n}"))).collect(),
            misses: get("cache/misses".into()),
            names,
            saved: Mutex::new(Instant::now()),
        }
    }

    /// Adds one to `counter[i]`.
    pub fn bump(counter: &[AtomicU64], i: usize) {
        if let Some(c) = counter.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The map ops that save every counter.
    pub fn ops(&self) -> Vec<Op> {
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let mut ops = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            ops.push(Op::Counter(
                format!("reads/{n}"),
                self.served[i].load(Ordering::Relaxed),
            ));
            ops.push(Op::Counter(
                format!("moves/{n}"),
                self.moves_in[i].load(Ordering::Relaxed),
            ));
        }
        ops.push(Op::Counter(
            "cache/misses".into(),
            self.misses.load(Ordering::Relaxed),
        ));
        ops
    }

    /// Whether the last save is old enough to save again.
    pub fn due(&self) -> bool {
        self.saved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            >= SAVE_EVERY
    }
}
