//! `storage.fabric`: the heat map, data movement and cache layers.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::check_nonzero_size;
use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::{Cron, Duration, Size};

/// `storage.fabric`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Fabric {
    /// How data heat is measured.
    pub heat_map: HeatMap,
    /// How data moves between tiers.
    pub movement: Movement,
    /// Cache layers in front of the tiers.
    pub caching: Caching,
}

/// `storage.fabric.heatMap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HeatMap {
    /// The heat map is kept.
    pub enable: bool,
    /// Size of the regions heat is tracked for.
    pub granularity: Size,
    /// Windows that access counts are kept for.
    pub time_windows: Vec<Duration>,
    /// How heat ages.
    pub algorithm: HeatAlgorithm,
    /// Time for heat to halve.
    pub half_life: Duration,
}

impl Default for HeatMap {
    fn default() -> Self {
        HeatMap {
            enable: true,
            granularity: Size::mib(1),
            time_windows: [3_600, 86_400, 7 * 86_400, 30 * 86_400]
                .into_iter()
                .map(Duration::secs)
                .collect(),
            algorithm: HeatAlgorithm::default(),
            half_life: Duration::secs(3_600),
        }
    }
}

/// How heat ages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeatAlgorithm {
    /// Heat halves every half-life.
    #[default]
    ExponentialDecay,
    /// Only accesses inside the window count.
    SlidingWindow,
}

/// `storage.fabric.movement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Movement {
    /// Data moves between tiers.
    pub enable: bool,
    /// When data moves.
    pub engine: MovementEngine,
    /// Bandwidth that movement may use.
    pub bandwidth: MovementBandwidth,
    /// Windows for the scheduled engine.
    pub schedule: MovementSchedule,
}

impl Default for Movement {
    fn default() -> Self {
        Movement {
            enable: true,
            engine: MovementEngine::default(),
            bandwidth: MovementBandwidth::default(),
            schedule: MovementSchedule::default(),
        }
    }
}

/// When data moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MovementEngine {
    /// All the time, in the background.
    #[default]
    Continuous,
    /// In the schedule's windows.
    Scheduled,
    /// When asked to.
    Triggered,
}

/// `storage.fabric.movement.bandwidth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MovementBandwidth {
    /// Bandwidth cap, such as `"100MB/s"`.
    pub limit: Option<String>,
}

/// `storage.fabric.movement.schedule`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MovementSchedule {
    /// When promotions run.
    pub promotion_window: Option<Cron>,
    /// When demotions run.
    pub demotion_window: Option<Cron>,
}

/// `storage.fabric.caching`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Caching {
    /// Cache layers, checked in order.
    pub layers: Vec<CacheLayer>,
}

/// `storage.fabric.caching.layers[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheLayer {
    /// Layer name.
    pub name: String,
    /// Cache size.
    pub size: Size,
    /// Where the cache lives.
    pub location: CacheLocation,
    /// Eviction policy.
    #[serde(default)]
    pub policy: CachePolicy,
    /// When writes reach the tier below.
    #[serde(default)]
    pub write_policy: WritePolicy,
}

/// Where a cache lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheLocation {
    /// Main memory.
    Memory,
    /// NVMe drives.
    Nvme,
    /// SSDs.
    Ssd,
}

/// A cache eviction policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CachePolicy {
    /// Least recently used.
    Lru,
    /// Least frequently used.
    Lfu,
    /// Adaptive replacement cache.
    #[default]
    Arc,
    /// Two queues.
    #[serde(rename = "2q")]
    TwoQ,
    /// Frequency-admitted LRU.
    Tinylfu,
    /// Three static FIFO queues.
    S3fifo,
}

/// When a cache passes writes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WritePolicy {
    /// At once, as well as caching them.
    WriteThrough,
    /// On eviction.
    #[default]
    WriteBack,
    /// At once, without caching them.
    WriteAround,
}

impl Fabric {
    pub(super) fn validate(&self, path: &AttrPath, problems: &mut Problems) {
        let heat = path.join("heatMap");
        check_nonzero_size(
            self.heat_map.granularity,
            heat.join("granularity"),
            problems,
        );
        if self.heat_map.half_life.std().is_zero() {
            problems.at(
                heat.join("halfLife"),
                "must be longer than 0; use a duration such as \"1h\"",
            );
        }
        for (i, window) in self.heat_map.time_windows.iter().enumerate() {
            if window.std().is_zero() {
                problems.at(
                    heat.join("timeWindows").join(index(i)),
                    "must be longer than 0; use a duration such as \"1h\"",
                );
            }
        }
        let movement = &self.movement;
        let schedule = &movement.schedule;
        if movement.enable
            && movement.engine == MovementEngine::Scheduled
            && schedule.promotion_window.is_none()
            && schedule.demotion_window.is_none()
        {
            problems.at(
                path.join("movement").join("engine"),
                "the scheduled engine needs a window; set schedule.promotionWindow or \
                 schedule.demotionWindow (cron), or use engine = \"continuous\"",
            );
        }
        let mut names = BTreeSet::new();
        for (i, layer) in self.caching.layers.iter().enumerate() {
            let item = path.join("caching").join("layers").join(index(i));
            if !names.insert(layer.name.as_str()) {
                problems.at(
                    item.join("name"),
                    format!(
                        "another cache layer is already named `{}`; give each layer its own name",
                        layer.name
                    ),
                );
            }
            check_nonzero_size(layer.size, item.join("size"), problems);
        }
    }
}
