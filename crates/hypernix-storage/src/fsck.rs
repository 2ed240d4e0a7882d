//! Checking the extent map against the tiers (the invariants of `docs/storage-format.md`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::error::StorageError;
use crate::store::Store;

/// What `fsck` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsckReport {
    /// Volumes checked.
    pub volumes: u64,
    /// Mapped extents checked.
    pub extents: u64,
    /// Free slots checked.
    pub free_slots: u64,
    /// Each broken invariant, one line each; empty when the store is consistent.
    pub problems: Vec<String>,
}

impl FsckReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Store {
    /// Re-reads the durable map and checks it: no slot used twice or both used and free,
    /// every slot below its tier's high water and within capacity, no slot below the high
    /// water unaccounted for, extents inside their volumes, tier files long enough.
    pub fn fsck(&self) -> Result<FsckReport, StorageError> {
        let st = self.lock();
        let map = self.map.load()?;
        let g = self.granularity;
        let mut report = FsckReport {
            volumes: map.volumes.len() as u64,
            extents: map.extents.len() as u64,
            free_slots: map.free.len() as u64,
            problems: Vec::new(),
        };
        let p = &mut report.problems;
        let tiers: HashMap<u8, (&str, u64)> = map
            .tiers
            .iter()
            .map(|(n, &(id, hw))| (id, (n.as_str(), hw)))
            .collect();
        let volumes: HashMap<u64, (&str, u64)> = map
            .volumes
            .iter()
            .map(|(n, &(id, size))| (id, (n.as_str(), size)))
            .collect();
        let mut used: BTreeMap<(u8, u64), (u64, u64)> = BTreeMap::new();
        for (&(vid, idx), &(t, slot)) in &map.extents {
            match volumes.get(&vid) {
                None => p.push(format!("extent {idx} of volume id {vid}: no such volume")),
                Some(&(name, size)) if idx >= size.div_ceil(g) => p.push(format!(
                    "volume {name:?} extent {idx}: past the volume's end"
                )),
                Some(_) => {}
            }
            let Some(&(tname, hw)) = tiers.get(&t) else {
                p.push(format!(
                    "extent {idx} of volume id {vid}: unknown tier id {t}"
                ));
                continue;
            };
            if slot >= hw {
                p.push(format!(
                    "tier {tname:?} slot {slot}: used but at or past high water {hw}"
                ));
            }
            if let Some(other) = used.insert((t, slot), (vid, idx)) {
                p.push(format!(
                    "tier {tname:?} slot {slot}: used twice (extents {other:?} and {:?})",
                    (vid, idx)
                ));
            }
        }
        for &(t, slot) in &map.free {
            let Some(&(tname, hw)) = tiers.get(&t) else {
                p.push(format!("free slot {slot}: unknown tier id {t}"));
                continue;
            };
            if slot >= hw {
                p.push(format!(
                    "tier {tname:?} slot {slot}: free but at or past high water {hw}"
                ));
            }
            if used.contains_key(&(t, slot)) {
                p.push(format!("tier {tname:?} slot {slot}: both used and free"));
            }
        }
        for (&id, &(tname, hw)) in &tiers {
            let accounted = used.range((id, 0)..=(id, u64::MAX)).count()
                + map.free.range((id, 0)..=(id, u64::MAX)).count();
            if accounted as u64 != hw {
                p.push(format!(
                    "tier {tname:?}: {accounted} slots used or free but high water is {hw} (leaked slots)"
                ));
            }
            let Some(tier) = st.tiers.iter().find(|x| x.id == id) else {
                continue;
            };
            if hw > tier.slots {
                p.push(format!(
                    "tier {tname:?}: high water {hw} slots exceeds capacity {} slots",
                    tier.slots
                ));
            }
            let last = used.range((id, 0)..=(id, u64::MAX)).next_back();
            if let Some((&(_, slot), _)) = last
                && tier.data.durable()
            {
                let len = tier.data.len()?;
                if len < (slot + 1) * g {
                    p.push(format!(
                        "tier {tname:?}: data file is {len} bytes, shorter than used slot {slot}"
                    ));
                }
            }
        }
        Ok(report)
    }
}
