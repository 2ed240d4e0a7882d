//! Trace replay: a block trace run through the store's own heat map, memory-tier cache
//! policy and placement planner in simulated time, beside LRU and ARC at the same
//! capacities.
//!
//! 1. Each page of the trace stands for one extent of one volume (hit ratios are per page,
//!    as in the ARC paper).
//! 2. The clock is simulated: request `i` (counting pages) happens at second
//!    `i / rate`; heat decays on that clock.
//! 3. Each page access is counted in the heat map, then offered to the memory tier's cache
//!    policy (W-TinyLFU by default, see [`crate::cache`]). A cache hit is served by tier 0.
//! 4. A miss is served by the durable tier the extent is placed on; an extent first seen
//!    is allocated like a write into a hole (the default level and slower first; the
//!    slowest tier is taken to be large enough for the whole trace).
//! 5. Every `round` simulated seconds, the placement planner moves extents between the
//!    durable tiers, limited by their capacities, policies and the movement bandwidth.
//! 6. LRU and ARC see the same pages; for each tier they get the capacity of that tier and
//!    all faster ones, so "served by this tier or a faster one" compares like with like.

pub mod trace;

use std::collections::HashMap;

use serde::Serialize;

use crate::cache::{Arc, Lru, Policy, PolicyKind};
use crate::config::{StoreConfig, TierMedium, TierSpec};
use crate::heat::HeatMap;
use crate::placement::{PlanTier, plan};
pub use trace::{Request, TraceError};

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplaySetup {
    /// The memory tier's name and capacity in extents (pages).
    pub cache: (String, usize),
    /// The memory tier's policy.
    pub policy: PolicyKind,
    /// The durable tiers, fastest first, capacities in bytes of `granularity`-byte extents.
    pub tiers: Vec<TierSpec>,
    /// Extent size in bytes, to turn tier capacities and batch sizes into extents.
    pub granularity: u64,
    /// The level new extents go to first.
    pub default_level: u32,
    /// Heat half-life in simulated seconds.
    pub half_life: f64,
    /// Page requests per simulated second.
    pub rate: u64,
    /// Simulated seconds between placement rounds.
    pub round: u32,
    /// Extents moved per simulated second at most (`None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Heat time windows in simulated seconds.
    pub windows: Vec<u32>,
}

/// One tier's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierResult {
    /// The tier.
    pub name: String,
    /// Its capacity in extents (`None`: the slowest tier, unbounded here).
    pub capacity: Option<u64>,
    /// Page requests it served.
    pub served: u64,
    /// `served` over all page requests.
    pub hit_ratio: f64,
    /// Served by this tier or a faster one, over all page requests.
    pub cumulative: f64,
    /// LRU's hit ratio at this and the faster tiers' capacity.
    pub lru: Option<f64>,
    /// ARC's hit ratio at this and the faster tiers' capacity.
    pub arc: Option<f64>,
}

/// What a replay measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Page requests replayed.
    pub requests: u64,
    /// Distinct pages.
    pub unique_pages: u64,
    /// Simulated seconds.
    pub simulated_secs: u64,
    /// The memory tier's policy.
    pub policy: PolicyKind,
    /// Fastest first; the first is the memory tier.
    pub tiers: Vec<TierResult>,
    /// Extents the placement engine moved.
    pub moves: u64,
    /// Heap bytes of the heat map at the end, per extent it counts.
    pub heat_bytes_per_extent: f64,
}

