//! The placement engine: promotes hot extents to faster tiers and demotes cold ones.
//!
//! A round goes:
//! 1. score every mapped extent: its decayed access count, and that count relative to the
//!    hottest extent's (the heat score, 0 to 1);
//! 2. plan demotions: an extent leaves its tier for the next slower one when the tier's
//!    demotion policy holds (idle at least `idleTime` and score at most `heatScore`);
//!    compressible extents first (they lose least on a slower tier);
//! 3. plan promotions, hottest first: an extent enters the next faster tier when that tier's
//!    promotion policy holds (count at least `accessFrequency`, score at least `heatScore`),
//!    while the tier has free slots (counting those the demotions free) and the round has
//!    not moved `batchSize` bytes into it; extents read or written in sequential runs stay
//!    (streams gain little from a faster tier), and classifications may veto a move;
//! 4. carry out each move by copy-then-switch, one extent at a time under the store lock, so
//!    guest I/O waits at most one extent copy:
//!    a. take a slot on the destination tier,
//!    b. copy the extent into it and sync the destination,
//!    c. commit one map transaction that points the extent at the new slot and frees the old,
//!    d. punch the old slot.
//!    A crash before (c) leaves the old mapping and intact old data; after (c), the new
//!    mapping and synced new data. Durable stores never move extents onto memory tiers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Demote, Promote};
use crate::error::StorageError;
use crate::heat::HeatMap;
use crate::map::Op;
use crate::schedule::Movement;
use crate::store::{State, Store};

/// One tier as the planner sees it: its policies and its free slots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanTier {
    /// Promotion into this tier.
    pub promote: Option<Promote>,
    /// Demotion out of this tier.
    pub demote: Option<Demote>,
    /// Free slots.
    pub room: u64,
}

/// Plans one round (steps 1-3) over `extents`, each (key, position in `tiers`, fastest
/// first); returns (key, from, to) positions. The store and the trace replay share it.
/// `may(key, from, to)` vetoes single moves (classifications, exclusions, pins);
/// `compressible(key)` says whether an extent counts as compressible.
pub(crate) fn plan(
    extents: impl Iterator<Item = ((u64, u64), usize)>,
    tiers: Vec<PlanTier>,
    heat: &HeatMap,
    now: u32,
    granularity: u64,
    may: &dyn Fn((u64, u64), usize, usize) -> bool,
    compressible: &dyn Fn((u64, u64)) -> bool,
) -> Vec<((u64, u64), usize, usize)> {
    let hottest = heat.hottest(now);
    let mut room: Vec<u64> = tiers.iter().map(|t| t.room).collect();
    let mut demotions = Vec::new();
    let mut promotions = Vec::new();
    for (key, pos) in extents {
        let count = heat.count(key, now);
        let score = if hottest > 0.0 { count / hottest } else { 0.0 };
        let idle = u64::from(heat.idle(key, now).unwrap_or(now));
        if let Some(d) = tiers[pos].demote
            && pos + 1 < tiers.len()
            && idle >= d.idle.as_secs()
            && score <= d.score
            && may(key, pos, pos + 1)
        {
            demotions.push((key, pos, pos + 1));
        } else if pos > 0
            && !heat.content(key).sequential
            && let Some(p) = tiers[pos - 1].promote
            && count >= p.count
            && score >= p.score
            && may(key, pos, pos - 1)
        {
            promotions.push((count, key, pos, pos - 1));
        }
    }
    let mut planned = Vec::new();
    // Compressible extents make room first: they lose least on a slower tier.
    demotions.sort_by_key(|&(key, from, to)| (!compressible(key), key, from, to));
    for (key, from, to) in demotions {
        if room[to] > 0 {
            room[to] -= 1;
            room[from] += 1;
            planned.push((key, from, to));
        }
    }
    promotions.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut batch: Vec<u64> = tiers
        .iter()
        .map(|t| t.promote.map_or(0, |p| p.batch))
        .collect();
    for (_, key, from, to) in promotions {
        if room[to] > 0 && batch[to] >= granularity {
            room[to] -= 1;
            room[from] += 1;
            batch[to] -= granularity;
            planned.push((key, from, to));
        }
    }
    planned
}

/// One planned move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The volume.
    pub volume: String,
    /// The extent index.
    pub extent: u64,
    /// The tier it is on.
    pub from: String,
    /// The tier it goes to.
    pub to: String,
}

/// What a placement round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlacementReport {
    /// Extents moved to a faster tier.
    pub promoted: u64,
    /// Extents moved to a slower tier.
    pub demoted: u64,
}

impl Store {
    /// Usable tier indexes (fastest first): all in an ephemeral store, durable ones otherwise.
    fn usable(&self, st: &State) -> Vec<usize> {
        (0..st.tiers.len())
            .filter(|&i| !self.durable || st.tiers[i].data.durable())
            .collect()
    }

