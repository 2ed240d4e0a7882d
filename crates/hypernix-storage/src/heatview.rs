//! A volume's heat as reported: per extent, its tier and counts, for `storage heatmap`.

use serde::Serialize;

use crate::error::StorageError;
use crate::store::Store;

/// One extent's heat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtentHeat {
    /// The extent index.
    pub extent: u64,
    /// The tier holding it (`None`: a hole).
    pub tier: Option<String>,
    /// Decayed reads now.
    pub reads: f64,
    /// Decayed writes now.
    pub writes: f64,
    /// Estimated accesses in each of [`VolumeHeat::windows`].
    pub windows: Vec<f64>,
}

/// A volume's heat map.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeHeat {
    /// The volume.
    pub volume: String,
    /// Extent size in bytes.
    pub granularity: u64,
    /// The time windows in seconds.
    pub windows: Vec<u32>,
    /// Every extent of the volume, in order.
    pub extents: Vec<ExtentHeat>,
}

impl Store {
    /// The heat of every extent of `volume` now.
    pub fn volume_heat(&self, volume: &str) -> Result<VolumeHeat, StorageError> {
        let st = self.shared();
        let v = st
            .volumes
            .get(volume)
            .ok_or_else(|| StorageError::NoVolume(volume.into()))?;
        let heat = self.heat.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        let extents = (0..v.size.div_ceil(self.granularity))
            .map(|i| {
                let key = (v.id, i);
                let c = heat.counter(key, now).unwrap_or_default();
                ExtentHeat {
                    extent: i,
                    tier: st
                        .extents
                        .get(&key)
                        .map(|&(t, _)| st.tier(t).spec.name.clone()),
                    reads: f64::from(c.reads),
                    writes: f64::from(c.writes),
                    windows: heat.windowed(key, now),
                }
            })
            .collect();
        Ok(VolumeHeat {
            volume: volume.into(),
            granularity: self.granularity,
            windows: heat.windows().to_vec(),
            extents,
        })
    }
}

impl VolumeHeat {
    /// Each extent's heat relative to the hottest, on a log scale from 0 (cold) to 1
    /// (hottest); `None` for holes. `window` picks a time window's counts (an index into
    /// [`VolumeHeat::windows`]) instead of the decayed counts.
    pub fn levels(&self, window: Option<usize>) -> Vec<Option<f64>> {
        let value = |e: &ExtentHeat| match window {
            Some(w) => e.windows.get(w).copied().unwrap_or(0.0),
            None => e.reads + e.writes,
        };
        let max = self.extents.iter().map(value).fold(0.0, f64::max);
        self.extents
            .iter()
            .map(|e| {
                e.tier.as_ref().map(|_| {
                    if max <= 0.0 {
                        0.0
                    } else {
                        (1.0 + value(e)).ln() / (1.0 + max).ln()
                    }
                })
            })
            .collect()
    }
}
