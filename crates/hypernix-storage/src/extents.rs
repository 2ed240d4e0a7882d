//! Where each allocated extent of a volume lives and how hot it is, for heat maps.

use serde::Serialize;

use crate::error::StorageError;
use crate::store::Store;

/// One allocated extent of a volume: its tier and total heat (the GraphQL heat map).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtentPlacement {
    /// The extent index (byte offset / granularity).
    pub extent: u64,
    /// The tier holding it.
    pub tier: String,
    /// That tier's level.
    pub level: u32,
    /// Its decayed access count (reads + writes) now.
    pub heat: f64,
}

impl Store {
    /// Every allocated extent of volume `name` in index order, with its tier and heat.
    pub fn volume_extents(&self, name: &str) -> Result<Vec<ExtentPlacement>, StorageError> {
        let st = self.shared();
        let id = st
            .volumes
            .get(name)
            .map(|v| v.id)
            .ok_or_else(|| StorageError::NoVolume(name.into()))?;
        let now = self.now();
        let heat = self.heat.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ExtentPlacement> = st
            .extents
            .iter()
            .filter(|(k, _)| k.0 == id)
            .map(|(&key, &(tier, _))| {
                let t = st.tier(tier);
                ExtentPlacement {
                    extent: key.1,
                    tier: t.spec.name.clone(),
                    level: t.spec.level,
                    heat: heat.count(key, now),
                }
            })
            .collect();
        out.sort_by_key(|e| e.extent);
        Ok(out)
    }
}
