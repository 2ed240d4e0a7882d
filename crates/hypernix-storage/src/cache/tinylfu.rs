//! Window TinyLFU (G. Einziger, R. Friedman and B. Manes, "TinyLFU: A Highly Efficient
//! Cache Admission Policy", ACM ToS 2017) with Caffeine's adaptive window: the memory
//! tier's default policy.
//!
//! 1. Every access counts in the cache's own frequency table: exact counts that halve every
//!    max(capacity, 2^17) accesses, on the cache's access clock rather than wall-clock time
//!    (TinyLFU's reset tied to the capacity; the floor keeps small caches from forgetting
//!    within a few thousand requests). Counts decayed below 10^-4 are dropped once per
//!    half-life, so the table holds the keys of the last ~13 half-lives at most, and never
//!    more than the extents the store's heat map already tracks.
//! 2. A miss enters an LRU window (20% of the capacity at first).
//! 3. The key the window pushes out is a candidate for the main cache, a segmented LRU
//!    (probation, then protected once hit again; protected holds 80% of main).
//! 4. When the main cache is full the candidate is admitted only if its count is higher
//!    than that of the key main would evict (probation's LRU); otherwise it leaves.
//! 5. Hill climbing sizes the window: every 2 × capacity requests the hit ratio of that
//!    sample is compared with the one before; the window keeps moving the same way
//!    (first step 6.25% of the capacity) while the ratio does not drop, turns round when it
//!    does, and the step shrinks by 2% each sample unless the ratio jumps by 5 points,
//!    which restarts it (Caffeine's simple climber). Keys crossing the moved boundary move
//!    between window and main; none is evicted by a resize.
//!
//! [`Tuning::default`] holds these numbers; they were chosen on the ARC paper's OLTP and
//! P3 traces (BENCHMARKS.md, "Trace replay"). [`Admission::Heat`] admits by the store's
//! heat map instead (the policy before the adaptive window), kept for comparison.

use std::hash::Hash;

use super::list::LruList;
use super::{Outcome, Policy};

/// Where admission takes a key's frequency from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The store's heat map (the `freq` given to each access).
    Heat,
    /// The cache's own exact counts, decayed by half every `sample_factor` × capacity
    /// accesses (at least `half_life_floor`).
    Decayed,
}

/// Exact per-key access counts that halve every `half_life` accesses (the cache's own
/// clock, so the rate of requests does not matter); counts that decayed below
/// [`Decayed::FORGET`] are dropped every half-life, which bounds the table to the keys
/// seen in the last few half-lives.
struct Decayed<K> {
    counts: std::collections::HashMap<K, (f32, u64)>,
    clock: u64,
    half_life: f64,
    next_prune: u64,
}

impl<K: Hash + Eq + Copy> Decayed<K> {
    const FORGET: f64 = 1e-4;

    fn new(half_life: u64) -> Self {
        Decayed {
            counts: std::collections::HashMap::new(),
            clock: 0,
            half_life: half_life.max(1) as f64,
            next_prune: half_life.max(1),
        }
    }

    fn decay(&self, (count, at): (f32, u64)) -> f64 {
        f64::from(count) * (-((self.clock - at) as f64) / self.half_life).exp2()
    }

    fn estimate(&self, key: &K) -> f64 {
        self.counts.get(key).map_or(0.0, |&c| self.decay(c))
    }

    fn increment(&mut self, key: K) {
        self.clock += 1;
        let now = self.clock;
        let count = self.estimate(&key);
        self.counts.insert(key, ((count + 1.0) as f32, now));
        if now >= self.next_prune {
            self.next_prune = now + self.half_life as u64;
            let (clock, half_life) = (self.clock, self.half_life);
            self.counts.retain(|_, &mut (c, at)| {
                f64::from(c) * (-((clock - at) as f64) / half_life).exp2() >= Self::FORGET
            });
        }
    }
}

