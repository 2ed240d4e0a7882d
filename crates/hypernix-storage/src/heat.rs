//! Per-extent heat: exponentially decayed read and write counters.
//!
//! Each extent touched keeps a [`Counter`] of 12 bytes (two `f32` counts and the second of
//! the last update); untouched extents cost nothing. A count decays by half every
//! half-life: on each update it is multiplied by `2^(-elapsed / half_life)` before the new
//! access is added, so no background task is needed. Time is passed in explicitly (seconds
//! since the store opened), which lets tests run in simulated time.
//!
//! Beside the decayed counts, each extent counts its accesses in up to
//! [`MAX_WINDOWS`] time windows (`storage.fabric.heatMap.timeWindows`, e.g. 1h, 1d, 7d,
//! 30d) with two saturating `u16`s per window: accesses in the current window-long bucket
//! (bucket `b = second / window`) and in the one before. The estimate for the sliding
//! window ending now is `current + previous × (1 − elapsed fraction of the current bucket)`,
//! the two-bucket approximation of a sliding window, so a window costs 4 bytes per extent
//! whatever its length. The bucket of the stored counts is that of `last`.

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

/// The most time windows an extent counts in.
pub const MAX_WINDOWS: usize = 4;

/// Heat metadata bytes per touched extent: the decayed [`Counter`] and the windowed counts.
pub const BYTES_PER_EXTENT: usize = std::mem::size_of::<Entry>();

/// One extent's decayed counts, windowed counts (current, previous bucket per window) and
/// content scores.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    counter: Counter,
    windows: [[u16; 2]; MAX_WINDOWS],
    /// Rises by [`SCORE_STEP`] with each sequential access, falls with each random one.
    sequential: u8,
    /// Rises with each compressible write, falls with each incompressible one.
    compressible: u8,
}

/// How far one observation moves a content score (0-255; above 127 means yes).
const SCORE_STEP: u8 = 32;

fn nudge(score: &mut u8, yes: bool) {
    *score = if yes {
        score.saturating_add(SCORE_STEP)
    } else {
        score.saturating_sub(SCORE_STEP)
    };
}

/// What an extent's accesses and data look like, for placement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Content {
    /// Mostly read or written in sequential runs.
    pub sequential: bool,
    /// Its recent writes looked compressible.
    pub compressible: bool,
}

