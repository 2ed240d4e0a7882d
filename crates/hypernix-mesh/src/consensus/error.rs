//! What can go wrong when asking a consensus engine for something.

use super::{NodeId, Table};
use crate::consensus::command::{MAX_COMMAND_LEN, MAX_KEY_LEN};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An error from a [`Consensus`](super::Consensus) engine; it crosses the wire as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConsensusError {
    /// The node asked is not the leader; the write was not taken.
    #[error("node {node} is not the leader (leader: {}); send the request to the leader", leader_name(*.leader))]
    NotLeader {
        /// The node that refused.
        node: NodeId,
        /// The leader it knows of, if any.
        leader: Option<NodeId>,
    },
    /// A key was empty or too long.
    #[error("a key of {len} bytes in table {table} is out of range; use 1 to {MAX_KEY_LEN} bytes")]
    InvalidKey {
        /// The table addressed.
        table: Table,
        /// The key's length in bytes.
        len: usize,
    },
    /// A command was larger than [`MAX_COMMAND_LEN`].
    #[error(
        "a command of {len} bytes for key {key:?} in table {table} exceeds {MAX_COMMAND_LEN} bytes; store large data elsewhere and replicate a reference"
    )]
    TooLarge {
        /// The table addressed.
        table: Table,
        /// The key addressed (cut to 64 bytes).
        key: String,
        /// The command's length in bytes.
        len: usize,
    },
    /// The request was taken but its outcome is unknown (leadership lost or a timeout).
    #[error(
        "node {node} lost track of a request: {reason}; read the key to learn whether it took effect"
    )]
    Indeterminate {
        /// The node that took the request.
        node: NodeId,
        /// Why the outcome is unknown.
        reason: String,
    },
    /// The leader could not confirm with a quorum that it still leads; nothing was read.
    #[error(
        "node {node} could not confirm its leadership with a quorum: {reason}; retry once the cluster has a leader"
    )]
    NoQuorum {
        /// The node that was asked.
        node: NodeId,
        /// Why the quorum was not reached.
        reason: String,
    },
    /// A membership change was refused or failed.
    #[error("membership change of node {target} on node {node} failed: {reason}")]
    Membership {
        /// The node that was asked.
        node: NodeId,
        /// The member being added or removed.
        target: NodeId,
        /// Why it failed.
        reason: String,
    },
    /// The engine has stopped, after a shutdown or a fatal storage error.
    #[error("the consensus engine of node {node} has stopped: {reason}; restart the node")]
    Stopped {
        /// The stopped node.
        node: NodeId,
        /// Why it stopped.
        reason: String,
    },
    /// Reading the local replicated state failed.
    #[error(
        "node {node} could not read its state file: {reason}; check the disk and the redb file"
    )]
    Storage {
        /// The node whose storage failed.
        node: NodeId,
        /// The storage error.
        reason: String,
    },
    /// A remote node could not be reached or answered nonsense.
    #[error("node at {addr} did not answer: {reason}; check that it runs and is reachable")]
    Unreachable {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

fn leader_name(leader: Option<NodeId>) -> String {
    leader.map_or_else(|| "unknown".to_owned(), |id| id.to_string())
}
