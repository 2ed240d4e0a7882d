//! Questions asked of the collected data: metric series, alerts, why an alert fired
//! (root-cause ranking over the units of this host and the event log) and capacity
//! forecasts.

use std::collections::BTreeMap;

use hypernix_events::Event;
use hypernix_monitor::cause::{self, Candidate, Cause, Incident, Series};
use hypernix_monitor::exposition::MetricType;
use hypernix_monitor::tsdb::{Point, Resolution, SeriesKey, Tsdb};
use serde::Serialize;
use serde_json::Value;

use super::metrics::{self, Def};
use crate::Daemon;
use crate::error::DaemonError;

/// Events read back from an alert when looking for causes.
const LOOKBACK_EVENTS: u64 = 2000;

/// The unit metrics compared when ranking causes.
const RANKED: &[&Def] = &[
    &metrics::UNIT_CPU_USAGE,
    &metrics::UNIT_RSS,
    &metrics::UNIT_IO_READ,
    &metrics::UNIT_IO_WRITE,
    &metrics::UNIT_BLOCK_READ,
    &metrics::UNIT_BLOCK_WRITE,
];

/// Points of one series.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesPoints {
    /// The series.
    pub key: SeriesKey,
    /// The resolution of the points.
    pub resolution: String,
    /// The points, oldest first.
    pub points: Vec<Point>,
}

/// Why an alert fired.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The alert event.
    pub alert: Event,
    /// The window looked at, in seconds before the alert.
    pub window_secs: i64,
    /// Candidate causes, likeliest first.
    pub causes: Vec<Cause>,
}

/// One resource's capacity forecast.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `cpu`, `memory`, `filesystem` or `tier/NAME`.
    pub name: String,
    /// Use now, in the metric's unit.
    pub used: f64,
    /// Capacity, in the same unit.
    pub capacity: f64,
    /// Points of history the forecast rests on.
    pub history_points: usize,
    /// How far ahead the forecast looked, in seconds (the longest horizon, or less when
    /// the history is too short to look that far).
    pub horizon_secs: u64,
    /// When the forecast crosses capacity within that horizon (ms since the epoch).
    pub crosses_at_ms: Option<i64>,
    /// Why there is no forecast, when there is none.
    pub note: Option<String>,
}

/// Capacity forecasts of this node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityReport {
    /// The longest horizon looked at, in seconds.
    pub horizon_secs: u64,
    /// Each resource.
    pub resources: Vec<Resource>,
}

fn tsdb(d: &Daemon) -> Result<&Tsdb, DaemonError> {
    d.monitor()
        .tsdb()
        .map(|t| &**t)
        .map_err(DaemonError::Monitor)
}

fn store_err(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Monitor(e.to_string())
}

/// `(time, value)` of points; counters become per-second rates.
fn values(def: &Def, points: &[Point]) -> Vec<(i64, f64)> {
    let raw = points.iter().map(|p| (p.at_ms, p.mean));
    if def.kind == MetricType::Gauge {
        return raw.collect();
    }
    let raw: Vec<_> = raw.collect();
    raw.windows(2)
        .filter(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1)
        .map(|w| {
            (
                w[1].0,
                (w[1].1 - w[0].1) * 1000.0 / (w[1].0 - w[0].0) as f64,
            )
        })
        .collect()
}

