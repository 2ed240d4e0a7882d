//! Anomaly detection over collected samples: one detector and one alert gate per
//! (configured detector, series); counters are watched as per-second rates.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hypernix_config::schema::services::{
    Detector as DetectorSettings, DetectorAlgorithm, Monitoring,
};
use hypernix_monitor::alert::Gate;
use hypernix_monitor::exposition::MetricType;
use hypernix_monitor::tsdb::SeriesKey;
use hypernix_monitor::{Config, Detector};
use serde::Serialize;

use super::metrics::{Def, Sample};

/// The detector used when `monitoring.ai.detectors` is empty.
pub const DEFAULT_DETECTOR: &str = "default";

/// The metrics the default detector watches.
const DEFAULT_METRICS: &[&str] = &[
    "hypernix_unit_cpu_usage_ratio",
    "hypernix_unit_resident_memory_bytes",
    "hypernix_host_cpu_usage_ratio",
    "hypernix_host_memory_used_bytes",
];

/// A point a detector found anomalous (its first point of an anomaly).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Anomaly {
    /// The detector.
    pub detector: String,
    /// The series, as `name{labels}`.
    pub series: String,
    /// The metric name.
    pub metric: String,
    /// The unit the series belongs to.
    pub unit: Option<String>,
    /// The value (a per-second rate for counters).
    pub value: f64,
    /// The anomaly score in `[0, 1]`.
    pub score: f64,
    /// When, in ms since the Unix epoch.
    pub at_ms: i64,
}

struct Watch {
    detector: Detector,
    gate: Gate,
}

/// The detectors' state across collections.
#[derive(Default)]
pub struct Detection {
    settings: BTreeMap<String, DetectorSettings>,
    cooldown_ms: i64,
    watches: HashMap<(String, SeriesKey), Watch>,
    counters: HashMap<SeriesKey, (i64, f64)>,
}

impl Detection {
    /// Takes new settings; detectors whose settings changed start learning again.
    pub fn configure(&mut self, monitoring: &Monitoring) {
        let mut settings = monitoring.ai.detectors.clone();
        if settings.is_empty() {
            settings.insert(
                DEFAULT_DETECTOR.into(),
                DetectorSettings {
                    metrics: DEFAULT_METRICS.iter().map(|m| m.to_string()).collect(),
                    ..DetectorSettings::default()
                },
            );
        }
        if !monitoring.ai.enable {
            settings.clear();
        }
        let cooldown_ms = monitoring.ai.actions.alert.cooldown.std().as_millis() as i64;
        if cooldown_ms != self.cooldown_ms {
            // Each gate holds the cooldown it was made with.
            self.watches.clear();
        }
        self.watches
            .retain(|(name, _), _| settings.get(name) == self.settings.get(name));
        self.settings = settings;
        self.cooldown_ms = cooldown_ms;
    }

    /// Series watched now.
    pub fn series(&self) -> usize {
        self.watches.len()
    }

    /// Drops the state of a unit's series (its VM restarted: its history no longer
    /// describes it).
    pub fn forget_unit(&mut self, unit: &str) {
        let of_unit = |k: &SeriesKey| k.labels.get("unit").map(String::as_str) == Some(unit);
        self.watches.retain(|(_, k), _| !of_unit(k));
        self.counters.retain(|k, _| !of_unit(k));
    }

    /// Scores one collection at `at_ms`, skipping the series of units in `settling`;
    /// returns the anomalies and the alerts that fired.
    pub fn observe(
        &mut self,
        at_ms: i64,
        samples: &[Sample],
        settling: &BTreeSet<String>,
    ) -> (Vec<Anomaly>, Vec<Anomaly>) {
        let (mut anomalies, mut alerts) = (Vec::new(), Vec::new());
        for s in samples {
            let key = s.key();
            let unit = s.labels.get("unit").cloned();
            if unit.as_ref().is_some_and(|u| settling.contains(u)) {
                continue;
            }
            let Some(value) = self.value(s.def, &key, at_ms, s.value) else {
                continue;
            };
            for (name, settings) in &self.settings {
                if !settings
                    .metrics
                    .iter()
                    .any(|g| super::metrics::glob(g, s.def.name))
                {
                    continue;
                }
                let watch = self
                    .watches
                    .entry((name.clone(), key.clone()))
                    .or_insert_with(|| Watch {
                        detector: Detector::new(config(settings, s.def)),
                        gate: Gate::new(settings.persistence, self.cooldown_ms),
                    });
                let score = watch.detector.step(value);
                let raw = watch.detector.last_raw();
                let found = |score| Anomaly {
                    detector: name.clone(),
                    series: key.to_string(),
                    metric: s.def.name.to_string(),
                    unit: unit.clone(),
                    value,
                    score,
                    at_ms,
                };
                if score > 0.0 && watch.detector.is_anomaly(score) {
                    anomalies.push(found(score));
                }
                if watch.gate.observe(at_ms, watch.detector.is_anomaly(raw)) {
                    alerts.push(found(raw));
                }
            }
        }
        (anomalies, alerts)
    }

