//! `storage.tiers`: the tiers, their providers and their promotion and demotion policies.

use serde::{Deserialize, Serialize};

use super::{check_fraction, check_nonzero_size};
use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::{Duration, Size};

/// `storage.tiers.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    /// The tier's level: 0 is the fastest.
    pub level: u32,
    /// What the tier offers.
    #[serde(default)]
    pub characteristics: TierCharacteristics,
    /// The devices that back the tier.
    #[serde(default)]
    pub providers: Vec<Provider>,
    /// When data moves onto and off the tier.
    #[serde(default)]
    pub policies: TierPolicies,
}

/// `storage.tiers.NAME.characteristics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TierCharacteristics {
    /// Typical latency, such as `"< 1ms"`.
    pub latency: Option<String>,
    /// Typical throughput, such as `"2GB/s"`.
    pub throughput: Option<String>,
    /// Typical IOPS, such as `"500k"`.
    pub iops: Option<String>,
    /// Durability, between 0 and 1.
    pub durability: Option<f64>,
    /// Relative cost, at least 0.
    pub cost: Option<f64>,
}

/// `storage.tiers.NAME.providers[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    /// Provider name.
    #[serde(default)]
    pub name: Option<String>,
    /// Kind of device.
    #[serde(rename = "type")]
    pub kind: ProviderKind,
    /// How much the provider holds.
    pub capacity: Size,
    /// Where its data lives, such as a directory.
    #[serde(default)]
    pub location: Option<String>,
}

/// A kind of storage provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// Main memory.
    Memory,
    /// Local NVMe drives.
    NvmeLocal,
    /// An array of SSDs.
    SsdArray,
    /// An array of hard disks.
    HddArray,
    /// An object store.
    Object,
}

/// `storage.tiers.NAME.policies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TierPolicies {
    /// When hot data moves up onto this tier.
    pub promotion: Promotion,
    /// When cold data moves down off this tier.
    pub demotion: Demotion,
}

/// `policies.promotion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Promotion {
    /// Promotion happens.
    pub enabled: bool,
    /// What makes data hot enough.
    pub threshold: PromotionThreshold,
    /// Most data promoted at once.
    pub batch_size: Size,
}

impl Default for Promotion {
    fn default() -> Self {
        Promotion {
            enabled: true,
            threshold: PromotionThreshold::default(),
            batch_size: Size(1 << 30),
        }
    }
}

/// `policies.promotion.threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PromotionThreshold {
    /// Accesses per heat-map window.
    pub access_frequency: u32,
    /// Heat score, between 0 and 1.
    pub heat_score: f64,
}

impl Default for PromotionThreshold {
    fn default() -> Self {
        PromotionThreshold {
            access_frequency: 10,
            heat_score: 0.8,
        }
    }
}

/// `policies.demotion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Demotion {
    /// Demotion happens.
    pub enabled: bool,
    /// What makes data cold enough.
    pub threshold: DemotionThreshold,
    /// Glob patterns of data never demoted.
    pub exclude_patterns: Vec<String>,
}

impl Default for Demotion {
    fn default() -> Self {
        Demotion {
            enabled: true,
            threshold: DemotionThreshold::default(),
            exclude_patterns: Vec::new(),
        }
    }
}

/// `policies.demotion.threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DemotionThreshold {
    /// Time without access.
    pub idle_time: Duration,
    /// Heat score, between 0 and 1.
    pub heat_score: f64,
}

impl Default for DemotionThreshold {
    fn default() -> Self {
        DemotionThreshold {
            idle_time: Duration::secs(7 * 86_400),
            heat_score: 0.2,
        }
    }
}

impl Tier {
    pub(super) fn validate(&self, path: &AttrPath, problems: &mut Problems) {
        let chars = path.join("characteristics");
        if let Some(durability) = self.characteristics.durability {
            check_fraction(durability, chars.join("durability"), problems);
        }
        if let Some(cost) = self.characteristics.cost.filter(|c| *c < 0.0) {
            problems.at(
                chars.join("cost"),
                format!("{cost} is negative; use a cost of 0 or more"),
            );
        }
        for (i, provider) in self.providers.iter().enumerate() {
            let capacity = path.join("providers").join(index(i)).join("capacity");
            check_nonzero_size(provider.capacity, capacity, problems);
        }
        let policies = path.join("policies");
        let promotion = &self.policies.promotion;
        let demotion = &self.policies.demotion;
        let up = policies.join("promotion");
        let down = policies.join("demotion");
        check_fraction(
            promotion.threshold.heat_score,
            up.join("threshold").join("heatScore"),
            problems,
        );
        check_nonzero_size(promotion.batch_size, up.join("batchSize"), problems);
        check_fraction(
            demotion.threshold.heat_score,
            down.join("threshold").join("heatScore"),
            problems,
        );
        if promotion.enabled
            && demotion.enabled
            && demotion.threshold.heat_score >= promotion.threshold.heat_score
        {
            problems.at(
                down.join("threshold").join("heatScore"),
                format!(
                    "{} is not below the promotion heat score {}, so data would move back and \
                     forth; lower it or raise policies.promotion.threshold.heatScore",
                    demotion.threshold.heat_score, promotion.threshold.heat_score
                ),
            );
        }
    }
}