/// Whether `data` looks compressible: the order-0 entropy of a sample of up to 512 bytes
/// is under 6 bits per byte (random data measures about 7.6 on such a sample, text about 4.5).
pub fn looks_compressible(data: &[u8]) -> bool {
    let sample = &data[..data.len().min(512)];
    if sample.is_empty() {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in sample {
        counts[b as usize] += 1;
    }
    let n = sample.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy < 6.0
}

/// The heat of every touched extent, keyed by (volume id, extent index).
#[derive(Debug, Clone)]
pub struct HeatMap {
    half_life: f64,
    windows: Vec<u32>,
    counters: HashMap<(u64, u64), Entry>,
}

impl HeatMap {
    /// An empty map whose counts halve every `half_life_secs` seconds.
    pub fn new(half_life_secs: f64) -> HeatMap {
        HeatMap::with_windows(half_life_secs, &[])
    }

    /// An empty map that also counts accesses in `windows` (seconds each, at most
    /// [`MAX_WINDOWS`]; more are ignored, so callers check the configuration first).
    pub fn with_windows(half_life_secs: f64, windows: &[u32]) -> HeatMap {
        HeatMap {
            half_life: half_life_secs.max(1.0),
            windows: windows
                .iter()
                .take(MAX_WINDOWS)
                .map(|&w| w.max(1))
                .collect(),
            counters: HashMap::new(),
        }
    }

    /// The window lengths in seconds.
    pub fn windows(&self) -> &[u32] {
        &self.windows
    }

    /// Estimated accesses of `key` in each window ending at `now`.
    pub fn windowed(&self, key: (u64, u64), now: u32) -> Vec<f64> {
        let Some(e) = self.counters.get(&key) else {
            return vec![0.0; self.windows.len()];
        };
        self.windows
            .iter()
            .zip(&e.windows)
            .map(|(&w, &[cur, prev])| {
                let (b, last) = (now / w, e.counter.last / w);
                let rest = 1.0 - f64::from(now % w) / f64::from(w);
                match b.saturating_sub(last) {
                    0 => f64::from(cur) + f64::from(prev) * rest,
                    1 => f64::from(cur) * rest,
                    _ => 0.0,
                }
            })
            .collect()
    }

    /// Heap bytes the map uses now, by its table's capacity (keys, entries, control bytes).
    pub fn memory_bytes(&self) -> usize {
        self.counters.capacity() * (std::mem::size_of::<((u64, u64), Entry)>() + 1)
    }

    fn decay(&self, c: Counter, now: u32) -> Counter {
        decay(self.half_life, c, now)
    }

    /// Counts one access to extent `key` at second `now`.
    pub fn record(&mut self, key: (u64, u64), now: u32, write: bool) {
        let windows = &self.windows;
        let half_life = self.half_life;
        let e = self.counters.entry(key).or_insert_with(|| Entry {
            counter: Counter {
                last: now,
                ..Counter::default()
            },
            ..Entry::default()
        });
        for (&w, [cur, prev]) in windows.iter().zip(&mut e.windows) {
            match (now / w).saturating_sub(e.counter.last / w) {
                0 => {}
                1 => (*prev, *cur) = (*cur, 0),
                _ => (*prev, *cur) = (0, 0),
            }
            *cur = cur.saturating_add(1);
        }
        let mut c = decay(half_life, e.counter, now);
        if write {
            c.writes += 1.0;
        } else {
            c.reads += 1.0;
        }
        e.counter = c;
    }

    /// Notes whether an access to a touched extent `key` was part of a sequential run.
    pub fn note_pattern(&mut self, key: (u64, u64), sequential: bool) {
        if let Some(e) = self.counters.get_mut(&key) {
            nudge(&mut e.sequential, sequential);
        }
    }

    /// Notes whether data written to a touched extent `key` looked compressible.
    pub fn note_content(&mut self, key: (u64, u64), compressible: bool) {
        if let Some(e) = self.counters.get_mut(&key) {
            nudge(&mut e.compressible, compressible);
        }
    }

    /// What `key`'s accesses and data look like (untouched: random, incompressible).
    pub fn content(&self, key: (u64, u64)) -> Content {
        self.counters
            .get(&key)
            .map_or(Content::default(), |e| Content {
                sequential: e.sequential > 127,
                compressible: e.compressible > 127,
            })
    }

    /// The decayed access count (reads + writes) of `key` at `now`.
    pub fn count(&self, key: (u64, u64), now: u32) -> f64 {
        self.counters.get(&key).map_or(0.0, |e| {
            let c = self.decay(e.counter, now);
            f64::from(c.reads + c.writes)
        })
    }

    /// The decayed counts of `key` at `now` (`None`: never touched since open).
    pub fn counter(&self, key: (u64, u64), now: u32) -> Option<Counter> {
        self.counters.get(&key).map(|e| self.decay(e.counter, now))
    }

    /// Seconds since the last access of `key` (`None`: never touched since open).
    pub fn idle(&self, key: (u64, u64), now: u32) -> Option<u32> {
        self.counters
            .get(&key)
            .map(|e| now.saturating_sub(e.counter.last))
    }

    /// The hottest decayed count at `now` (0 when nothing was touched).
    pub fn hottest(&self, now: u32) -> f64 {
        self.counters
            .keys()
            .map(|&k| self.count(k, now))
            .fold(0.0, f64::max)
    }

    /// Every extent's decayed counts, undecayed since its last access (for saving).
    pub fn counters(&self) -> impl Iterator<Item = ((u64, u64), Counter)> + '_ {
        self.counters.iter().map(|(&k, e)| (k, e.counter))
    }

    /// Puts back a saved counter (its windowed counts start empty).
    pub fn restore(&mut self, key: (u64, u64), counter: Counter) {
        self.counters.insert(
            key,
            Entry {
                counter,
                ..Entry::default()
            },
        );
    }

    /// The half-life in seconds.
    pub fn half_life(&self) -> f64 {
        self.half_life
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

/// `c` decayed to `now`.
fn decay(half_life: f64, c: Counter, now: u32) -> Counter {
    let dt = f64::from(now.saturating_sub(c.last));
    let f = (-dt / half_life).exp2() as f32;
    Counter {
        reads: c.reads * f,
        writes: c.writes * f,
        last: now.max(c.last),
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
        assert_eq!(BYTES_PER_EXTENT, 32);
    }

    #[test]
    fn content_scores_follow_recent_observations() {
        let mut h = HeatMap::new(100.0);
        let k = (1, 0);
        h.note_pattern(k, true);
        assert_eq!(
            h.content(k),
            Content::default(),
            "untouched extents are not scored"
        );
        h.record(k, 0, true);
        for _ in 0..5 {
            h.note_pattern(k, true);
            h.note_content(k, true);
        }
        assert_eq!(
            h.content(k),
            Content {
                sequential: true,
                compressible: true
            }
        );
        for _ in 0..2 {
            h.note_pattern(k, false);
        }
        assert!(!h.content(k).sequential);
        let text = b"the quick brown fox jumps over the lazy dog ".repeat(20);
        assert!(looks_compressible(&text));
        assert!(looks_compressible(&[0u8; 4096]));
        // A xorshift stream stands in for random bytes.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(!looks_compressible(&random));
        assert!(!looks_compressible(&[]));
    }

    #[test]
    fn windows_count_recent_accesses() {
        // Windows of 100 s and 1000 s.
        let mut h = HeatMap::with_windows(3600.0, &[100, 1000]);
        let k = (1, 0);
        for t in [10, 20, 30] {
            h.record(k, t, false);
        }
        assert_eq!(h.windowed(k, 30), [3.0, 3.0]);
        // Second 150: bucket 1 of the 100 s window; the 3 old ones count half.
        assert_eq!(h.windowed(k, 150), [1.5, 3.0]);
        h.record(k, 150, true);
        assert_eq!(h.windowed(k, 150), [2.5, 4.0]);
        // Second 250: the previous 100 s bucket holds 1 (at 150), weighed by 1/2.
        assert_eq!(h.windowed(k, 250), [0.5, 4.0]);
        // Far later: nothing in the short window, the long one empties too.
        assert_eq!(h.windowed(k, 2500), [0.0, 0.0]);
        h.record(k, 2500, false);
        assert_eq!(h.windowed(k, 2500), [1.0, 1.0]);
        assert_eq!(h.windowed((9, 9), 2500), [0.0, 0.0]);
        // Counts saturate instead of wrapping.
        let mut h = HeatMap::with_windows(3600.0, &[100]);
        for _ in 0..70_000 {
            h.record(k, 5, false);
        }
        assert_eq!(h.windowed(k, 5), [f64::from(u16::MAX)]);
    }
}
