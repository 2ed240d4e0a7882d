//! The store's view of `hypervisor.storage.fabric`: the memory-tier cache, kept apart from
//! [`crate::StoreConfig`] so that adding engine settings never changes the tier layout.

use hypernix_config::schema::storage::{
    CacheLocation, CachePolicy, HeatAlgorithm, Storage, WritePolicy,
};

use crate::cache::PolicyKind;
use crate::classify::Rules;
use crate::error::StorageError;
use crate::heat::MAX_WINDOWS;
use crate::schedule::Movement;

/// What a write does to an extent the memory cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWrite {
    /// The write goes to the durable tier and to the cached copy (`write-through`).
    Through,
    /// The write goes to the durable tier and the cached copy is dropped (`write-around`).
    Around,
}

/// The memory tier's cache in a durable store.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSpec {
    /// Capacity in bytes (`None`: the memory tier's capacity).
    pub capacity: Option<u64>,
    /// Replacement and admission.
    pub policy: PolicyKind,
    /// What writes do.
    pub write: CacheWrite,
}

/// Engine settings from `storage.fabric`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// The memory-tier cache.
    pub cache: CacheSpec,
    /// Heat time windows in seconds (`heatMap.timeWindows`).
    pub windows: Vec<u32>,
    /// When placement runs and how fast it may copy.
    pub movement: Movement,
    /// Which tiers each volume may use.
    pub rules: Rules,
}

impl Default for StoreOptions {
    /// W-TinyLFU, write-through, sized by the memory tier; the schema's default windows;
    /// continuous placement without a bandwidth limit.
    fn default() -> Self {
        StoreOptions {
            cache: CacheSpec {
                capacity: None,
                policy: PolicyKind::Tinylfu,
                write: CacheWrite::Through,
            },
            windows: vec![3_600, 86_400, 7 * 86_400, 30 * 86_400],
            movement: Movement::default(),
            rules: Rules::default(),
        }
    }
}

impl StoreOptions {
    /// Reads `storage.fabric`; settings this build cannot honour are errors.
    pub fn from_config(storage: &Storage) -> Result<StoreOptions, StorageError> {
        let mut options = StoreOptions {
            movement: Movement::from_config(&storage.fabric.movement)?,
            rules: Rules::from_config(storage),
            ..StoreOptions::default()
        };
        let heat = &storage.fabric.heat_map;
        if !heat.enable {
            return Err(StorageError::Config(
                "storage.fabric.heatMap.enable = false is not supported: the memory-tier cache \
                 and placement run on heat; to stop moves set fabric.movement.enable = false"
                    .into(),
            ));
        }
        if heat.algorithm == HeatAlgorithm::SlidingWindow {
            return Err(StorageError::Config(
                "storage.fabric.heatMap.algorithm: sliding-window is not implemented as the \
                 placement signal; use exponential-decay (timeWindows are counted beside it)"
                    .into(),
            ));
        }
        if heat.time_windows.len() > MAX_WINDOWS {
            return Err(StorageError::Config(format!(
                "storage.fabric.heatMap.timeWindows: {} windows, at most {MAX_WINDOWS} are kept; drop some",
                heat.time_windows.len()
            )));
        }
        options.windows = Vec::new();
        for (i, w) in heat.time_windows.iter().enumerate() {
            let secs = u32::try_from(w.std().as_secs()).ok().filter(|&s| s > 0);
            options.windows.push(secs.ok_or_else(|| {
                StorageError::Config(format!(
                    "storage.fabric.heatMap.timeWindows.{i}: use 1s to 136 years"
                ))
            })?);
        }
        let mut memory_layers = 0;
        for (i, layer) in storage.fabric.caching.layers.iter().enumerate() {
            let at = format!("storage.fabric.caching.layers.{i}");
            if layer.location != CacheLocation::Memory {
                return Err(StorageError::Config(format!(
                    "{at}.location: only memory cache layers are supported; make {:?} a tier instead",
                    layer.name
                )));
            }
            memory_layers += 1;
            if memory_layers > 1 {
                return Err(StorageError::Config(format!(
                    "{at}: only one memory cache layer is supported; merge {:?} into the first",
                    layer.name
                )));
            }
            options.cache.capacity = Some(layer.size.bytes());
            options.cache.policy = match layer.policy {
                CachePolicy::Lru => PolicyKind::Lru,
                CachePolicy::Arc => PolicyKind::Arc,
                CachePolicy::Tinylfu => PolicyKind::Tinylfu,
                other => {
                    return Err(StorageError::Config(format!(
                        "{at}.policy: {other:?} is not implemented; use lru, arc or tinylfu"
                    )));
                }
            };
            options.cache.write = match layer.write_policy {
                WritePolicy::WriteThrough => CacheWrite::Through,
                WritePolicy::WriteAround => CacheWrite::Around,
                WritePolicy::WriteBack => {
                    return Err(StorageError::Config(format!(
                        "{at}.writePolicy: write-back is not implemented (a cached write must \
                         reach a durable tier); use write-through or write-around"
                    )));
                }
            };
        }
        Ok(options)
    }
}