impl Daemon {
    /// Series of metric `name` whose labels include `labels`, over `[from_ms, to_ms]`, at
    /// the finest resolution giving at most `max_points` points.
    pub fn metric_series(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Result<Vec<SeriesPoints>, DaemonError> {
        let tsdb = tsdb(self)?;
        let resolution = tsdb.pick(from_ms, to_ms, max_points.max(1));
        let keys = tsdb.series().map_err(store_err)?;
        keys.into_iter()
            .filter(|k| k.name == name && labels.iter().all(|(l, v)| k.labels.get(l) == Some(v)))
            .map(|key| {
                let points = tsdb
                    .query(&key, from_ms, to_ms, resolution)
                    .map_err(store_err)?;
                Ok(SeriesPoints {
                    key,
                    resolution: format!("{resolution:?}"),
                    points,
                })
            })
            .collect()
    }

    /// The latest `limit` alerts (`monitor.alert` events), newest first.
    pub async fn alerts(&self, limit: usize) -> Result<Vec<Event>, DaemonError> {
        let last = self.last_event_id().await?.unwrap_or(0);
        let mut out = Vec::new();
        let mut before = last + 1;
        while before > 1 && out.len() < limit {
            let from = before.saturating_sub(1000).max(1);
            let batch = self
                .events(Some(from - 1), (before - from) as usize)
                .await?;
            out.extend(
                batch
                    .into_iter()
                    .rev()
                    .filter(|e| e.kind == "monitor.alert"),
            );
            before = from;
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Ranks the likely causes of alert `id` (the id of its `monitor.alert` event).
    pub async fn why(&self, id: u64) -> Result<Explanation, DaemonError> {
        let not_alert = || {
            DaemonError::Monitor(format!(
                "alert {id}: no such alert; `hypernix monitor alerts` lists them"
            ))
        };
        let alert = self
            .events(Some(id.saturating_sub(1)), 1)
            .await?
            .into_iter()
            .find(|e| e.id == id && e.kind == "monitor.alert")
            .ok_or_else(not_alert)?;
        let p = &alert.payload;
        let at_ms = p
            .get("atMs")
            .and_then(Value::as_i64)
            .ok_or_else(not_alert)?;
        let metric = p.get("metric").and_then(Value::as_str).unwrap_or_default();
        let interval = self.monitor().settings.borrow().interval.std().as_millis() as i64;
        let window_ms = (120 * interval).clamp(120_000, 1_800_000);
        let incident = Incident {
            unit: p.get("unit").and_then(Value::as_str).map(str::to_string),
            metric: metric.to_string(),
            at_ms,
            window_ms,
        };
        let from = at_ms - window_ms;
        let logged: Vec<Event> = self
            .events(
                Some(id.saturating_sub(LOOKBACK_EVENTS)),
                LOOKBACK_EVENTS as usize,
            )
            .await?
            .into_iter()
            .filter(|e| e.id < id)
            .collect();
        // A unit's samples before its guest was last ready describe its boot, not how it
        // runs: each unit's series starts at its last `unit.ready`.
        let mut ready: BTreeMap<&str, i64> = BTreeMap::new();
        for e in logged.iter().filter(|e| e.kind == "unit.ready") {
            if let Some(unit) = e.subject.strip_prefix("unit/") {
                ready.insert(unit, e.time.timestamp_millis());
            }
        }
        let tsdb = tsdb(self)?;
        let mut series = Vec::new();
        for key in tsdb.series().map_err(store_err)? {
            let Some(def) = RANKED.iter().copied().find(|d| d.name == key.name) else {
                continue;
            };
            let Some(unit) = key.labels.get("unit") else {
                continue;
            };
            let since = ready.get(unit.as_str()).map_or(from, |&t| t.max(from));
            let points = tsdb
                .query(&key, since, at_ms, Resolution::Raw)
                .map_err(store_err)?;
            series.push(Series {
                unit: Some(unit.clone()),
                metric: key.name.clone(),
                points: values(def, &points),
                resolution: def.resolution,
            });
        }
        let events: Vec<Candidate> = logged
            .into_iter()
            .filter(|e| !e.kind.starts_with("monitor."))
            .map(|e| Candidate {
                id: e.id,
                at_ms: e.time.timestamp_millis(),
                unit: e.subject.strip_prefix("unit/").map(str::to_string),
                kind: e.kind,
            })
            .collect();
        Ok(Explanation {
            causes: cause::rank(&incident, &series, &events),
            window_secs: window_ms / 1000,
            alert,
        })
    }

    /// Forecasts of CPU, memory, the state directory's filesystem and each storage tier
    /// against their capacity, over the longest `prediction.capacity.horizons`.
    pub async fn capacity(&self) -> CapacityReport {
        let horizon = self
            .monitor()
            .settings
            .borrow()
            .ai
            .prediction
            .capacity
            .horizons
            .iter()
            .max()
            .map_or(30 * 86_400, |h| h.std().as_secs());
        let now = chrono::Utc::now().timestamp_millis();
        let store = tsdb(self).ok();
        // The latest sample: the last of the hour buckets (recent ones are aggregated from
        // raw points on the fly).
        let latest = |name: &str, labels: &BTreeMap<String, String>| {
            let key = SeriesKey {
                name: name.to_string(),
                labels: labels.clone(),
            };
            let points = store?.query(&key, now - 3_600_000, now, Resolution::Hour);
            points.ok()?.last().map(|p| p.last)
        };
        let mut pairs: Vec<Watched> = vec![
            (
                "cpu".into(),
                &metrics::HOST_CPU_USAGE,
                BTreeMap::new(),
                Some(1.0),
            ),
            (
                "memory".into(),
                &metrics::HOST_MEMORY_USED,
                BTreeMap::new(),
                latest(metrics::HOST_MEMORY_TOTAL.name, &BTreeMap::new()),
            ),
        ];
        if let Some(keys) = store.and_then(|t| t.series().ok()) {
            for k in keys {
                if k.name == metrics::HOST_FS_USED.name {
                    // Full means nothing left for unprivileged users, as `df` counts.
                    let avail = latest(metrics::HOST_FS_AVAIL.name, &k.labels);
                    let used = latest(metrics::HOST_FS_USED.name, &k.labels);
                    let cap = avail.zip(used).map(|(a, u)| a + u);
                    pairs.push(("filesystem".into(), &metrics::HOST_FS_USED, k.labels, cap));
                } else if k.name == metrics::TIER_USED.name {
                    let cap = latest(metrics::TIER_CAPACITY.name, &k.labels);
                    let tier = k.labels.get("tier").cloned().unwrap_or_default();
                    pairs.push((format!("tier/{tier}"), &metrics::TIER_USED, k.labels, cap));
                }
            }
        }
        let resources = pairs
            .into_iter()
            .map(|(name, def, labels, capacity)| {
                self.forecast_resource(name, def, &labels, capacity, now, horizon)
            })
            .collect();
        CapacityReport {
            horizon_secs: horizon,
            resources,
        }
    }

    /// The coarsest history of a series with at least 100 points (or the finest there
    /// is), at most the last 2,000 points.
    fn history(
        &self,
        def: &Def,
        labels: &BTreeMap<String, String>,
        from: i64,
        to: i64,
    ) -> Vec<Point> {
        let Ok(tsdb) = tsdb(self) else {
            return Vec::new();
        };
        let key = SeriesKey {
            name: def.name.to_string(),
            labels: labels.clone(),
        };
        let mut best = Vec::new();
        for resolution in [
            Resolution::Hour,
            Resolution::FiveMinutes,
            Resolution::Minute,
            Resolution::Raw,
        ] {
            let points = tsdb.query(&key, from, to, resolution).unwrap_or_default();
            if points.len() >= 100 {
                best = points;
                break;
            }
            if points.len() > best.len() {
                best = points;
            }
        }
        let skip = best.len().saturating_sub(2000);
        best.split_off(skip)
    }

    fn forecast_resource(
        &self,
        name: String,
        def: &Def,
        labels: &BTreeMap<String, String>,
        capacity: Option<f64>,
        now: i64,
        horizon_secs: u64,
    ) -> Resource {
        let points = self.history(def, labels, now - 7 * 86_400_000, now);
        let history: Vec<(i64, f64)> = points.iter().map(|p| (p.at_ms, p.mean)).collect();
        let mut r = Resource {
            name,
            used: points.last().map_or(0.0, |p| p.last),
            capacity: capacity.unwrap_or(0.0),
            history_points: history.len(),
            horizon_secs: 0,
            crosses_at_ms: None,
            note: None,
        };
        let Some(capacity) = capacity.filter(|c| *c > 0.0) else {
            r.note = Some("capacity unknown".into());
            return r;
        };
        if history.len() < MIN_HISTORY {
            r.note = Some(format!(
                "{} points of history; a forecast needs {MIN_HISTORY}",
                history.len()
            ));
            return r;
        }
        let mut gaps: Vec<i64> = history.windows(2).map(|w| w[1].0 - w[0].0).collect();
        gaps.sort_unstable();
        let step = gaps[gaps.len() / 2].max(1);
        // A forecast looks at most MAX_STEPS of the history's spacing ahead.
        let horizon_ms = (horizon_secs as i64 * 1000).min(step * MAX_STEPS);
        match hypernix_monitor::capacity::crossing(&history, step, capacity, horizon_ms) {
            Ok(c) => {
                r.crosses_at_ms = c.map(|c| c.at_ms);
                r.horizon_secs = (horizon_ms / 1000) as u64;
            }
            Err(e) => r.note = Some(e.to_string()),
        }
        r
    }
}

/// A resource to forecast: its name, its use metric and labels, and its capacity.
type Watched = (String, &'static Def, BTreeMap<String, String>, Option<f64>);

/// Fewest points of history a capacity forecast uses.
const MIN_HISTORY: usize = 20;
/// Most steps ahead a capacity forecast goes.
const MAX_STEPS: i64 = 5000;
