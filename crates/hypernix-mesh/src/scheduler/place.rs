//! Placing units: filter the nodes by the hard constraints, rank the rest.
//!
//! Units are placed one at a time: those without a required affinity first (so the units
//! they are drawn to are there), larger ones before smaller ones, then by name. For each,
//! [`State::candidates`] keeps the nodes that are alive, run units, keep every hard rule and
//! have room; the candidates are ranked by the summed weights of the preferred rules they
//! satisfy, then by the algorithm, then by node id.

use super::state::State;
use super::{Cluster, Unplaced};
use crate::consensus::NodeId;
use hypernix_config::schema::mesh::MeshSchedulingAlgorithm;
use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;

/// How candidates are ranked (`mesh.coordination.scheduler.algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The node least loaded once the unit is on it.
    LeastLoaded,
    /// Best fit: the node most loaded once the unit is on it.
    BinPacking,
    /// The node whose domain holds the fewest units of the unit's group, then least loaded.
    Spread,
    /// A node picked by hashing the seed, unit and node (rendezvous hashing).
    Random {
        /// The seed; the same seed gives the same placement.
        seed: u64,
    },
}

impl Algorithm {
    /// The configured algorithm; `seed` is used by `random` only.
    pub fn new(configured: MeshSchedulingAlgorithm, seed: u64) -> Algorithm {
        match configured {
            MeshSchedulingAlgorithm::LeastLoaded => Algorithm::LeastLoaded,
            MeshSchedulingAlgorithm::BinPacking => Algorithm::BinPacking,
            MeshSchedulingAlgorithm::Spread => Algorithm::Spread,
            MeshSchedulingAlgorithm::Random => Algorithm::Random { seed },
        }
    }
}

/// What [`place`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The units it placed: unit name → node id.
    pub placed: BTreeMap<String, NodeId>,
    /// The units that fit nowhere, with the reason.
    pub unplaced: Vec<Unplaced>,
}

/// Places every unit the cluster's placement leaves out.
pub fn place(cluster: &Cluster, algorithm: Algorithm) -> Placed {
    let mut state = State::new(cluster, |_| false);
    let units = (0..cluster.units.len())
        .filter(|&u| state.node_of(u).is_none())
        .collect();
    let (placed, unplaced) = place_units(&mut state, units, algorithm);
    Placed {
        placed: placed
            .into_iter()
            .map(|(u, n)| (cluster.units[u].name.clone(), cluster.nodes[n].id))
            .collect(),
        unplaced,
    }
}

/// Places the given units on the state, returning (unit, node) indices and the misfits.
pub(super) fn place_units(
    state: &mut State<'_>,
    mut units: Vec<usize>,
    algorithm: Algorithm,
) -> (Vec<(usize, usize)>, Vec<Unplaced>) {
    let cluster = state.cluster;
    units.sort_by_key(|&u| {
        let unit = &cluster.units[u];
        (
            state.has_required(u),
            Reverse(unit.compute),
            Reverse(unit.memory),
            u,
        )
    });
    let mut placed = Vec::new();
    let mut unplaced = Vec::new();
    for unit in units {
        let name = &cluster.units[unit].name;
        let choice = state.candidates(unit).and_then(|nodes| {
            best(state, unit, &nodes, algorithm)
                .ok_or_else(|| format!("unit {name}: no candidate node"))
        });
        match choice {
            Ok(node) => {
                state.add(unit, node);
                placed.push((unit, node));
            }
            Err(reason) => unplaced.push(Unplaced {
                unit: name.clone(),
                reason,
            }),
        }
    }
    (placed, unplaced)
}

/// The best of the candidate nodes for the unit.
pub(super) fn best(
    state: &State<'_>,
    unit: usize,
    nodes: &[usize],
    algorithm: Algorithm,
) -> Option<usize> {
    let ranked: Vec<(u64, usize)> = nodes
        .iter()
        .map(|&n| (state.preference(unit, n), n))
        .collect();
    let by_algorithm = |a: usize, b: usize| -> Ordering {
        let load = |n: usize| state.load_with(n, unit);
        match algorithm {
            Algorithm::LeastLoaded => load(a).total_cmp(&load(b)),
            Algorithm::BinPacking => load(b).total_cmp(&load(a)),
            Algorithm::Spread => state
                .group_count(unit, a)
                .cmp(&state.group_count(unit, b))
                .then_with(|| load(a).total_cmp(&load(b))),
            Algorithm::Random { seed } => {
                let name = &state.cluster.units[unit].name;
                let hash = |n: usize| mix(seed, name, state.cluster.nodes[n].id);
                hash(a).cmp(&hash(b))
            }
        }
    };
    // Nodes are in id order, so `min_by` keeps the lowest id among equals.
    ranked
        .iter()
        .min_by(|(pa, a), (pb, b)| pb.cmp(pa).then_with(|| by_algorithm(*a, *b)))
        .map(|&(_, n)| n)
}

/// FNV-1a over the seed, unit name and node id, finished with splitmix64's mixer.
fn mix(seed: u64, unit: &str, node: NodeId) -> u64 {
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(unit.bytes())
        .chain(node.to_le_bytes());
    let mut h = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