    /// The value detectors see: gauges as they are, counters as a per-second rate
    /// (`None` for a counter's first sample or after it went backwards).
    fn value(&mut self, def: &Def, key: &SeriesKey, at_ms: i64, value: f64) -> Option<f64> {
        if def.kind == MetricType::Gauge {
            return Some(value);
        }
        let previous = self.counters.insert(key.clone(), (at_ms, value))?;
        let dt = (at_ms - previous.0) as f64 / 1000.0;
        (dt > 0.0 && value >= previous.1).then(|| (value - previous.1) / dt)
    }
}

/// The detector configuration of `settings` for a series of `def`.
fn config(settings: &DetectorSettings, def: &Def) -> Config {
    let mix = match settings.algorithm {
        DetectorAlgorithm::Ewma => 1.0,
        _ => Config::default().mix,
    };
    Config {
        sensitivity: settings.sensitivity,
        learning: settings.learning,
        mix,
        resolution: def.resolution,
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::metrics::{UNIT_CPU_SECONDS, UNIT_CPU_USAGE};
    use hypernix_config::Duration;

    fn monitoring(persistence: u32, learning: u32) -> Monitoring {
        let mut m = Monitoring::default();
        m.ai.detectors.insert(
            "cpu".into(),
            DetectorSettings {
                metrics: vec!["hypernix_unit_cpu_*".into()],
                persistence,
                learning,
                ..DetectorSettings::default()
            },
        );
        m.ai.actions.alert.cooldown = Duration::secs(60);
        m
    }

    fn idle(t: i64) -> f64 {
        0.02 + 0.01 * ((t * 7919 % 13) as f64 / 13.0)
    }

    #[test]
    fn a_burner_fires_one_alert_after_persistence_and_noise_none() {
        let mut d = Detection::default();
        d.configure(&monitoring(3, 30));
        let none = BTreeSet::new();
        let mut alerts = Vec::new();
        for t in 0..200 {
            let v = if t >= 120 {
                0.98 + idle(t) / 10.0
            } else {
                idle(t)
            };
            let s = [
                Sample::new(&UNIT_CPU_USAGE, &[("unit", "hot")], v),
                Sample::new(&UNIT_CPU_USAGE, &[("unit", "cold")], idle(t + 5)),
            ];
            alerts.extend(d.observe(t * 1000, &s, &none).1);
        }
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0].unit.as_deref(), Some("hot"));
        assert_eq!(alerts[0].at_ms, 122_000, "the third anomalous point");
    }

    #[test]
    fn counters_are_rates_and_settling_units_are_skipped() {
        let mut d = Detection::default();
        d.configure(&monitoring(1, 0));
        let settling = BTreeSet::from(["a".to_string()]);
        let s = |v| [Sample::new(&UNIT_CPU_SECONDS, &[("unit", "a")], v)];
        assert!(d.observe(0, &s(1.0), &settling).0.is_empty());
        assert_eq!(d.series(), 0);
        d.observe(0, &s(1.0), &BTreeSet::new());
        d.observe(1000, &s(2.0), &BTreeSet::new());
        assert_eq!(d.series(), 1);
        d.forget_unit("a");
        assert_eq!(d.series(), 0);
    }

    #[test]
    fn disabled_ai_watches_nothing_and_default_detector_otherwise() {
        let mut d = Detection::default();
        let mut m = Monitoring::default();
        d.configure(&m);
        assert!(d.settings.contains_key(DEFAULT_DETECTOR));
        m.ai.enable = false;
        d.configure(&m);
        assert!(d.settings.is_empty());
    }
}