    /// Plans one placement round at the store's current time (steps 1-3).
    pub fn plan_moves(&self) -> Vec<Move> {
        let st = self.lock();
        let heat = self.heat.lock().unwrap_or_else(|e| e.into_inner());
        let usable = self.usable(&st);
        let names: std::collections::HashMap<u64, &str> =
            st.volumes.iter().map(|(n, v)| (v.id, n.as_str())).collect();
        let tiers: Vec<PlanTier> = usable
            .iter()
            .map(|&i| {
                let t = &st.tiers[i];
                PlanTier {
                    promote: t.spec.promote,
                    demote: t.spec.demote,
                    room: t.free.len() as u64 + (t.slots - t.high_water.min(t.slots)),
                }
            })
            .collect();
        let extents = st.extents.iter().filter_map(|(&key, &(tid, _))| {
            let pos = usable.iter().position(|&i| st.tiers[i].id == tid)?;
            Some((key, pos))
        });
        let rules = self.rules();
        let may = |key: (u64, u64), from: usize, to: usize| {
            let volume = names.get(&key.0).copied().unwrap_or("");
            let (from, to) = (&st.tiers[usable[from]].spec, &st.tiers[usable[to]].spec);
            rules.allows(volume, to.level)
                && (to.level < from.level || rules.may_demote(volume, &from.name))
        };
        let compressible = |key: (u64, u64)| {
            let volume = names.get(&key.0).copied().unwrap_or("");
            rules
                .compressible(volume)
                .unwrap_or_else(|| heat.content(key).compressible)
        };
        plan(
            extents,
            tiers,
            &heat,
            self.now(),
            self.granularity,
            &may,
            &compressible,
        )
        .into_iter()
        .map(|(key, from, to)| Move {
            volume: names.get(&key.0).copied().unwrap_or("?").to_owned(),
            extent: key.1,
            from: st.tiers[usable[from]].spec.name.clone(),
            to: st.tiers[usable[to]].spec.name.clone(),
        })
        .collect()
    }

    /// Moves extent `extent` of `volume` to tier `to` by copy-then-switch (step 4); returns
    /// false when it is a hole or already there.
    pub fn move_extent(&self, volume: &str, extent: u64, to: &str) -> Result<bool, StorageError> {
        let mut st = self.lock();
        let id = st
            .volumes
            .get(volume)
            .map(|v| v.id)
            .ok_or_else(|| StorageError::NoVolume(volume.into()))?;
        let dst = self
            .usable(&st)
            .into_iter()
            .find(|&i| st.tiers[i].spec.name == to)
            .ok_or_else(|| StorageError::NoTier(to.into()))?;
        let key = (id, extent);
        let Some((src_id, src_slot)) = st.extents.get(&key).copied() else {
            return Ok(false);
        };
        let dst_id = st.tiers[dst].id;
        if src_id == dst_id {
            return Ok(false);
        }
        let (slot, op) = Store::take_slot(&mut st, dst).ok_or_else(|| StorageError::Full {
            volume: volume.into(),
            extent,
        })?;
        let mut buf = vec![0u8; self.granularity as usize];
        let copied = st
            .tier(src_id)
            .data
            .read(src_slot, 0, &mut buf)
            .and_then(|()| st.tiers[dst].data.write(slot, 0, &buf))
            .and_then(|()| st.tiers[dst].data.sync())
            .and_then(|()| {
                self.map.commit(&[
                    op,
                    Op::PutExtent(key, (dst_id, slot)),
                    Op::AddFree(src_id, src_slot),
                ])
            });
        if let Err(e) = copied {
            Store::untake_slot(&mut st, dst, slot);
            return Err(e);
        }
        st.extents.insert(key, (dst_id, slot));
        crate::counters::Counters::bump(&self.counters.moves_in, dst);
        let src = st.tiers.iter().position(|t| t.id == src_id).unwrap_or(0);
        st.tiers[src].free.insert(src_slot);
        st.tiers[src].data.discard(src_slot)?;
        Ok(true)
    }

    /// Plans and carries out one placement round as `movement` allows at time `t`: only
    /// the directions its schedule opens, and copying no faster than its bandwidth (moves
    /// are spaced so that bytes moved / time ≤ the limit).
    pub fn rebalance_with(
        &self,
        movement: &Movement,
        t: DateTime<Utc>,
    ) -> Result<PlacementReport, StorageError> {
        let (promote, demote) = movement.allowed(t);
        let mut report = PlacementReport::default();
        if !promote && !demote {
            return Ok(report);
        }
        let levels: std::collections::HashMap<String, u32> = self
            .tier_stats()
            .into_iter()
            .map(|t| (t.name, t.level))
            .collect();
        let start = Instant::now();
        let mut moved = 0u64;
        for m in self.plan_moves() {
            let up = levels.get(&m.to) < levels.get(&m.from);
            if (up && !promote) || (!up && !demote) {
                continue;
            }
            if let Some(limit) = movement.bandwidth {
                let due = Duration::from_secs_f64(moved as f64 / limit as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            if self.move_extent(&m.volume, m.extent, &m.to)? {
                moved += self.granularity;
                if up {
                    report.promoted += 1;
                } else {
                    report.demoted += 1;
                }
            }
        }
        Ok(report)
    }

    /// Runs placement rounds every `movement.round` seconds on a thread of its own, for
    /// as long as the process lives; a failed round is logged and the next one tried.
    pub fn spawn_placement(self: &Arc<Store>, movement: Movement) -> std::thread::JoinHandle<()> {
        let store = Arc::clone(self);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(movement.round.max(1)));
                match store.rebalance_with(&movement, Utc::now()) {
                    Ok(r) if r.promoted + r.demoted > 0 => {
                        tracing::info!(
                            promoted = r.promoted,
                            demoted = r.demoted,
                            "placement round"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "placement round failed; retrying next round")
                    }
                }
            }
        })
    }

    /// Plans and carries out one placement round.
    pub fn rebalance(&self) -> Result<PlacementReport, StorageError> {
        let levels: std::collections::HashMap<String, u32> = self
            .tier_stats()
            .into_iter()
            .map(|t| (t.name, t.level))
            .collect();
        let mut report = PlacementReport::default();
        for m in self.plan_moves() {
            if self.move_extent(&m.volume, m.extent, &m.to)? {
                if levels.get(&m.to) < levels.get(&m.from) {
                    report.promoted += 1;
                } else {
                    report.demoted += 1;
                }
            }
        }
        Ok(report)
    }
}
