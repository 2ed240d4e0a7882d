//! Monitoring: every `monitoring.interval` the daemon collects host, unit, storage and
//! backup metrics, stores them in its time-series store (`STATE/metrics.redb`), scores
//! them with the anomaly detectors of `monitoring.ai` and publishes alerts.
//!
//! A collection, in steps:
//! 1. collect (see [`collect`]); the latest samples are what `/metrics` serves;
//! 2. append them to the store; once a minute, roll up and apply retention;
//! 3. score each watched series (units whose VM is not ready yet, or restarted, are
//!    skipped or start over); anomalies go to live subscribers;
//! 4. an alert (`persistence` anomalous points in a row, then `cooldown`) is published as
//!    event `monitor.alert` (subject `unit/NAME`, or `host`); its id is the alert's id;
//! 5. once a minute (or every 15 collections, when sooner), capacity forecasts: a resource forecast to cross its capacity within
//!    the shortest `prediction.capacity.horizons` publishes `monitor.predicted`.

mod collect;
mod detect;
mod explain;
mod metrics;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use hypernix_config::schema::services::Monitoring;
use hypernix_events::NewEvent;
use hypernix_monitor::exposition::{self, Family};
use hypernix_monitor::tsdb::{Retention, Tsdb};
use serde_json::json;
use tokio::sync::{broadcast, watch};

pub use detect::Anomaly;
pub use explain::{CapacityReport, Resource};
use metrics::Sample;

use crate::Daemon;
use crate::layout::Layout;

/// How often, at most, the store is rolled up and capacity is forecast.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// ... and at least every this many collections.
const HOUSEKEEPING_COLLECTIONS: u32 = 15;

/// The daemon's monitoring: the store, the latest samples and the live anomaly feed.
pub struct Monitor {
    tsdb: Result<Arc<Tsdb>, String>,
    latest: Mutex<Vec<Sample>>,
    settings: watch::Sender<Monitoring>,
    anomalies: broadcast::Sender<Anomaly>,
}

impl Monitor {
    /// Opens the store under the state directory (a store that cannot be opened is
    /// reported by every query; collection and detection go on without it).
    pub fn open(layout: &Layout, settings: Monitoring) -> Monitor {
        let path = layout.root().join("metrics.redb");
        let tsdb = Tsdb::open(&path, Retention::default())
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Err(e) = &tsdb {
            tracing::error!("{e}");
        }
        Monitor {
            tsdb,
            latest: Mutex::default(),
            settings: watch::channel(settings).0,
            anomalies: broadcast::channel(256).0,
        }
    }

    /// Takes the `monitoring` settings of a newly applied configuration.
    pub fn configure(&self, settings: &Monitoring) {
        self.settings.send_if_modified(|s| {
            let changed = s != settings;
            *s = settings.clone();
            changed
        });
    }

    /// The store.
    pub fn tsdb(&self) -> Result<&Arc<Tsdb>, String> {
        self.tsdb.as_ref().map_err(Clone::clone)
    }

    /// The latest collection in the Prometheus text format.
    pub fn exposition(&self) -> String {
        let latest = self.latest.lock().expect("latest lock");
        let mut families: Vec<Family> = Vec::new();
        for def in metrics::ALL {
            let samples: Vec<_> = latest
                .iter()
                .filter(|s| s.def.name == def.name)
                .map(|s| (s.labels.clone(), s.value))
                .collect();
            if !samples.is_empty() {
                families.push(Family {
                    name: def.name.into(),
                    help: def.help.into(),
                    kind: def.kind,
                    samples,
                });
            }
        }
        exposition::render(&families)
    }

    /// Anomalies as the detectors find them.
    pub fn anomalies(&self) -> broadcast::Receiver<Anomaly> {
        self.anomalies.subscribe()
    }

    /// Starts the collection loop; it ends when the daemon is dropped or stopped.
    pub fn spawn(daemon: Weak<Daemon>) {
        tokio::spawn(async move {
            let Some(d) = daemon.upgrade() else { return };
            let mut settings = d.monitor().settings.subscribe();
            let mut backups = d.subscribe(d.last_event_id().await.ok().flatten());
            let stopped = d.stopped();
            drop(d);
            tokio::pin!(stopped);
            let mut run = Run::default();
            let mut interval = settings.borrow_and_update().interval.std();
            run.detection.configure(&settings.borrow());
            let mut ticker = ticker(interval);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    changed = settings.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let now = settings.borrow_and_update().clone();
                        run.detection.configure(&now);
                        if now.interval.std() != interval {
                            interval = now.interval.std();
                            ticker = self::ticker(interval);
                        }
                        continue;
                    }
                    _ = ticker.tick() => {}
                }
                let Some(d) = daemon.upgrade() else { return };
                while let Some(Some(Ok(e))) = backups.next().now_or_never() {
                    run.collector
                        .backup_event(&e.kind, &e.payload, e.time.timestamp() as f64);
                }
                run.collect(&d, interval).await;
            }
        });
    }
}

