//! The engine-independent consensus interface.
//!
//! A [`Consensus`] engine keeps one replicated key-value state machine on every member.
//! A write goes in four steps:
//! 1. a caller hands a [`Command`] to [`Consensus::propose`] on the leader (any other node
//!    answers [`ConsensusError::NotLeader`] with the leader it knows of);
//! 2. the engine orders the command in its log and replicates it until a quorum holds it;
//! 3. every member applies committed commands in log order, so all reach the same state;
//! 4. the leader answers with what applying did ([`Applied`]).
//!
//! A [`Consensus::read`] is linearizable: the engine first confirms that it still leads and
//! that it has applied everything committed before the read began.
//!
//! The interface names no Raft concept a Byzantine engine lacks: `term` in [`Leadership`] is
//! Raft's term or a BFT engine's view number, members are added as voters (validators) or
//! learners (observers), and a command's result is a deterministic function of the log, which
//! a BFT engine computes the same way.

pub mod command;
pub mod error;

pub use command::{Applied, Command, MAX_COMMAND_LEN, MAX_KEY_LEN, Table};
pub use error::ConsensusError;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use tokio::sync::watch;

/// A cluster member's id, unique in the cluster.
pub type NodeId = u64;

/// How a member takes part in consensus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Votes, and counts towards quorum.
    Voter,
    /// Receives the log but never votes.
    Learner,
}

/// Who leads, as this node last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// The leader, or `None` during an election.
    pub leader: Option<NodeId>,
    /// The current term (Raft) or view (BFT); it only grows.
    pub term: u64,
}

/// A consensus engine replicating the key-value state machine across the cluster.
pub trait Consensus: Send + Sync {
    /// Replicates `command` and answers what applying it did, once it is committed.
    ///
    /// It waits as long as that takes (a leader cut off from its quorum waits until the
    /// partition heals or it learns of a new leader); callers bound it with a timeout, after
    /// which the outcome is unknown.
    fn propose(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<Applied, ConsensusError>> + Send;

    /// Reads `key` from `table` linearizably: the answer reflects every write committed before.
    fn read(
        &self,
        table: Table,
        key: &str,
    ) -> impl Future<Output = Result<Option<Value>, ConsensusError>> + Send;

    /// Adds node `id`, reachable at `addr`, as a voter or a learner.
    fn add_member(
        &self,
        id: NodeId,
        addr: &str,
        role: Role,
    ) -> impl Future<Output = Result<(), ConsensusError>> + Send;

    /// Removes node `id` from the cluster, voter or learner.
    fn remove_member(&self, id: NodeId) -> impl Future<Output = Result<(), ConsensusError>> + Send;

    /// A watch of the leader and term as this node sees them.
    fn leadership(&self) -> watch::Receiver<Leadership>;

    /// Asks the engine to compact its log into a snapshot of the state machine now.
    fn snapshot(&self) -> impl Future<Output = Result<(), ConsensusError>> + Send;
}
