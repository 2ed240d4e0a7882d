//! What the scheduler refuses, naming the node, unit or setting at fault.

use crate::consensus::NodeId;
use std::time::Duration;

/// Input the scheduler cannot work with; nothing was placed or moved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchedulerError {
    /// Two nodes share an id.
    #[error("node {0} is listed twice: give every node its own id")]
    DuplicateNode(NodeId),
    /// Two units share a name.
    #[error("unit {0} is listed twice: give every unit its own name")]
    DuplicateUnit(String),
    /// A node that runs units offers no compute or no memory.
    #[error(
        "node {node} runs units but has zero {resource} capacity: give it some, or a role that runs no units"
    )]
    ZeroCapacity {
        /// The node.
        node: NodeId,
        /// `compute` or `memory`.
        resource: &'static str,
    },
    /// The current placement names a unit that is not among the units.
    #[error(
        "the placement puts unknown unit {unit} on node {node}: remove it from the placement or add the unit"
    )]
    UnknownUnit {
        /// The unit named.
        unit: String,
        /// The node it is placed on.
        node: NodeId,
    },
    /// The current placement puts a unit on a node that is not among the nodes.
    #[error(
        "the placement puts unit {unit} on unknown node {node}: remove it from the placement or add the node"
    )]
    UnknownNode {
        /// The unit.
        unit: String,
        /// The node named.
        node: NodeId,
    },
    /// A unit's `placement.spread.topology` is not a topology scope.
    #[error("unit {unit}: spread topology {topology:?} is not one of host, rack, zone, region")]
    UnknownTopology {
        /// The unit.
        unit: String,
        /// The topology given.
        topology: String,
    },
    /// A unit's `placement.spread.maximum` is zero, so it fits nowhere.
    #[error("unit {0}: spread maximum is 0, so the unit fits nowhere: set it to 1 or more")]
    ZeroSpread(String),
    /// A rebalancing threshold outside 0 to 1.
    #[error("rebalancing threshold {0} is not between 0 and 1")]
    Threshold(f64),
    /// A fencing timeout not shorter than the grace period, so a unit could run twice.
    #[error(
        "fencing timeout {fence:?} is not shorter than the failover grace period {grace:?}: a unit could run on two nodes; shorten the timeout or lengthen the grace period"
    )]
    FenceNotShorter {
        /// The fencing timeout.
        fence: Duration,
        /// The grace period.
        grace: Duration,
    },
}
