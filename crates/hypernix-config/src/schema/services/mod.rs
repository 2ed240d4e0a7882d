//! `hypervisor.api`, `events`, `monitoring` and `migration`: the daemon's services.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::{Duration, Size};

#[cfg(test)]
mod tests;

/// `hypervisor.api`: the GraphQL API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Api {
    /// Address the API listens on, such as `"127.0.0.1:7878"`.
    pub listen: String,
    /// The GraphiQL page is served.
    pub graphiql: bool,
    /// Bounds on requests.
    pub limits: ApiLimits,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: "127.0.0.1:7878".into(),
            graphiql: true,
            limits: ApiLimits::default(),
        }
    }
}

impl Api {
    /// The listen address, when it is valid.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

/// `api.limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiLimits {
    /// Deepest query nesting.
    pub depth: u32,
    /// Highest query complexity.
    pub complexity: u32,
    /// Largest request body.
    pub body_size: Size,
    /// Most subscriptions open at once on one WebSocket connection.
    pub subscriptions_per_connection: u32,
    /// Most mutations per second, over all clients.
    pub mutations_per_second: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            depth: 12,
            complexity: 2000,
            body_size: Size::mib(1),
            subscriptions_per_connection: 100,
            mutations_per_second: 50,
        }
    }
}

/// `hypervisor.events`: the event bus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Events {
    /// Bus implementation.
    pub bus: Bus,
    /// NATS settings, for `bus = "nats"`.
    pub nats: Nats,
}

/// An event bus implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bus {
    /// In the daemon.
    #[default]
    Embedded,
    /// NATS JetStream.
    Nats,
}

/// `events.nats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Nats {
    /// Server URL.
    pub url: String,
    /// JetStream stream name.
    pub stream: String,
    /// Age after which events are dropped.
    pub max_age: Duration,
}

impl Default for Nats {
    fn default() -> Self {
        Nats {
            url: "nats://127.0.0.1:4222".into(),
            stream: "HYPERNIX".into(),
            max_age: Duration::secs(24 * 3600),
        }
    }
}

/// `hypervisor.monitoring`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Monitoring {
    /// How often metrics are collected.
    pub interval: Duration,
    /// Anomaly detection and forecasting.
    pub ai: MonitoringAi,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            interval: Duration::secs(10),
            ai: MonitoringAi::default(),
        }
    }
}

/// `monitoring.ai`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MonitoringAi {
    /// Detection and forecasting run.
    pub enable: bool,
    /// Anomaly detectors.
    pub detectors: BTreeMap<String, Detector>,
    /// Forecasts.
    pub prediction: Prediction,
    /// What happens on an anomaly.
    pub actions: Actions,
}

impl Default for MonitoringAi {
    fn default() -> Self {
        MonitoringAi {
            enable: true,
            detectors: BTreeMap::new(),
            prediction: Prediction::default(),
            actions: Actions::default(),
        }
    }
}

/// `monitoring.ai.detectors.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Detector {
    /// Metric names or globs watched, such as `"unit_cpu_*"`.
    pub metrics: Vec<String>,
    /// Detection algorithm.
    pub algorithm: DetectorAlgorithm,
    /// Between 0 (only glaring anomalies) and 1 (every oddity).
    pub sensitivity: f64,
    /// Consecutive anomalous samples before an anomaly is raised.
    pub persistence: u32,
    /// Samples a new series only learns from before it is scored.
    pub learning: u32,
}

impl Default for Detector {
    fn default() -> Self {
        Detector {
            metrics: Vec::new(),
            algorithm: DetectorAlgorithm::default(),
            sensitivity: 0.5,
            persistence: 3,
            learning: 150,
        }
    }
}

/// An anomaly detection algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorAlgorithm {
    /// Context novelty and deviation mixed (the detector benchmarked on NAB).
    #[default]
    Ensemble,
    /// Distance from the median in median absolute deviations (not implemented yet).
    RobustZscore,
    /// Distance from an exponentially weighted moving average.
    Ewma,
    /// Spectral residual saliency (not implemented yet).
    SpectralResidual,
    /// Isolation forest (not implemented yet).
    IsolationForest,
}

impl DetectorAlgorithm {
    /// The algorithm's name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorAlgorithm::Ensemble => "ensemble",
            DetectorAlgorithm::RobustZscore => "robust-zscore",
            DetectorAlgorithm::Ewma => "ewma",
            DetectorAlgorithm::SpectralResidual => "spectral-residual",
            DetectorAlgorithm::IsolationForest => "isolation-forest",
        }
    }

    /// Whether the daemon can run it.
    pub fn implemented(self) -> bool {
        matches!(self, DetectorAlgorithm::Ensemble | DetectorAlgorithm::Ewma)
    }
}

/// `monitoring.ai.prediction`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Prediction {
    /// Capacity forecasts.
    pub capacity: CapacityPrediction,
}

/// `monitoring.ai.prediction.capacity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CapacityPrediction {
    /// How far ahead capacity is forecast.
    pub horizons: Vec<Duration>,
}

impl Default for CapacityPrediction {
    fn default() -> Self {
        const HOUR: u64 = 3600;
        CapacityPrediction {
            horizons: [HOUR, 6 * HOUR, 24 * HOUR, 7 * 24 * HOUR, 30 * 24 * HOUR]
                .into_iter()
                .map(Duration::secs)
                .collect(),
        }
    }
}

/// `monitoring.ai.actions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Actions {
    /// Alerts.
    pub alert: AlertAction,
}

/// `monitoring.ai.actions.alert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AlertAction {
    /// Least time between two alerts of one detector.
    pub cooldown: Duration,
}

