//! `hypervisor.storage`: heat-map tiers, data classifications and the storage fabric
//! (heat map, data movement and caching layers).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::Size;

mod fabric;
#[cfg(test)]
mod tests;
mod tier;

pub use fabric::{
    CacheLayer, CacheLocation, CachePolicy, Caching, Fabric, HeatAlgorithm, HeatMap, Movement,
    MovementBandwidth, MovementEngine, MovementSchedule, WritePolicy,
};
pub use tier::{
    Demotion, DemotionThreshold, Promotion, PromotionThreshold, Provider, ProviderKind, Tier,
    TierCharacteristics, TierPolicies,
};

/// `hypervisor.storage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Storage {
    /// The storage tiers, fastest (lowest level) first.
    pub tiers: BTreeMap<String, Tier>,
    /// Data classes matched by pattern, with their preferred tiers.
    pub classifications: BTreeMap<String, Classification>,
    /// Heat map, data movement and caching.
    pub fabric: Fabric,
    /// The tier level new data lands on.
    pub default_tier: u32,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            tiers: BTreeMap::new(),
            classifications: BTreeMap::new(),
            fabric: Fabric::default(),
            default_tier: 1,
        }
    }
}

/// `storage.classifications.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Classification {
    /// Glob patterns of the data in this class.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// How the data behaves.
    pub characteristics: DataCharacteristics,
    /// Which tiers the data goes to.
    #[serde(default)]
    pub placement: ClassPlacement,
}

/// `storage.classifications.NAME.characteristics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataCharacteristics {
    /// How the data is accessed.
    pub access_pattern: AccessPattern,
    /// How often the data is accessed.
    pub temperature: Temperature,
    /// How well the data compresses.
    pub compressibility: Compressibility,
}

/// An access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessPattern {
    /// Read or written in order.
    Sequential,
    /// Read or written anywhere.
    Random,
    /// Written once, then only read.
    WriteOnce,
    /// Only appended to.
    AppendOnly,
}

/// A data temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Temperature {
    /// Accessed all the time.
    Hot,
    /// Accessed often.
    Warm,
    /// Accessed now and then.
    Cool,
    /// Accessed rarely.
    Cold,
    /// Kept, hardly ever read.
    Frozen,
}

/// How well data compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compressibility {
    /// Compresses well.
    High,
    /// Compresses somewhat.
    Medium,
    /// Compresses a little.
    Low,
    /// Does not compress.
    None,
}

/// `storage.classifications.NAME.placement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClassPlacement {
    /// The tier level the data goes to first.
    pub preferred_tier: u32,
    /// The tier levels the data may go to (empty: any).
    pub allowed_tiers: Vec<u32>,
}

impl Default for ClassPlacement {
    fn default() -> Self {
        ClassPlacement {
            preferred_tier: 1,
            allowed_tiers: Vec::new(),
        }
    }
}

impl Storage {
    /// Checks ranges, tier levels and the references to them.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("storage");
        let mut levels: BTreeMap<u32, &str> = BTreeMap::new();
        for (name, tier) in &self.tiers {
            let path = at.join("tiers").join(name);
            match levels.get(&tier.level) {
                Some(other) => problems.at(
                    path.join("level"),
                    format!(
                        "level {} is also the level of tier `{other}`; give each tier its own level",
                        tier.level
                    ),
                ),
                None => {
                    levels.insert(tier.level, name);
                }
            }
            tier.validate(&path, problems);
        }
        let levels: BTreeSet<u32> = levels.into_keys().collect();
        check_level(
            &levels,
            self.default_tier,
            &at.join("defaultTier"),
            problems,
        );
        for (name, class) in &self.classifications {
            let path = at.join("classifications").join(name).join("placement");
            class.placement.validate(&levels, &path, problems);
        }
        self.fabric.validate(&at.join("fabric"), problems);
    }
}

/// Reports `level` at `path` unless a tier has it (any level goes when there are no tiers).
fn check_level(levels: &BTreeSet<u32>, level: u32, path: &AttrPath, problems: &mut Problems) {
    if levels.is_empty() || levels.contains(&level) {
        return;
    }
    let list: Vec<String> = levels.iter().map(u32::to_string).collect();
    problems.at(
        path,
        format!(
            "no tier has level {level} (the tier levels are {}); use one of them or add a tier \
             with `level = {level}`",
            list.join(", ")
        ),
    );
}

/// Reports `value` at `path` unless it lies between 0 and 1.
fn check_fraction(value: f64, path: AttrPath, problems: &mut Problems) {
    if !(0.0..=1.0).contains(&value) {
        problems.at(
            path,
            format!("{value} is out of range; use a number from 0 to 1"),
        );
    }
}

/// Reports a zero size at `path`.
fn check_nonzero_size(size: Size, path: AttrPath, problems: &mut Problems) {
    if size.bytes() == 0 {
        problems.at(path, "must be larger than 0; use a size such as \"1Gi\"");
    }
}

impl ClassPlacement {
    fn validate(&self, levels: &BTreeSet<u32>, path: &AttrPath, problems: &mut Problems) {
        check_level(
            levels,
            self.preferred_tier,
            &path.join("preferredTier"),
            problems,
        );
        for (i, level) in self.allowed_tiers.iter().enumerate() {
            let item = path.join("allowedTiers").join(index(i));
            check_level(levels, *level, &item, problems);
        }
        if !self.allowed_tiers.is_empty() && !self.allowed_tiers.contains(&self.preferred_tier) {
            problems.at(
                path.join("preferredTier"),
                format!(
                    "tier {} is not among allowedTiers; add it there or prefer an allowed tier",
                    self.preferred_tier
                ),
            );
        }
    }
}
