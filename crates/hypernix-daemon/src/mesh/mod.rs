//! Clustering in the daemon: this node's Raft engine, membership agent and cluster CA, the
//! replicated state the cluster's units are placed through, and its status.
//!
//! A clustered daemon works in four loops:
//! 1. `hypernix apply` on any node proposes the configuration and every unit's desired
//!    state to the replicated tables `meta` and `units` ([`Mesh::propose`]);
//! 2. the leader's scheduler ([`schedule`]) places units on nodes that run units, re-places
//!    those of nodes dead for the failover grace period, and writes `placement`;
//! 3. every node's agent ([`agent`]) runs the units placed on it, stops the others, applies
//!    the replicated configuration's security, storage and monitoring settings, and fences
//!    itself (stops its units) when it has not reached a quorum for `failover.fence`;
//! 4. changes of membership, leadership and node health are published as events
//!    ([`events`]).

mod agent;
mod apply;
mod caps;
mod events;
mod incoming;
mod migrate;
mod node;
mod schedule;
mod setup;

pub use migrate::{IncomingPorts, MigrationReport};
pub use node::{MeshNodeStatus, MeshStatus, NodeRecord};
pub use setup::MeshOptions;

/// Starts the agent, the scheduler and the event loops of `mesh` for `daemon`.
pub(crate) fn spawn(daemon: std::sync::Weak<crate::Daemon>, mesh: Arc<Mesh>) {
    agent::spawn(daemon.clone(), mesh.clone());
    schedule::spawn(daemon.clone(), mesh.clone());
    events::spawn(daemon, mesh);
}

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypernix_config::schema::mesh::Mesh as MeshSettings;
use hypernix_mesh::consensus::{Applied, Command, Consensus, ConsensusError, NodeId, Table};
use hypernix_mesh::membership::Members;
use hypernix_mesh::raft::{LeaderClient, RaftNode};
use hypernix_mesh::roles::Duties;
use hypernix_mesh::tls::{ClusterCa, TlsDialer};
use serde_json::Value;
use tokio::sync::watch;

/// How long a proposal may look for a leader before it fails.
const PROPOSE_PATIENCE: Duration = Duration::from_secs(10);
/// How long a linearizable read through the leader may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The `meta` key of the configuration applied last to the cluster.
pub(crate) const CONFIG_KEY: &str = "config";

/// The time since the Unix epoch: the clock failover and fencing decisions use.
pub(crate) fn now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// This node's part in the cluster.
pub struct Mesh {
    id: NodeId,
    listen: String,
    settings: MeshSettings,
    duties: Duties,
    raft: RaftNode,
    client: LeaderClient<TlsDialer>,
    members: watch::Receiver<Members>,
    ca: Option<Arc<Mutex<ClusterCa>>>,
    /// Set while this node has stopped its units for want of a quorum.
    fenced: AtomicBool,
    /// Set once this node leaves: it stops its units and starts none.
    leaving: AtomicBool,
    /// When each node was last seen alive by this node (Unix time).
    last_seen: Mutex<BTreeMap<NodeId, Duration>>,
    /// Units migrating into this node: the agent leaves their waiting QEMU alone.
    incoming: Mutex<std::collections::BTreeSet<String>>,
    /// Held while the key ring is rotated and published, or compared and adopted.
    caps_lock: tokio::sync::Mutex<()>,
}

impl Mesh {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether this node's roles let it run units.
    pub fn runs_units(&self) -> bool {
        self.duties.runs_units
    }

    /// Whether this node leads the cluster now.
    pub fn is_leader(&self) -> bool {
        self.raft.leadership().borrow().leader == Some(self.id)
    }

    /// Replicates `command` through the leader, wherever it is.
    pub async fn propose(&self, command: Command) -> Result<Applied, ConsensusError> {
        self.client.propose(command, PROPOSE_PATIENCE).await
    }

    /// Every document of `table`, as this node has applied it.
    pub fn list(&self, table: Table) -> Result<Vec<(String, Value)>, ConsensusError> {
        self.raft.list_local(table)
    }

    /// Reads `key` of `table` through the leader (linearizable): an answer means a quorum
    /// confirmed the leader's leadership.
    pub async fn linearizable(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<Value>, ConsensusError> {
        let Some((_, addr)) = self.client.leader().await else {
            return Err(ConsensusError::NotLeader {
                node: self.id,
                leader: None,
            });
        };
        let channel = hypernix_mesh::raft::Channel::new(self.client.dialer(), addr);
        channel.read(table, key, READ_TIMEOUT).await
    }

    /// Where `unit` is placed, asking the leader (linearizable).
    pub(crate) async fn placement(
        &self,
        unit: &str,
    ) -> Result<Option<node::PlacementRecord>, ConsensusError> {
        let doc = self.linearizable(Table::Placement, unit).await?;
        Ok(doc.and_then(|d| node::PlacementRecord::parse(&d)))
    }

    /// Whether this node has stopped its units for want of a quorum.
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Issues a single-use join token valid for `ttl`; only the node holding the cluster CA can.
    pub fn join_token(&self, ttl: Duration) -> Result<String, String> {
        let Some(ca) = &self.ca else {
            return Err(format!(
                "node {} does not hold the cluster CA; ask the node that bootstrapped the \
                 cluster for a join token",
                self.id
            ));
        };
        let mut ca = ca
            .lock()
            .map_err(|_| "the cluster CA is poisoned".to_string())?;
        ca.issue_token(ttl, std::time::SystemTime::now())
            .map(|t| t.to_string())
            .map_err(|e| e.to_string())
    }

    /// Where a unit that has no task here runs, as a message for someone asking this node.
    pub fn elsewhere(&self, unit: &str) -> Option<String> {
        let doc = self.raft.read_local(Table::Placement, unit).ok()??;
        let node = node::placement_node(&doc)?;
        let api = self
            .raft
            .read_local(Table::Nodes, &node.to_string())
            .ok()
            .flatten()
            .and_then(|d| serde_json::from_value::<NodeRecord>(d).ok())
            .map_or_else(|| "unknown".to_string(), |r| r.api);
        Some(format!(
            "runs on node {node} (API {api}), not on node {}; ask that node",
            self.id
        ))
    }

    /// Leaves the cluster: its registration and its consensus membership go, and the
    /// leader places its units elsewhere (call [`crate::Daemon::leave_cluster`], which stops
    /// them here first).
    pub(crate) async fn leave(&self) -> Result<(), ConsensusError> {
        self.propose(Command::Delete {
            table: Table::Nodes,
            key: self.id.to_string(),
        })
        .await?;
        self.client.remove_member(self.id, PROPOSE_PATIENCE).await
    }
}