impl Default for AlertAction {
    fn default() -> Self {
        AlertAction {
            cooldown: Duration::secs(300),
        }
    }
}

/// `hypervisor.migration`: live migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Migration {
    /// Bandwidth cap, such as `"1Gbps"` or `"100MB/s"` (none: unlimited).
    pub bandwidth: Option<String>,
    /// Longest pause of the guest at switch-over.
    pub downtime_limit: Duration,
    /// The guest is slowed down when memory changes faster than it is sent.
    pub auto_converge: bool,
    /// Compression of the migration stream.
    pub compression: MigrationCompression,
}

impl Default for Migration {
    fn default() -> Self {
        Migration {
            bandwidth: None,
            downtime_limit: Duration::millis(300),
            auto_converge: true,
            compression: MigrationCompression::default(),
        }
    }
}

/// Compression of the migration stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationCompression {
    /// None.
    #[default]
    None,
    /// Zstandard.
    Zstd,
}

impl Api {
    /// Checks the listen address and the limits.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("api");
        if self.listen_addr().is_none() {
            problems.at(
                at.join("listen"),
                format!(
                    "`{}` is not an address and port; use one such as \"127.0.0.1:7878\" or \
                     \"[::1]:7878\"",
                    self.listen
                ),
            );
        }
        let limits = at.join("limits");
        for (name, value) in [
            ("depth", self.limits.depth),
            ("complexity", self.limits.complexity),
            (
                "subscriptionsPerConnection",
                self.limits.subscriptions_per_connection,
            ),
            ("mutationsPerSecond", self.limits.mutations_per_second),
        ] {
            if value == 0 {
                problems.at(
                    limits.join(name),
                    "is 0, so every query would be refused; use 1 or more",
                );
            }
        }
        if self.limits.body_size.bytes() == 0 {
            problems.at(
                limits.join("bodySize"),
                "must be larger than 0; use a size such as \"1Mi\"",
            );
        }
    }
}

impl Events {
    /// Checks the NATS settings.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("events").join("nats");
        let nats = &self.nats;
        let host = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .find_map(|scheme| nats.url.strip_prefix(scheme));
        if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            problems.at(
                at.join("url"),
                format!(
                    "`{}` is not a NATS URL; use one such as \"nats://127.0.0.1:4222\"",
                    nats.url
                ),
            );
        }
        let bad = |c: char| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\');
        if nats.stream.is_empty() || nats.stream.contains(bad) {
            problems.at(
                at.join("stream"),
                format!(
                    "`{}` is not a JetStream stream name; use letters, digits, - and _, such as \
                     \"HYPERNIX\"",
                    nats.stream
                ),
            );
        }
        check_positive(nats.max_age, at.join("maxAge"), problems);
    }
}

impl Monitoring {
    /// Checks detectors, horizons and the alert cooldown.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        check_positive(
            self.interval,
            AttrPath::root().join("monitoring").join("interval"),
            problems,
        );
        let at = AttrPath::root().join("monitoring").join("ai");
        for (name, detector) in &self.ai.detectors {
            let path = at.join("detectors").join(name);
            if detector.metrics.is_empty() {
                problems.at(
                    path.join("metrics"),
                    "is empty; list the metrics the detector watches, such as [\"unit_cpu_*\"]",
                );
            }
            for (i, metric) in detector.metrics.iter().enumerate() {
                if metric.trim().is_empty() {
                    problems.at(
                        path.join("metrics").join(index(i)),
                        "is empty; give a metric name or glob",
                    );
                }
            }
            if !(0.0..=1.0).contains(&detector.sensitivity) {
                problems.at(
                    path.join("sensitivity"),
                    format!(
                        "{} is out of range; use a number from 0 to 1",
                        detector.sensitivity
                    ),
                );
            }
            if !detector.algorithm.implemented() {
                problems.at(
                    path.join("algorithm"),
                    format!(
                        "`{}` has no implementation yet; use \"ensemble\" (context novelty and \
                         deviation, the detector measured on NAB) or \"ewma\"",
                        detector.algorithm.as_str()
                    ),
                );
            }
            if detector.persistence == 0 {
                problems.at(
                    path.join("persistence"),
                    "is 0; use 1 or more anomalous samples in a row",
                );
            }
        }
        let horizons = at.join("prediction").join("capacity").join("horizons");
        for (i, horizon) in self.ai.prediction.capacity.horizons.iter().enumerate() {
            check_positive(*horizon, horizons.join(index(i)), problems);
        }
    }
}

impl Migration {
    /// Checks the bandwidth and the downtime limit.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("migration");
        if let Some(bandwidth) = self.bandwidth.as_deref().filter(|b| !is_rate(b)) {
            problems.at(
                at.join("bandwidth"),
                format!("`{bandwidth}` is not a rate; use one such as \"1Gbps\" or \"100MB/s\""),
            );
        }
        check_positive(self.downtime_limit, at.join("downtimeLimit"), problems);
    }
}

/// True for a number followed by a unit, such as `"1Gbps"`, `"2.5Gbit"` or `"100MB/s"`.
fn is_rate(s: &str) -> bool {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim_start();
    let unit = unit.strip_suffix("/s").unwrap_or(unit);
    number.parse::<f64>().is_ok_and(|n| n > 0.0)
        && !unit.is_empty()
        && unit.chars().all(|c| c.is_ascii_alphabetic())
}

/// Reports a zero duration at `path`.
fn check_positive(duration: Duration, path: AttrPath, problems: &mut Problems) {
    if duration.std().is_zero() {
        problems.at(path, "must be longer than 0; use a duration such as \"5m\"");
    }
}