/// W-TinyLFU's knobs; [`Tuning::default`] is what the store uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// The window's initial share of the capacity, in percent.
    pub window_percent: f64,
    /// Whether the window size adapts by hill climbing.
    pub adaptive: bool,
    /// The climber's first step, in percent of the capacity.
    pub step_percent: f64,
    /// The factor each step shrinks by while the hit ratio moves little.
    pub step_decay: f64,
    /// A change of the sample hit ratio this large restarts the steps at full size.
    pub restart: f64,
    /// The half-life of [`Admission::Decayed`] counts, in accesses, as a multiple of the
    /// capacity.
    pub sample_factor: u64,
    /// The least half-life of [`Admission::Decayed`] counts, in accesses.
    pub half_life_floor: u64,
    /// Requests per climbing sample, as a multiple of the capacity.
    pub climb_factor: f64,
    /// Whether a candidate as frequent as the victim is admitted.
    pub admit_ties: bool,
    /// Frequency source for admission.
    pub admission: Admission,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            window_percent: 20.0,
            adaptive: true,
            step_percent: 6.25,
            step_decay: 0.98,
            restart: 0.05,
            sample_factor: 1,
            half_life_floor: 1 << 17,
            climb_factor: 2.0,
            admit_ties: false,
            admission: Admission::Decayed,
        }
    }
}

/// Hill climbing on the window size (Caffeine's simple climber).
struct Climber {
    period: u64,
    requests: u64,
    hits: u64,
    previous: f64,
    step: f64,
    first_step: f64,
    decay: f64,
    restart: f64,
}

impl Climber {
    /// Counts a request; at the end of a sample returns how many keys to move into the
    /// window (negative: out of it).
    fn record(&mut self, hit: bool) -> Option<i64> {
        self.requests += 1;
        self.hits += u64::from(hit);
        if self.requests < self.period {
            return None;
        }
        let rate = self.hits as f64 / self.requests as f64;
        let change = rate - self.previous;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= self.restart {
            self.first_step.copysign(amount)
        } else {
            self.decay * amount
        };
        self.previous = rate;
        self.requests = 0;
        self.hits = 0;
        Some(amount as i64)
    }
}

/// A W-TinyLFU cache of `capacity` keys.
pub struct TinyLfu<K> {
    window: LruList<K>,
    probation: LruList<K>,
    protected: LruList<K>,
    capacity: usize,
    window_cap: usize,
    decayed: Decayed<K>,
    climber: Option<Climber>,
    admission: Admission,
    admit_ties: bool,
}

impl<K: Hash + Eq + Copy> TinyLfu<K> {
    /// An empty cache holding at most `capacity` keys, tuned by `tuning`.
    pub fn new(capacity: usize, tuning: Tuning) -> Self {
        let capacity = capacity.max(2);
        let window_cap =
            ((capacity as f64 * tuning.window_percent / 100.0) as usize).clamp(1, capacity - 1);
        let sample = tuning.sample_factor.max(1) * capacity as u64;
        let first_step = capacity as f64 * tuning.step_percent / 100.0;
        TinyLfu {
            window: LruList::new(),
            probation: LruList::new(),
            protected: LruList::new(),
            capacity,
            window_cap,
            decayed: Decayed::new(sample.max(tuning.half_life_floor)),
            climber: tuning.adaptive.then_some(Climber {
                period: ((capacity as f64 * tuning.climb_factor) as u64).max(1),
                requests: 0,
                hits: 0,
                previous: 0.0,
                step: -first_step,
                first_step,
                decay: tuning.step_decay,
                restart: tuning.restart,
            }),
            admission: tuning.admission,
            admit_ties: tuning.admit_ties,
        }
    }

    /// The window's current size limit.
    pub fn window_capacity(&self) -> usize {
        self.window_cap
    }

    fn main_cap(&self) -> usize {
        self.capacity - self.window_cap
    }

    fn protected_cap(&self) -> usize {
        self.main_cap() * 4 / 5
    }

    fn freq(&self, key: &K, heat: &dyn Fn(&K) -> f64) -> f64 {
        match self.admission {
            Admission::Heat => heat(key),
            Admission::Decayed => self.decayed.estimate(key),
        }
    }

    /// Offers the key the window pushed out to the main cache; returns the key that left.
    fn admit(&mut self, candidate: K, heat: &dyn Fn(&K) -> f64) -> Option<K> {
        if self.probation.len() + self.protected.len() < self.main_cap() {
            self.probation.push_front(candidate);
            return None;
        }
        let victim = self.probation.back().or_else(|| self.protected.back())?;
        let (c, v) = (self.freq(&candidate, heat), self.freq(&victim, heat));
        if c > v || (self.admit_ties && c == v) {
            self.probation.remove(&victim);
            self.protected.remove(&victim);
            self.probation.push_front(candidate);
            Some(victim)
        } else {
            Some(candidate)
        }
    }

