//! The scheduler: which node runs which unit. Pure and deterministic: no I/O, the time is
//! passed in, and the same input gives the same answer whatever order it is listed in.
//!
//! 1. [`Cluster::new`] checks the input: nodes (capacity, location, [`Health`]), units
//!    (requests, labels, `placement` rules from the configuration) and the current placement.
//! 2. [`place`] assigns the unplaced units by an [`Algorithm`], keeping capacity, required
//!    affinity, anti-affinity and spread maximums; a unit that fits nowhere gets a reason.
//! 3. [`rebalance`] proposes moves while the most and least loaded nodes differ by more than
//!    a threshold.
//! 4. [`failover`] re-places the units of nodes dead for at least the grace period.
//! 5. [`fence`] tells a node cut off from quorum when to stop its units; [`Timeouts`] holds
//!    the fencing timeout below the grace period, so a unit never runs on two nodes.

mod error;
mod failover;
mod fence;
mod place;
mod rebalance;
mod state;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use error::SchedulerError;
pub use failover::{Failover, Timeouts, Waiting, failover};
pub use fence::{FenceDecision, fence};
pub use place::{Algorithm, Placed, place};
pub use rebalance::rebalance;

use crate::consensus::NodeId;
use hypernix_config::schema::compute::{Placement, TopologyScope};
use hypernix_config::schema::mesh::NodeLocation;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A node as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The node's id.
    pub id: NodeId,
    /// Whether its roles let it run units (a worker or edge node; not a witness).
    pub runs_units: bool,
    /// Compute units it offers (`mesh.node.capabilities.compute.capacity`, 100 = one vCPU).
    pub compute: u64,
    /// Memory it offers, in bytes.
    pub memory: u64,
    /// Where it is (`mesh.node.location`).
    pub location: NodeLocation,
    /// What the cluster knows of its health.
    pub health: Health,
}

/// A node's health as the cluster sees it. Times are durations since an epoch the caller
/// picks (Unix time in the daemon), the same for every time given to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answering: may take units.
    Alive,
    /// Not answering yet not declared dead: keeps its units, takes no new ones.
    Suspect,
    /// Declared dead; `since` is the last time the cluster heard from it.
    Dead {
        /// The last time the cluster heard from the node.
        since: Duration,
    },
    /// Known to have stopped its units (it fenced itself and said so, or an operator did).
    Fenced,
}

/// A unit to run somewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The unit's name (`compute.units.<name>`).
    pub name: String,
    /// Compute units it needs (`resources.compute.units`).
    pub compute: u64,
    /// Memory it needs, in bytes (`resources.memory.size`).
    pub memory: u64,
    /// Its labels, which other units' selectors match.
    pub labels: BTreeMap<String, String>,
    /// Its affinity and spread rules (`placement`).
    pub placement: Placement,
}

/// A unit moved from one node to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The unit.
    pub unit: String,
    /// The node it leaves.
    pub from: NodeId,
    /// The node it goes to.
    pub to: NodeId,
}

/// A unit that fits on no node, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// The unit.
    pub unit: String,
    /// The constraint that failed, with the unit's name.
    pub reason: String,
}

/// Checked input: nodes by id, units by name, and where units are placed now.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    nodes: Vec<Node>,
    units: Vec<Unit>,
    spreads: Vec<Option<(TopologyScope, u32)>>,
    placement: BTreeMap<String, NodeId>,
}

impl Cluster {
    /// Checks nodes, units and the current placement (unit name → node id).
    pub fn new(
        mut nodes: Vec<Node>,
        mut units: Vec<Unit>,
        placement: BTreeMap<String, NodeId>,
    ) -> Result<Cluster, SchedulerError> {
        nodes.sort_by_key(|n| n.id);
        units.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = nodes.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(SchedulerError::DuplicateNode(w[0].id));
        }
        if let Some(w) = units.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(SchedulerError::DuplicateUnit(w[0].name.clone()));
        }
        for node in nodes.iter().filter(|n| n.runs_units) {
            for (resource, amount) in [("compute", node.compute), ("memory", node.memory)] {
                if amount == 0 {
                    return Err(SchedulerError::ZeroCapacity {
                        node: node.id,
                        resource,
                    });
                }
            }
        }
        let node_ids: BTreeSet<NodeId> = nodes.iter().map(|n| n.id).collect();
        for (unit, &node) in &placement {
            if units.binary_search_by(|u| u.name.cmp(unit)).is_err() {
                return Err(SchedulerError::UnknownUnit {
                    unit: unit.clone(),
                    node,
                });
            }
            if !node_ids.contains(&node) {
                return Err(SchedulerError::UnknownNode {
                    unit: unit.clone(),
                    node,
                });
            }
        }
        let spreads = units
            .iter()
            .map(|u| match &u.placement.spread {
                None => Ok(None),
                Some(s) if s.maximum == 0 => Err(SchedulerError::ZeroSpread(u.name.clone())),
                Some(s) => parse_scope(&s.topology)
                    .map(|scope| Some((scope, s.maximum)))
                    .ok_or_else(|| SchedulerError::UnknownTopology {
                        unit: u.name.clone(),
                        topology: s.topology.clone(),
                    }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Cluster {
            nodes,
            units,
            spreads,
            placement,
        })
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The units, by name.
    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    /// Where units are placed now: unit name → node id.
    pub fn placement(&self) -> &BTreeMap<String, NodeId> {
        &self.placement
    }
}

fn parse_scope(topology: &str) -> Option<TopologyScope> {
    match topology {
        "host" => Some(TopologyScope::Host),
        "rack" => Some(TopologyScope::Rack),
        "zone" => Some(TopologyScope::Zone),
        "region" => Some(TopologyScope::Region),
        _ => None,
    }
}

fn scope_name(scope: TopologyScope) -> &'static str {
    match scope {
        TopologyScope::Host => "host",
        TopologyScope::Rack => "rack",
        TopologyScope::Zone => "zone",
        TopologyScope::Region => "region",
    }
}
