//! The per-series detector: range normalisation, context novelty, deviation, sparse output.
//!
//! 1. Each value is normalised to the range seen so far (no look-ahead) and quantized to
//!    `levels` levels; the context novelty of the point is computed (see `context`). A
//!    value beyond the range seen so far (by more than `margin` of it) is fully novel.
//! 2. The deviation score is `z² / (z² + 6)`, `z` the distance to a running mean in running
//!    standard deviations (exponential moments over `horizon` points): 0.5 at 2.45 sigma.
//! 3. The raw score mixes them: `(1 - mix) * novelty + mix * deviation`.
//! 4. Learning: the first `learning` points only train (score 0).
//! 5. Sparse output: after a raw score reaches `fire`, the following `rest` points report
//!    0, so one anomaly yields one detection near its start.

use crate::context::Contexts;

/// Tuning of a [`Detector`]; one configuration serves every series.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Alerting sensitivity in `[0, 1]`: [`Detector::is_anomaly`] flags scores at or above
    /// `1 - sensitivity`.
    pub sensitivity: f64,
    /// Points that only train the detector before it scores.
    pub learning: u32,
    /// Points reported as 0 after a raw score reached `fire`.
    pub rest: u32,
    /// The raw score that starts a rest period.
    pub fire: f64,
    /// Quantization levels of the normalised value (2 ..= 255).
    pub levels: u8,
    /// Context orders (1 ..= 8).
    pub orders: usize,
    /// Weight of the deviation score in the raw score (the rest is context novelty).
    pub mix: f64,
    /// Horizon, in points, of the running mean and variance behind the deviation score.
    pub horizon: f64,
    /// How far beyond the range seen so far, as a share of it, a value must lie to count
    /// as a new extreme.
    pub margin: f64,
    /// The smallest change that matters, in the series' unit (0: any): the range used
    /// for levels and the running standard deviation are never taken below it.
    pub resolution: f64,
}

impl Default for Config {
    /// The configuration benchmarked on NAB (BENCHMARKS.md, "NAB (issue 12)").
    fn default() -> Self {
        Config {
            sensitivity: 0.5,
            learning: 150,
            rest: 20,
            fire: 0.6,
            levels: 8,
            orders: 7,
            mix: 0.5,
            horizon: 1000.0,
            margin: 0.005,
            resolution: 0.0,
        }
    }
}

/// A streaming anomaly detector for one series.
pub struct Detector {
    config: Config,
    contexts: Contexts,
    seen: u64,
    min: f64,
    max: f64,
    mean: f64,
    var: f64,
    since_fire: u32,
    raw: f64,
}

impl Detector {
    /// A detector with `config`.
    pub fn new(config: Config) -> Self {
        let contexts = Contexts::new(config.orders);
        Detector {
            since_fire: u32::MAX,
            config,
            contexts,
            seen: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            var: 0.0,
            raw: 0.0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bytes held by this detector, heap included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() - std::mem::size_of::<Contexts>() + self.contexts.memory_bytes()
    }

    /// Whether `score` is an alert at the configured sensitivity.
    pub fn is_anomaly(&self, score: f64) -> bool {
        score >= 1.0 - self.config.sensitivity.clamp(0.0, 1.0)
    }

    /// The last step's score before learning and the rest period silenced it: it stays
    /// high for as long as the anomaly lasts, which alert persistence counts on.
    pub fn last_raw(&self) -> f64 {
        self.raw
    }

    /// Scores the next value of the series, in `[0, 1]`. Non-finite values score 0 and are
    /// not learned.
    pub fn step(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            self.raw = 0.0;
            return 0.0;
        }
        self.seen += 1;
        let margin = ((self.max - self.min) * self.config.margin).max(self.config.resolution);
        let outside = self.seen > 1 && (value < self.min - margin || value > self.max + margin);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        let level = self.level(value);
        let mut novelty = self.contexts.push(level);
        if outside {
            novelty = 1.0;
        }
        let mix = self.config.mix.clamp(0.0, 1.0);
        let raw = ((1.0 - mix) * novelty + mix * self.deviation(value)).clamp(0.0, 1.0);
        self.raw = if self.seen <= u64::from(self.config.learning) {
            0.0
        } else {
            raw
        };
        if self.seen <= u64::from(self.config.learning) {
            return 0.0;
        }
        let resting = self.since_fire < self.config.rest;
        self.since_fire = self.since_fire.saturating_add(1);
        if raw >= self.config.fire {
            self.since_fire = 0;
        }
        if resting { 0.0 } else { raw }
    }

    /// A score in `[0, 1)` of how far `value` lies from the running mean, in running
    /// standard deviations; then updates the running moments.
    fn deviation(&mut self, value: f64) -> f64 {
        let alpha = 1.0 / (self.seen as f64).min(self.config.horizon.max(1.0));
        let d = value - self.mean;
        let var = self
            .var
            .max(self.config.resolution * self.config.resolution);
        let z2 = if var > 0.0 {
            d * d / var
        } else if d != 0.0 {
            100.0
        } else {
            0.0
        };
        self.mean += alpha * d;
        self.var = (1.0 - alpha) * (self.var + alpha * d * d);
        z2 / (z2 + 6.0)
    }

    fn level(&self, value: f64) -> u8 {
        let top = f64::from(self.config.levels.max(2) - 1);
        let range = (self.max - self.min).max(self.config.resolution);
        if range <= 0.0 {
            return 0;
        }
        ((value - self.min) / range * top).floor().clamp(0.0, top) as u8
    }
}