/// Ticks every `period`, the first tick one period from now; late ticks are not
/// made up for.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// The collection loop's own state.
#[derive(Default)]
struct Run {
    collector: collect::Collector,
    detection: detect::Detection,
    /// Each unit's QEMU pid when last seen ready.
    pids: HashMap<String, u32>,
    alerts: BTreeMap<String, u64>,
    last_housekeeping: Option<tokio::time::Instant>,
    predicted: HashMap<String, i64>,
}

impl Run {
    async fn collect(&mut self, d: &Arc<Daemon>, interval: Duration) {
        let at_ms = chrono::Utc::now().timestamp_millis();
        let monitor = d.monitor();
        let mut samples = self.collector.host(d.layout().root());
        let mut settling = BTreeSet::new();
        for unit in d.units() {
            let pid = unit.observed.pid;
            if !unit.observed.ready || pid.is_none() {
                settling.insert(unit.name.clone());
            }
            if pid.is_some() && self.pids.get(&unit.name) != pid.as_ref() {
                self.detection.forget_unit(&unit.name);
                settling.insert(unit.name.clone());
                if unit.observed.ready
                    && let Some(pid) = pid
                {
                    self.pids.insert(unit.name.clone(), pid);
                }
            }
            let vm = match pid {
                Some(_) => d.unit_vm(&unit.name).await,
                None => None,
            };
            samples.extend(self.collector.unit(&unit, vm).await);
        }
        samples.extend(
            self.collector
                .tiers(&d.storage().tiers().unwrap_or_default()),
        );
        samples.extend(self.collector.backups());
        samples.push(Sample::new(
            &metrics::SERIES,
            &[],
            self.detection.series() as f64,
        ));
        for (detector, n) in &self.alerts {
            samples.push(Sample::new(
                &metrics::ALERTS,
                &[("detector", detector)],
                *n as f64,
            ));
        }
        if let Ok(tsdb) = monitor.tsdb() {
            let points: Vec<_> = samples.iter().map(|s| (s.key(), s.value)).collect();
            if let Err(e) = tsdb.append(at_ms, &points) {
                tracing::error!("{e}");
            }
        }
        let (anomalies, alerts) = self.detection.observe(at_ms, &samples, &settling);
        tracing::debug!(
            samples = samples.len(),
            anomalies = anomalies.len(),
            alerts = alerts.len(),
            "metrics collected"
        );
        *monitor.latest.lock().expect("latest lock") = samples;
        for a in anomalies {
            let _ = monitor.anomalies.send(a);
        }
        for a in alerts {
            *self.alerts.entry(a.detector.clone()).or_default() += 1;
            let subject = a
                .unit
                .as_ref()
                .map_or("host".into(), |u| format!("unit/{u}"));
            let payload = serde_json::to_value(&a).unwrap_or_default();
            let _ = d
                .publish(NewEvent::new("monitor.alert", subject).with_payload(payload))
                .await;
        }
        let due = self
            .last_housekeeping
            .is_none_or(|t| t.elapsed() >= HOUSEKEEPING.min(interval * HOUSEKEEPING_COLLECTIONS));
        if due {
            self.last_housekeeping = Some(tokio::time::Instant::now());
            self.housekeeping(d, at_ms).await;
        }
    }

    /// Rolls the store up and publishes capacity predictions.
    async fn housekeeping(&mut self, d: &Arc<Daemon>, now_ms: i64) {
        let monitor = d.monitor();
        if let Ok(tsdb) = monitor.tsdb() {
            let store = tsdb.clone();
            let compacted = tokio::task::spawn_blocking(move || store.compact(now_ms)).await;
            if let Ok(Err(e)) = compacted {
                tracing::error!("{e}");
            }
        }
        let settings = monitor.settings.borrow().clone();
        let Some(horizon) = settings
            .ai
            .prediction
            .capacity
            .horizons
            .iter()
            .min()
            .copied()
        else {
            return;
        };
        if !settings.ai.enable {
            return;
        }
        let cooldown = settings.ai.actions.alert.cooldown.std().as_millis() as i64;
        let report = d.capacity().await;
        for r in report.resources {
            let Some(at_ms) = r.crosses_at_ms else {
                continue;
            };
            if at_ms - now_ms > horizon.std().as_millis() as i64 {
                continue;
            }
            if self
                .predicted
                .get(&r.name)
                .is_some_and(|&last| now_ms - last < cooldown)
            {
                continue;
            }
            self.predicted.insert(r.name.clone(), now_ms);
            let payload = json!({
                "resource": r.name, "used": r.used, "capacity": r.capacity,
                "crossesAtMs": at_ms, "horizon": horizon.to_string(),
            });
            let _ = d
                .publish(NewEvent::new("monitor.predicted", "host").with_payload(payload))
                .await;
        }
    }
}