/// Replays `trace`; `progress` is called now and then with (requests done, total).
pub fn replay(
    setup: &ReplaySetup,
    trace: &[Request],
    progress: &mut dyn FnMut(u64, u64),
) -> ReplayReport {
    let g = setup.granularity.max(1);
    let total: u64 = trace.iter().map(|r| u64::from(r.count)).sum();
    let durable = setup.tiers.len();
    let mut capacities: Vec<Option<u64>> = vec![Some(setup.cache.1 as u64)];
    capacities.extend(
        setup
            .tiers
            .iter()
            .enumerate()
            .map(|(i, t)| (i + 1 < durable).then_some(t.capacity / g)),
    );
    let mut cumulative = Vec::new();
    let mut sum = 0;
    for c in capacities.iter().flatten() {
        sum += c;
        cumulative.push(sum as usize);
    }
    let mut lru: Vec<Lru<(u64, u64)>> = cumulative.iter().map(|&c| Lru::new(c)).collect();
    let mut arc: Vec<Arc<(u64, u64)>> = cumulative.iter().map(|&c| Arc::new(c)).collect();
    let mut lru_hits = vec![0u64; cumulative.len()];
    let mut arc_hits = vec![0u64; cumulative.len()];

    let mut heat = HeatMap::with_windows(setup.half_life, &setup.windows);
    let mut cache = setup.policy.build::<(u64, u64)>(setup.cache.1);
    let mut placed: HashMap<(u64, u64), usize> = HashMap::new();
    let mut room: Vec<u64> = setup
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i + 1 < durable {
                t.capacity / g
            } else {
                u64::MAX
            }
        })
        .collect();
    let first = setup
        .tiers
        .iter()
        .position(|t| t.level >= setup.default_level)
        .unwrap_or(0);
    let mut served = vec![0u64; durable + 1];
    let (mut moves, mut next_round, mut done) = (0u64, setup.round, 0u64);
    let rate = setup.rate.max(1);
    for r in trace {
        for page in r.start..r.start + u64::from(r.count) {
            let now = u32::try_from(done / rate).unwrap_or(u32::MAX);
            done += 1;
            let key = (0, page);
            heat.record(key, now, false);
            let outcome = cache.access(key, &|k| heat.count(*k, now));
            let pos = *placed.entry(key).or_insert_with(|| {
                let pos = (first..durable)
                    .find(|&i| room[i] > 0)
                    .unwrap_or(durable - 1);
                room[pos] = room[pos].saturating_sub(1);
                pos
            });
            served[if outcome.hit { 0 } else { pos + 1 }] += 1;
            for (i, c) in lru.iter_mut().enumerate() {
                lru_hits[i] += u64::from(c.access(key, &|_| 0.0).hit);
            }
            for (i, c) in arc.iter_mut().enumerate() {
                arc_hits[i] += u64::from(c.access(key, &|_| 0.0).hit);
            }
            if now >= next_round && durable > 1 {
                next_round = now.saturating_add(setup.round.max(1));
                let tiers: Vec<PlanTier> = setup
                    .tiers
                    .iter()
                    .zip(&room)
                    .map(|(t, &room)| PlanTier {
                        promote: t.promote,
                        demote: t.demote,
                        room,
                    })
                    .collect();
                let limit = setup
                    .bandwidth
                    .map_or(usize::MAX, |b| (b * u64::from(setup.round.max(1))) as usize);
                let planned = plan(
                    placed.iter().map(|(&k, &p)| (k, p)),
                    tiers,
                    &heat,
                    now,
                    g,
                    &|_, _, _| true,
                    &|k| heat.content(k).compressible,
                );
                for (key, from, to) in planned.into_iter().take(limit) {
                    placed.insert(key, to);
                    room[from] = room[from].saturating_add(1);
                    room[to] -= 1;
                    moves += 1;
                }
            }
            if done % 65_536 == 0 {
                progress(done, total);
            }
        }
    }
    progress(done, total);
    let ratio = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut names = vec![setup.cache.0.clone()];
    names.extend(setup.tiers.iter().map(|t| t.name.clone()));
    let mut acc = 0;
    let tiers = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            acc += served[i];
            TierResult {
                name,
                capacity: capacities[i],
                served: served[i],
                hit_ratio: ratio(served[i]),
                cumulative: ratio(acc),
                lru: lru_hits.get(i).map(|&h| ratio(h)),
                arc: arc_hits.get(i).map(|&h| ratio(h)),
            }
        })
        .collect();
    ReplayReport {
        requests: total,
        unique_pages: placed.len() as u64,
        simulated_secs: done / rate,
        policy: setup.policy,
        tiers,
        moves,
        heat_bytes_per_extent: heat.memory_bytes() as f64 / heat.len().max(1) as f64,
    }
}

impl ReplaySetup {
    /// The store's tiers as a replay: its first memory tier is the cache (`None` if it
    /// has no memory tier), the other tiers hold extents; one page request per simulated
    /// second, a placement round every minute, no bandwidth limit, the default time windows.
    pub fn from_store_config(config: &StoreConfig, policy: PolicyKind) -> Option<ReplaySetup> {
        let memory = config
            .tiers
            .iter()
            .find(|t| t.medium == TierMedium::Memory)?;
        let tiers: Vec<TierSpec> = config
            .tiers
            .iter()
            .filter(|t| t.medium != TierMedium::Memory)
            .cloned()
            .collect();
        if tiers.is_empty() {
            return None;
        }
        Some(ReplaySetup {
            cache: (
                memory.name.clone(),
                (memory.capacity / config.granularity) as usize,
            ),
            policy,
            tiers,
            granularity: config.granularity,
            default_level: config.default_level,
            half_life: config.half_life.as_secs_f64(),
            rate: 1,
            round: 60,
            bandwidth: None,
            windows: crate::StoreOptions::default().windows,
        })
    }
}
