//! What the replicated tables hold about nodes and placement, and the cluster's status.

use hypernix_config::schema::mesh::NodeLocation;
use hypernix_mesh::consensus::NodeId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A node's registration in the `nodes` table, written by the node when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    /// The node's id.
    pub id: NodeId,
    /// Where it serves Raft (TCP) and membership gossip (UDP).
    pub addr: String,
    /// Where its API listens.
    pub api: String,
    /// Its roles, as `mesh.node.roles` spells them.
    pub roles: Vec<String>,
    /// Whether it runs units.
    pub runs_units: bool,
    /// Compute units it offers (100 = one vCPU).
    pub compute: u64,
    /// Memory it offers, in bytes.
    pub memory: u64,
    /// Where it is.
    pub location: NodeLocation,
}

/// A unit's entry in the `placement` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRecord {
    /// The node that runs it.
    pub node: NodeId,
    /// When it was placed there (Unix milliseconds).
    pub since_ms: u64,
    /// Why: `placed`, `failover` or `rebalance`.
    pub reason: String,
    /// The node it moves from, when it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NodeId>,
    /// Whether `from` has stopped it (or is known to have: a failover's dead node), so it
    /// may start on `node`.
    #[serde(default)]
    pub released: bool,
}

impl PlacementRecord {
    /// The record of a `placement` document, if it is well formed.
    pub(crate) fn parse(doc: &Value) -> Option<PlacementRecord> {
        serde_json::from_value(doc.clone()).ok()
    }
}

/// The node a `placement` document names, if it is well formed.
pub(crate) fn placement_node(doc: &Value) -> Option<NodeId> {
    PlacementRecord::parse(doc).map(|p| p.node)
}

/// One node as `hypernix mesh status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshNodeStatus {
    /// Its registration.
    #[serde(flatten)]
    pub record: NodeRecord,
    /// `voter`, `learner`, or `none` (not in the consensus membership).
    pub consensus: String,
    /// `alive` (in this node's membership view) or `dead`.
    pub health: String,
    /// Seconds since this node last saw it alive, if ever.
    pub last_seen_secs: Option<f64>,
    /// The units placed on it.
    pub units: Vec<String>,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshStatus {
    /// The cluster's name.
    pub cluster: String,
    /// The node answering.
    pub node: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Whether the answering node has stopped its units for want of a quorum.
    pub fenced: bool,
    /// Other nodes the answering node sees alive.
    pub peers: usize,
    /// `mesh.topology.connections.minPeers` of the answering node.
    pub min_peers: u32,
    /// Whether it sees fewer peers than minPeers (or than the other registered nodes, when fewer).
    pub degraded: bool,
    /// Every registered node.
    pub nodes: Vec<MeshNodeStatus>,
    /// Units not placed on any node.
    pub unplaced: Vec<String>,
}

impl super::Mesh {
    /// The cluster as this node sees it: nodes, roles, consensus membership, health, units.
    pub fn status(&self) -> MeshStatus {
        use hypernix_mesh::consensus::{Consensus, Table};
        let lead = *self.raft.leadership().borrow();
        let metrics = self.raft.metrics();
        let (voters, learners): (Vec<NodeId>, Vec<NodeId>) = {
            let m = metrics.borrow();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().collect(),
                membership.learner_ids().collect(),
            )
        };
        let alive: Vec<NodeId> = self.members.borrow().keys().copied().collect();
        let seen = self.last_seen.lock().map(|s| s.clone()).unwrap_or_default();
        let now = super::now();
        let placement: Vec<(String, Option<NodeId>)> = self
            .list(Table::Placement)
            .unwrap_or_default()
            .into_iter()
            .map(|(unit, doc)| (unit, placement_node(&doc)))
            .collect();
        let nodes: Vec<MeshNodeStatus> = self
            .list(Table::Nodes)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(_, doc)| serde_json::from_value::<NodeRecord>(doc).ok())
            .map(|record| {
                let id = record.id;
                MeshNodeStatus {
                    consensus: if voters.contains(&id) {
                        "voter"
                    } else if learners.contains(&id) {
                        "learner"
                    } else {
                        "none"
                    }
                    .into(),
                    health: if alive.contains(&id) || id == self.id {
                        "alive"
                    } else {
                        "dead"
                    }
                    .into(),
                    last_seen_secs: seen.get(&id).map(|t| now.saturating_sub(*t).as_secs_f64()),
                    units: placement
                        .iter()
                        .filter(|(_, n)| *n == Some(id))
                        .map(|(u, _)| u.clone())
                        .collect(),
                    record,
                }
            })
            .collect();
        let peers = alive.iter().filter(|id| **id != self.id).count();
        let min_peers = self.settings.topology.connections.min_peers;
        let others = nodes.len().saturating_sub(1);
        let degraded = peers < others.min(min_peers as usize);
        let placed: Vec<&String> = placement.iter().map(|(u, _)| u).collect();
        let unplaced = self
            .list(Table::Units)
            .unwrap_or_default()
            .into_iter()
            .map(|(u, _)| u)
            .filter(|u| !placed.contains(&u))
            .collect();
        MeshStatus {
            cluster: self.settings.cluster_name.clone(),
            node: self.id,
            leader: lead.leader,
            term: lead.term,
            fenced: self.fenced(),
            peers,
            min_peers,
            degraded,
            nodes,
            unplaced,
        }
    }
}
