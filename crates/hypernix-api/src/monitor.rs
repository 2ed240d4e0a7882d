//! Monitoring: metric series, alerts and their likely causes, capacity forecasts, and
//! live anomalies and alerts.

use std::collections::BTreeMap;

use async_graphql::{Context, Json, Object, SimpleObject, Subscription};
use chrono::{DateTime, TimeZone, Utc};
use futures::{Stream, StreamExt};
use hypernix_daemon::monitor::Anomaly as DaemonAnomaly;

use crate::schema::{daemon, event_stream, gql, take_slot};
use crate::types::EventFilter;

/// One point of a metric series: a raw sample, or a bucket's aggregates.
#[derive(SimpleObject, Clone, Debug)]
pub struct MetricPoint {
    /// The sample's time, or the bucket's start.
    pub time: DateTime<Utc>,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// The mean.
    pub mean: f64,
    /// The latest sample.
    pub last: f64,
    /// Samples covered.
    pub count: u32,
}

/// A metric series and its points.
#[derive(SimpleObject, Clone, Debug)]
pub struct MetricSeries {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: Json<BTreeMap<String, String>>,
    /// `Raw`, `Minute`, `FiveMinutes` or `Hour`.
    pub resolution: String,
    /// The points, oldest first.
    pub points: Vec<MetricPoint>,
}

/// An alert: a detector saw `persistence` anomalous points in a row of one series.
#[derive(SimpleObject, Clone, Debug)]
pub struct Alert {
    /// The alert's id (its `monitor.alert` event's id).
    pub id: u64,
    /// When it fired.
    pub time: DateTime<Utc>,
    /// The detector.
    pub detector: String,
    /// The series, as `name{labels}`.
    pub series: String,
    /// The metric.
    pub metric: String,
    /// The unit, for a unit's series.
    pub unit: Option<String>,
    /// The value (a per-second rate for counters).
    pub value: f64,
    /// The anomaly score.
    pub score: f64,
}

impl Alert {
    fn from_event(e: &hypernix_events::Event) -> Alert {
        let p = &e.payload;
        let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
        Alert {
            id: e.id,
            time: e.time,
            detector: text("detector"),
            series: text("series"),
            metric: text("metric"),
            unit: p["unit"].as_str().map(str::to_string),
            value: p["value"].as_f64().unwrap_or(f64::NAN),
            score: p["score"].as_f64().unwrap_or(0.0),
        }
    }
}

/// A point a detector found anomalous.
#[derive(SimpleObject, Clone, Debug)]
pub struct Anomaly {
    /// The detector.
    pub detector: String,
    /// The series, as `name{labels}`.
    pub series: String,
    /// The metric.
    pub metric: String,
    /// The unit, for a unit's series.
    pub unit: Option<String>,
    /// The value.
    pub value: f64,
    /// The anomaly score.
    pub score: f64,
    /// When.
    pub time: DateTime<Utc>,
}

/// A candidate cause of an alert.
#[derive(SimpleObject, Clone, Debug)]
pub struct Cause {
    /// `unit` or `event`.
    pub kind: String,
    /// The unit, or the event as `kind#id`.
    pub name: String,
    /// Between 0 and 1; higher is likelier.
    pub score: f64,
    /// Why.
    pub explanation: String,
}

/// An alert and its candidate causes, likeliest first.
#[derive(SimpleObject, Clone, Debug)]
pub struct AlertExplanation {
    /// The alert.
    pub alert: Alert,
    /// Seconds before the alert that were looked at.
    pub window_secs: i64,
    /// The ranking.
    pub causes: Vec<Cause>,
}

/// A resource's forecast against its capacity.
#[derive(SimpleObject, Clone, Debug)]
pub struct CapacityForecast {
    /// `cpu`, `memory`, `filesystem` or `tier/NAME`.
    pub name: String,
    /// Use now.
    pub used: f64,
    /// Capacity.
    pub capacity: f64,
    /// Points of history behind the forecast.
    pub history_points: usize,
    /// How far ahead the forecast looked, in seconds.
    pub horizon_secs: u64,
    /// When use is forecast to reach capacity, within that horizon.
    pub crosses_at: Option<DateTime<Utc>>,
    /// Why there is no forecast, when there is none.
    pub note: Option<String>,
}

/// Capacity forecasts of this node.
#[derive(SimpleObject, Clone, Debug)]
pub struct CapacityReport {
    /// The horizon, in seconds.
    pub horizon_secs: u64,
    /// Each resource.
    pub resources: Vec<CapacityForecast>,
}

fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Monitoring queries.
#[derive(Default)]
pub struct MonitorQuery;

#[Object]
impl MonitorQuery {
    /// Series of metric `name` whose labels include `labels`, over the last `since`
    /// seconds, at the finest resolution giving at most `maxPoints` points each.
    async fn metrics(
        &self,
        ctx: &Context<'_>,
        name: String,
        labels: Option<Json<BTreeMap<String, String>>>,
        #[graphql(default = 3600)] since: i64,
        #[graphql(default = 500)] max_points: usize,
    ) -> async_graphql::Result<Vec<MetricSeries>> {
        let now = Utc::now().timestamp_millis();
        let labels = labels.map(|l| l.0).unwrap_or_default();
        let from = now - since.clamp(1, 10 * 365 * 86_400) * 1000;
        let series = daemon(ctx)?
            .metric_series(&name, &labels, from, now, max_points.min(10_000))
            .map_err(gql)?;
        Ok(series
            .into_iter()
            .map(|s| MetricSeries {
                name: s.key.name,
                labels: Json(s.key.labels),
                resolution: s.resolution,
                points: s
                    .points
                    .into_iter()
                    .map(|p| MetricPoint {
                        time: time(p.at_ms),
                        min: p.min,
                        max: p.max,
                        mean: p.mean,
                        last: p.last,
                        count: p.count,
                    })
                    .collect(),
            })
            .collect())
    }

    /// The latest alerts, newest first.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] limit: usize,
    ) -> async_graphql::Result<Vec<Alert>> {
        let alerts = daemon(ctx)?.alerts(limit.min(10_000)).await.map_err(gql)?;
        Ok(alerts.iter().map(Alert::from_event).collect())
    }

    /// Why alert `id` fired: the units of this host and the logged events ranked as
    /// its likely causes.
    async fn why_alert(
        &self,
        ctx: &Context<'_>,
        id: u64,
    ) -> async_graphql::Result<AlertExplanation> {
        let e = daemon(ctx)?.why(id).await.map_err(gql)?;
        Ok(AlertExplanation {
            alert: Alert::from_event(&e.alert),
            window_secs: e.window_secs,
            causes: e
                .causes
                .into_iter()
                .map(|c| Cause {
                    kind: c.kind,
                    name: c.name,
                    score: c.score,
                    explanation: c.explanation,
                })
                .collect(),
        })
    }

    /// CPU, memory, filesystem and storage tier use forecast against capacity.
    async fn capacity(&self, ctx: &Context<'_>) -> async_graphql::Result<CapacityReport> {
        let r = daemon(ctx)?.capacity().await;
        Ok(CapacityReport {
            horizon_secs: r.horizon_secs,
            resources: r
                .resources
                .into_iter()
                .map(|r| CapacityForecast {
                    name: r.name,
                    used: r.used,
                    capacity: r.capacity,
                    history_points: r.history_points,
                    horizon_secs: r.horizon_secs,
                    crosses_at: r.crosses_at_ms.map(time),
                    note: r.note,
                })
                .collect(),
        })
    }
}

/// Live anomalies and alerts.
#[derive(Default)]
pub struct MonitorSubscription;

#[Subscription]
impl MonitorSubscription {
    /// Each anomaly the detectors find (of `unit` only, when given); not stored.
    async fn anomalies(
        &self,
        ctx: &Context<'_>,
        unit: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = Anomaly>> {
        let slot = take_slot(ctx)?;
        let rx = daemon(ctx)?.monitor().anomalies();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(a) => return Some((a, rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        });
        Ok(stream.filter_map(move |a: DaemonAnomaly| {
            let _held = &slot;
            let keep = unit.is_none() || a.unit == unit;
            futures::future::ready(keep.then(|| Anomaly {
                detector: a.detector,
                series: a.series,
                metric: a.metric,
                unit: a.unit,
                value: a.value,
                score: a.score,
                time: time(a.at_ms),
            }))
        }))
    }

    /// Each alert (of `unit` only, when given); with `after`, first every alert after
    /// that event id.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        unit: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Alert>>> {
        let filter = EventFilter {
            kinds: Some(vec!["monitor.alert".into()]),
            subject: unit.map(|u| format!("unit/{u}")),
        };
        Ok(event_stream(ctx, after, filter)
            .await?
            .map(|e| e.map(|e| Alert::from_event(&e))))
    }
}