    /// Moves the window's boundary by `amount` keys (positive: a larger window), moving
    /// the keys that cross it without evicting any.
    fn resize(&mut self, amount: i64) {
        let cap = self.capacity as i64;
        self.window_cap = (self.window_cap as i64 + amount).clamp(1, cap - 1) as usize;
        while self.window.len() > self.window_cap {
            let Some(k) = self.window.pop_back() else {
                break;
            };
            self.probation.push_front(k);
        }
        while self.probation.len() + self.protected.len() > self.main_cap() {
            let k = match self.probation.pop_back() {
                Some(k) => k,
                None => match self.protected.pop_back() {
                    Some(k) => k,
                    None => break,
                },
            };
            self.window.push_front(k);
        }
        while self.protected.len() > self.protected_cap() {
            let Some(k) = self.protected.pop_back() else {
                break;
            };
            self.probation.push_front(k);
        }
    }

    fn lookup(&mut self, key: K) -> bool {
        if self.window.contains(&key) {
            self.window.push_front(key);
            return true;
        }
        if self.probation.remove(&key) {
            self.protected.push_front(key);
            if self.protected.len() > self.protected_cap()
                && let Some(k) = self.protected.pop_back()
            {
                self.probation.push_front(k);
            }
            return true;
        }
        if self.protected.contains(&key) {
            self.protected.push_front(key);
            return true;
        }
        false
    }
}

impl<K: Hash + Eq + Copy + Send> Policy<K> for TinyLfu<K> {
    fn access(&mut self, key: K, freq: &dyn Fn(&K) -> f64) -> Outcome<K> {
        match self.admission {
            Admission::Decayed => self.decayed.increment(key),
            Admission::Heat => {}
        }
        let hit = self.lookup(key);
        if let Some(amount) = self.climber.as_mut().and_then(|c| c.record(hit))
            && amount != 0
        {
            self.resize(amount);
        }
        if hit {
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
    fn decayed_counts_halve_every_half_life_and_old_keys_are_dropped() {
        let mut d = Decayed::new(10);
        for _ in 0..4 {
            d.increment(1u32);
        }
        let at = d.estimate(&1);
        for k in 100..110 {
            d.increment(k);
        }
        assert!(
            (d.estimate(&1) - at / 2.0).abs() < 1e-3,
            "{}",
            d.estimate(&1)
        );
        for k in 200..400 {
            d.increment(k);
        }
        assert!(
            !d.counts.contains_key(&1),
            "decayed below FORGET and dropped"
        );
        assert!(d.counts.len() <= 150, "{}", d.counts.len());
    }

    #[test]
    fn the_climber_keeps_direction_while_the_hit_ratio_rises_and_turns_when_it_drops() {
        let mut c = Climber {
            period: 10,
            requests: 0,
            hits: 0,
            previous: 0.0,
            step: 8.0,
            first_step: 8.0,
            decay: 0.5,
            restart: 0.5,
        };
        let mut sample = |hits: usize| {
            (0..10)
                .filter_map(|i| c.record(i < hits))
                .last()
                .expect("one adjustment per sample")
        };
        assert_eq!(sample(2), 8, "0.2 after 0: up, full step");
        assert_eq!(sample(3), 4, "rose a little: same way, half the step");
        assert_eq!(sample(1), -2, "dropped: turn round");
        assert_eq!(sample(1), -1, "held: keep going");
    }

    #[test]
    fn admits_a_candidate_only_if_hotter_than_the_victim() {
        // Capacity 3: window 1, main 2. Heat: 1 and 2 are hot, 9 and 8 are cold.
        let heat: HashMap<u32, f64> = [(1, 5.0), (2, 4.0), (9, 1.0), (8, 1.0), (3, 6.0)].into();
        let freq = |k: &u32| heat.get(k).copied().unwrap_or(0.0);
        let tuning = Tuning {
            adaptive: false,
            admission: Admission::Heat,
            ..Tuning::default()
        };
        let mut c = TinyLfu::new(3, tuning);
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
