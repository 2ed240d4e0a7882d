//! `hypervisor.mesh`: clustering. The node's identity and roles, the consensus engine,
//! how nodes find and connect to each other, and cluster-wide coordination.

use serde::{Deserialize, Serialize};

use crate::error::Problems;
use crate::path::AttrPath;
use crate::values::{Duration, Size};

mod consensus;
#[cfg(test)]
mod tests;

pub use consensus::{
    Consensus, ConsensusAlgorithm, ConsensusParameters, PbftParameters, Quorum, RaftParameters,
    TendermintParameters,
};

/// `hypervisor.mesh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Mesh {
    /// This host joins a cluster.
    pub enable: bool,
    /// The cluster's name; nodes only join a cluster of the same name.
    pub cluster_name: String,
    /// This node.
    pub node: MeshNode,
    /// How the cluster agrees on its state.
    pub consensus: Consensus,
    /// How nodes find and connect to each other.
    pub topology: Topology,
    /// Cluster-wide scheduling and state.
    pub coordination: Coordination,
    /// How nodes authenticate each other.
    pub security: MeshSecurity,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            enable: false,
            cluster_name: "hypervisor-mesh".into(),
            node: MeshNode::default(),
            consensus: Consensus::default(),
            topology: Topology::default(),
            coordination: Coordination::default(),
            security: MeshSecurity::default(),
        }
    }
}

/// `mesh.node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshNode {
    /// Node id (the host name when unset).
    pub id: Option<String>,
    /// What the node does in the cluster.
    pub roles: Vec<NodeRole>,
    /// Where the node is.
    pub location: NodeLocation,
    /// What the node offers the cluster.
    pub capabilities: NodeCapabilities,
}

impl Default for MeshNode {
    fn default() -> Self {
        MeshNode {
            id: None,
            roles: vec![NodeRole::Worker],
            location: NodeLocation::default(),
            capabilities: NodeCapabilities::default(),
        }
    }
}

/// A node role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// Takes part in consensus and scheduling.
    Controller,
    /// Runs compute units.
    Worker,
    /// Holds storage tiers.
    Storage,
    /// Runs at the edge, with little capacity.
    Edge,
    /// Votes in consensus only, to break ties.
    Witness,
}

/// `mesh.node.location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeLocation {
    /// Availability zone.
    pub zone: String,
    /// Rack.
    pub rack: Option<String>,
    /// Region.
    pub region: Option<String>,
}

impl Default for NodeLocation {
    fn default() -> Self {
        NodeLocation {
            zone: "default".into(),
            rack: None,
            region: None,
        }
    }
}

/// `mesh.node.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeCapabilities {
    /// Compute the node offers.
    pub compute: ComputeCapability,
    /// Storage the node offers.
    pub storage: StorageCapability,
}

/// `mesh.node.capabilities.compute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComputeCapability {
    /// Compute units the node offers (100 = one vCPU).
    pub capacity: u64,
}

impl Default for ComputeCapability {
    fn default() -> Self {
        ComputeCapability { capacity: 1000 }
    }
}

/// `mesh.node.capabilities.storage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StorageCapability {
    /// Storage the node offers (its tiers' total when unset).
    pub capacity: Option<Size>,
}

/// `mesh.topology`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Topology {
    /// Shape of the peer graph.
    pub mode: TopologyMode,
    /// How a node picks its peers.
    pub connections: Connections,
    /// How a node finds peers.
    pub discovery: Discovery,
}

/// A peer-graph shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopologyMode {
    /// Every node connects to every other.
    FullMesh,
    /// Every node connects to some others.
    #[default]
    PartialMesh,
    /// Nodes connect through controllers.
    Hierarchical,
    /// Connections follow load and latency.
    Dynamic,
}

/// `mesh.topology.connections`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Connections {
    /// How peers are picked.
    pub strategy: ConnectionStrategy,
    /// Fewest peers a node keeps.
    pub min_peers: u32,
    /// Most peers a node keeps.
    pub max_peers: u32,
    /// Peers each gossip round reaches.
    pub gossip_fanout: u32,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            strategy: ConnectionStrategy::default(),
            min_peers: 3,
            max_peers: 10,
            gossip_fanout: 3,
        }
    }
}

/// How peers are picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionStrategy {
    /// The closest in topology.
    #[default]
    Nearest,
    /// Any.
    Random,
    /// Weighted by spare capacity.
    CapacityWeighted,
    /// The lowest measured latency.
    LatencyOptimized,
}

/// `mesh.topology.discovery`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Discovery {
    /// How peers are found.
    pub method: DiscoveryMethod,
    /// Peer addresses for static discovery, such as `"10.0.0.2:7946"`.
    pub static_peers: Vec<String>,
    /// Time between discovery rounds.
    pub interval: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            method: DiscoveryMethod::default(),
            static_peers: Vec::new(),
            interval: Duration::secs(30),
        }
    }
}

/// How peers are found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiscoveryMethod {
    /// From `staticPeers`.
    #[default]
    Static,
    /// From DNS records.
    Dns,
    /// By multicast DNS on the local network.
    Mdns,
}

/// `mesh.coordination`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Coordination {
    /// Cluster-wide placement of compute units.
    pub scheduler: MeshScheduler,
    /// Where cluster state is kept.
    pub state_store: StateStore,
    /// What happens to the units of a node that stops answering.
    pub failover: FailoverTimes,
}

