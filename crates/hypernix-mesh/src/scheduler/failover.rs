//! Failover: units of a node dead for at least the grace period go elsewhere.
//!
//! A unit on a dead node waits until `grace` has passed since the cluster last heard from
//! the node, then is placed like a new unit, with every constraint, on a node that is alive
//! and runs units. A fenced node's units go at once: they are known to be stopped. Units on
//! suspect nodes stay. The units still waiting keep counting for their node's constraints.

use super::place::{Algorithm, place_units};
use super::state::State;
use super::{Cluster, Health, Move, SchedulerError, Unplaced};
use crate::consensus::NodeId;
use std::collections::BTreeMap;
use std::time::Duration;

/// The fencing timeout and the failover grace period, the first shorter than the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    fence: Duration,
    grace: Duration,
}

impl Timeouts {
    /// Checks that `fence` is shorter than `grace`, so a unit never runs on two nodes.
    pub fn new(fence: Duration, grace: Duration) -> Result<Timeouts, SchedulerError> {
        if fence >= grace {
            return Err(SchedulerError::FenceNotShorter { fence, grace });
        }
        Ok(Timeouts { fence, grace })
    }

    /// How long a node without quorum keeps its units.
    pub fn fence(&self) -> Duration {
        self.fence
    }

    /// How long a dead node's units wait before they are re-placed.
    pub fn grace(&self) -> Duration {
        self.grace
    }
}

/// A unit on a dead node, waiting for the grace period to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// The unit.
    pub unit: String,
    /// The dead node it is on.
    pub node: NodeId,
    /// When it may be re-placed.
    pub eligible_at: Duration,
}

/// What [`failover`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// Units re-placed, from their dead or fenced node.
    pub moves: Vec<Move>,
    /// Units whose node has not been dead for the grace period yet.
    pub waiting: Vec<Waiting>,
    /// Units due to move that fit nowhere, with the reason; they must not run on their node.
    pub unplaced: Vec<Unplaced>,
}

/// Re-places, at `now`, the units of nodes dead for at least the grace period or fenced.
pub fn failover(
    cluster: &Cluster,
    now: Duration,
    timeouts: &Timeouts,
    algorithm: Algorithm,
) -> Failover {
    let mut due: BTreeMap<usize, NodeId> = BTreeMap::new();
    let mut waiting = Vec::new();
    for (u, unit) in cluster.units.iter().enumerate() {
        let Some(&node) = cluster.placement.get(&unit.name) else {
            continue;
        };
        let Ok(n) = cluster.nodes.binary_search_by_key(&node, |n| n.id) else {
            continue;
        };
        match cluster.nodes[n].health {
            Health::Fenced => {
                due.insert(u, node);
            }
            Health::Dead { since } => {
                let eligible_at = since.saturating_add(timeouts.grace);
                if now >= eligible_at {
                    due.insert(u, node);
                } else {
                    waiting.push(Waiting {
                        unit: unit.name.clone(),
                        node,
                        eligible_at,
                    });
                }
            }
            Health::Alive | Health::Suspect => {}
        }
    }
    let mut state = State::new(cluster, |u| due.contains_key(&u));
    let (placed, unplaced) = place_units(&mut state, due.keys().copied().collect(), algorithm);
    let mut moves: Vec<Move> = placed
        .into_iter()
        .filter_map(|(u, n)| {
            Some(Move {
                unit: cluster.units[u].name.clone(),
                from: *due.get(&u)?,
                to: cluster.nodes[n].id,
            })
        })
        .collect();
    moves.sort_by(|a, b| a.unit.cmp(&b.unit));
    Failover {
        moves,
        waiting,
        unplaced,
    }
}
