//! The Raft engine: openraft with its log and state machine in one redb file per node.
//!
//! A node is [`RaftNode::start`]ed on its file and a [`Dialer`]; [`serve`] answers its peers'
//! and clients' [`wire`] frames on any byte stream, and [`tcp`] binds both to real sockets.
//! The layout of the redb file is in [`storage`].

pub mod client;
pub mod log_store;
pub mod network;
pub mod node;
pub mod server;
pub mod state_machine;
pub mod storage;
pub mod tcp;
pub mod wire;

pub use client::LeaderClient;
pub use log_store::LogStore;
pub use network::{CallError, Channel, Dialer, Network, Peer};
pub use node::RaftNode;
pub use server::serve;
pub use state_machine::{SnapshotBuilder, StateMachine};

use crate::consensus::{Applied, Command, NodeId};
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

openraft::declare_raft_types!(
    /// The openraft types of hypernix's engine: [`Command`]s in, [`Applied`] out, u64 node ids.
    pub TypeConfig:
        D = Command,
        R = Option<Applied>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// At most this many entries go in one append-entries frame.
const MAX_PAYLOAD_ENTRIES: u64 = 128;
/// Snapshots are sent in chunks of this many bytes.
const SNAPSHOT_CHUNK_LEN: u64 = 1 << 20;
const _: () = assert!(
    MAX_PAYLOAD_ENTRIES as usize * (crate::consensus::MAX_COMMAND_LEN + 1024)
        < wire::MAX_FRAME_LEN as usize
        && SNAPSHOT_CHUNK_LEN as usize * 4 + 4096 < wire::MAX_FRAME_LEN as usize
);

/// The Raft timing of `mesh.consensus.parameters.raft`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftParameters {
    /// A follower that hears no leader for this long (up to twice it, at random) starts an election.
    pub election_timeout: Duration,
    /// How often the leader sends heartbeats; must be shorter than the election timeout.
    pub heartbeat_interval: Duration,
    /// How many applied entries since the last snapshot trigger a new one.
    pub snapshot_interval: u64,
}

impl Default for RaftParameters {
    fn default() -> Self {
        RaftParameters {
            election_timeout: Duration::from_millis(150),
            heartbeat_interval: Duration::from_millis(50),
            snapshot_interval: 10_000,
        }
    }
}

impl RaftParameters {
    /// The openraft configuration for these parameters, validated.
    pub fn to_openraft(&self) -> Result<openraft::Config, EngineError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let election = millis(self.election_timeout);
        let config = openraft::Config {
            cluster_name: "hypernix".to_owned(),
            election_timeout_min: election,
            election_timeout_max: election.saturating_mul(2),
            heartbeat_interval: millis(self.heartbeat_interval),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_interval),
            max_in_snapshot_log_to_keep: 0,
            // Frames stay under MAX_FRAME_LEN: entries are at most MAX_COMMAND_LEN of JSON,
            // and snapshot chunks (bytes as JSON numbers) at most four times their size.
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_LEN,
            ..Default::default()
        };
        config.validate().map_err(|e| EngineError::Parameters {
            reason: e.to_string(),
        })
    }
}

/// A Raft node that could not start.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The parameters are inconsistent.
    #[error(
        "invalid mesh.consensus.parameters.raft: {reason}; make heartbeatInterval shorter than electionTimeout and both non-zero"
    )]
    Parameters {
        /// What is wrong.
        reason: String,
    },
    /// The node's redb file could not be opened.
    #[error("cannot open the Raft state file {}: {source}; check the path, its permissions, and that no other node uses it", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The redb error.
        source: Box<redb::Error>,
    },
    /// The file belongs to another node.
    #[error("the Raft state file {} belongs to node {owner}, not node {node}; give each node its own file", path.display())]
    OtherNode {
        /// The file.
        path: PathBuf,
        /// The node that made it.
        owner: NodeId,
        /// The node being started.
        node: NodeId,
    },
    /// The file's owner could not be read or recorded.
    #[error("cannot record the owner of the Raft state file {}: {reason}; check the disk", path.display())]
    Claim {
        /// The file.
        path: PathBuf,
        /// The storage error.
        reason: String,
    },
    /// openraft refused to start on the stored state.
    #[error("Raft node {node} did not start: {reason}")]
    Start {
        /// The node id.
        node: NodeId,
        /// openraft's error.
        reason: String,
    },
}