/// `mesh.coordination.failover`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FailoverTimes {
    /// How long after a node was last heard from its units start elsewhere.
    pub grace: Duration,
    /// How long a node cut off from quorum keeps its units; shorter than `grace`.
    pub fence: Duration,
}

impl Default for FailoverTimes {
    fn default() -> Self {
        FailoverTimes {
            grace: Duration::secs(30),
            fence: Duration::secs(20),
        }
    }
}

/// `mesh.coordination.scheduler`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshScheduler {
    /// Placement algorithm.
    pub algorithm: MeshSchedulingAlgorithm,
    /// Moving units to even out load.
    pub rebalancing: Rebalancing,
}

/// A cluster placement algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeshSchedulingAlgorithm {
    /// The node with the most spare capacity.
    #[default]
    LeastLoaded,
    /// Fill nodes one by one.
    BinPacking,
    /// Even out nodes.
    Spread,
    /// Any node.
    Random,
}

/// `mesh.coordination.scheduler.rebalancing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rebalancing {
    /// Units are moved to even out load.
    pub enable: bool,
    /// Load imbalance, between 0 and 1, that triggers a move.
    pub threshold: f64,
    /// Time between checks.
    pub interval: Duration,
}

impl Default for Rebalancing {
    fn default() -> Self {
        Rebalancing {
            enable: true,
            threshold: 0.2,
            interval: Duration::secs(300),
        }
    }
}

/// `mesh.coordination.stateStore`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StateStore {
    /// Store implementation.
    pub backend: StateBackend,
    /// Consistency of reads.
    pub consistency: Consistency,
}

/// A state store implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// Built in, replicated by the consensus engine.
    #[default]
    Embedded,
    /// An external etcd cluster.
    Etcd,
}

/// Consistency of state reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consistency {
    /// Reads may be stale.
    Eventual,
    /// Reads see every committed write.
    #[default]
    Strong,
    /// Reads and writes appear in one real-time order.
    Linearizable,
}

/// `mesh.security`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshSecurity {
    /// Node authentication.
    pub authentication: MeshAuthentication,
}

/// `mesh.security.authentication`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshAuthentication {
    /// How nodes prove who they are.
    pub method: AuthMethod,
}

/// A node authentication method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// A pre-shared key.
    Psk,
    /// Certificates on both sides.
    #[default]
    MutualTls,
}

impl Mesh {
    /// Checks names, peer counts, timings and the quorum.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("mesh");
        if self.cluster_name.trim().is_empty() {
            problems.at(at.join("clusterName"), "is empty; name the cluster");
        }
        if self.node.roles.is_empty() {
            problems.at(
                at.join("node").join("roles"),
                "is empty; give the node at least one role, such as \"worker\"",
            );
        }
        let roles = &self.node.roles;
        if roles.contains(&NodeRole::Witness) {
            let runners = [(NodeRole::Worker, "worker"), (NodeRole::Edge, "edge")];
            for (_, name) in runners.iter().filter(|(role, _)| roles.contains(role)) {
                problems.at(
                    at.join("node").join("roles"),
                    format!(
                        "lists \"witness\" with \"{name}\", but a witness runs no units and \
                         a {name} node runs them; drop one of the two roles"
                    ),
                );
            }
        }
        self.consensus.validate(&at.join("consensus"), problems);
        let failover = &self.coordination.failover;
        if failover.fence.std() >= failover.grace.std() {
            problems.at(
                at.join("coordination").join("failover").join("fence"),
                format!(
                    "({}) is not shorter than grace ({}): a cut-off node would still run its \
                     units when they start elsewhere; make fence shorter than grace",
                    failover.fence, failover.grace
                ),
            );
        }

        let topology = at.join("topology");
        let connections = &self.topology.connections;
        let conn = topology.join("connections");
        if connections.min_peers > connections.max_peers {
            problems.at(
                conn.join("minPeers"),
                format!(
                    "{} is more than maxPeers ({}); lower minPeers or raise maxPeers",
                    connections.min_peers, connections.max_peers
                ),
            );
        }
        if connections.gossip_fanout == 0 {
            problems.at(
                conn.join("gossipFanout"),
                "is 0, so gossip would reach nobody; use 1 or more",
            );
        } else if connections.gossip_fanout > connections.max_peers {
            problems.at(
                conn.join("gossipFanout"),
                format!(
                    "{} is more than maxPeers ({}); a node can only gossip to its peers",
                    connections.gossip_fanout, connections.max_peers
                ),
            );
        }
        check_positive(
            self.topology.discovery.interval,
            topology.join("discovery").join("interval"),
            problems,
        );

        let rebalancing = &self.coordination.scheduler.rebalancing;
        let path = at
            .join("coordination")
            .join("scheduler")
            .join("rebalancing");
        if !(0.0..=1.0).contains(&rebalancing.threshold) {
            problems.at(
                path.join("threshold"),
                format!(
                    "{} is out of range; use a load imbalance from 0 to 1",
                    rebalancing.threshold
                ),
            );
        }
        check_positive(rebalancing.interval, path.join("interval"), problems);
    }
}

/// Reports a zero duration at `path`.
fn check_positive(duration: Duration, path: AttrPath, problems: &mut Problems) {
    if duration.std().is_zero() {
        problems.at(
            path,
            "must be longer than 0; use a duration such as \"30s\"",
        );
    }
}
