//! The store's view of `hypervisor.storage`: tiers ordered by level, granularity and heat.

use std::path::PathBuf;
use std::time::Duration;

use hypernix_config::schema::storage::{ProviderKind, Storage};

use crate::error::StorageError;

/// Where a tier keeps its slots.
#[derive(Debug, Clone, PartialEq)]
pub enum TierMedium {
    /// In RAM; lost on restart, so only ephemeral stores place extents there.
    Memory,
    /// In one data file in this directory (`None`: the store directory).
    Directory(Option<PathBuf>),
}

/// One tier as the store uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct TierSpec {
    /// The tier's name (`storage.tiers.NAME`).
    pub name: String,
    /// Its level: 0 is the fastest.
    pub level: u32,
    /// Where its slots live.
    pub medium: TierMedium,
    /// Its capacity in bytes.
    pub capacity: u64,
    /// Promotion into this tier, or `None` if off.
    pub promote: Option<Promote>,
    /// Demotion out of this tier, or `None` if off.
    pub demote: Option<Demote>,
}

/// When an extent moves up into a tier (`policies.promotion`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Promote {
    /// Minimum decayed access count (`threshold.accessFrequency`).
    pub count: f64,
    /// Minimum heat score, the count relative to the hottest extent (`threshold.heatScore`).
    pub score: f64,
    /// Bytes promoted into the tier per placement round at most (`batchSize`).
    pub batch: u64,
}

/// When an extent moves down out of a tier (`policies.demotion`): both must hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demote {
    /// Minimum time since the last access (`threshold.idleTime`).
    pub idle: Duration,
    /// Maximum heat score (`threshold.heatScore`).
    pub score: f64,
}

/// Everything the store needs from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Extent size in bytes.
    pub granularity: u64,
    /// Tiers, fastest first.
    pub tiers: Vec<TierSpec>,
    /// The level new extents go to first.
    pub default_level: u32,
    /// Half-life of the heat counters.
    pub half_life: Duration,
}

impl StoreConfig {
    /// One directory tier named `disk` of `capacity` bytes in the store directory.
    pub fn single_disk(capacity: u64) -> StoreConfig {
        StoreConfig {
            granularity: 1 << 20,
            tiers: vec![TierSpec {
                name: "disk".into(),
                level: 1,
                medium: TierMedium::Directory(None),
                capacity,
                promote: None,
                demote: None,
            }],
            default_level: 1,
            half_life: Duration::from_secs(3600),
        }
    }

    /// Builds the store configuration from `hypervisor.storage`; with no tiers configured,
    /// a single 1 TiB directory tier `disk` in the store directory.
    pub fn from_config(storage: &Storage) -> Result<StoreConfig, StorageError> {
        let granularity = storage.fabric.heat_map.granularity.bytes();
        if granularity < 4096 || !granularity.is_power_of_two() {
            return Err(StorageError::Config(format!(
                "storage.fabric.heatMap.granularity is {granularity} bytes; use a power of two of at least 4Ki"
            )));
        }
        let mut config = StoreConfig {
            granularity,
            tiers: Vec::new(),
            default_level: storage.default_tier,
            half_life: storage.fabric.heat_map.half_life.std(),
        };
        if storage.tiers.is_empty() {
            config.tiers = StoreConfig::single_disk(1 << 40).tiers;
            config.default_level = 1;
            return Ok(config);
        }
        for (name, tier) in &storage.tiers {
            let capacity: u64 = tier.providers.iter().map(|p| p.capacity.bytes()).sum();
            let medium = match tier.providers.first() {
                Some(p) if p.kind == ProviderKind::Memory => TierMedium::Memory,
                Some(p) if p.kind == ProviderKind::Object => {
                    return Err(StorageError::Config(format!(
                        "tier {name:?}: object providers are not supported yet; use a directory-backed provider"
                    )));
                }
                Some(p) => TierMedium::Directory(p.location.as_ref().map(PathBuf::from)),
                None => {
                    return Err(StorageError::Config(format!(
                        "tier {name:?} has no providers; add one with a capacity"
                    )));
                }
            };
            let promotion = &tier.policies.promotion;
            let demotion = &tier.policies.demotion;
            config.tiers.push(TierSpec {
                name: name.clone(),
                level: tier.level,
                medium,
                capacity,
                promote: promotion.enabled.then_some(Promote {
                    count: f64::from(promotion.threshold.access_frequency),
                    score: promotion.threshold.heat_score,
                    batch: promotion.batch_size.bytes(),
                }),
                demote: demotion.enabled.then_some(Demote {
                    idle: demotion.threshold.idle_time.std(),
                    score: demotion.threshold.heat_score,
                }),
            });
        }
        config.tiers.sort_by_key(|t| t.level);
        if config.tiers.len() > 250 {
            return Err(StorageError::Config(
                "more than 250 tiers; merge some".into(),
            ));
        }
        Ok(config)
    }
}
