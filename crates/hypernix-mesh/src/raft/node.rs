//! [`RaftNode`]: one node's Raft engine, implementing [`Consensus`] on openraft.

use super::network::{Dialer, Network};
use super::storage::{self, Storage};
use super::{EngineError, RaftParameters, TypeConfig, state_machine};
use crate::consensus::{
    Applied, Command, Consensus, ConsensusError, Leadership, MAX_COMMAND_LEN, NodeId, Role, Table,
    command,
};
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// One node's Raft engine: openraft over the node's redb file and a [`Dialer`]'s network.
#[derive(Clone)]
pub struct RaftNode {
    id: NodeId,
    raft: Raft<TypeConfig>,
    storage: Storage,
    leadership: watch::Receiver<Leadership>,
}

impl RaftNode {
    /// Starts node `id` on the redb file at `path` (created if missing), reaching peers with `dialer`.
    pub async fn start<D: Dialer>(
        id: NodeId,
        path: &Path,
        parameters: &RaftParameters,
        dialer: Arc<D>,
    ) -> Result<RaftNode, EngineError> {
        let config = Arc::new(parameters.to_openraft()?);
        let (log_store, state_machine) = storage::open(path)?;
        storage::claim(&log_store, path, id)?;
        let storage = state_machine.storage().clone();
        let raft = Raft::new(id, config, Network::new(dialer), log_store, state_machine)
            .await
            .map_err(|e| EngineError::Start {
                node: id,
                reason: e.to_string(),
            })?;
        let leadership = watch_leadership(&raft);
        Ok(RaftNode {
            id,
            raft,
            storage,
            leadership,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Makes a new cluster of `voters` (id → address); does nothing if this node already has one.
    pub async fn initialize(
        &self,
        voters: &BTreeMap<NodeId, String>,
    ) -> Result<(), ConsensusError> {
        let members: BTreeMap<NodeId, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(ConsensusError::Membership {
                node: self.id,
                target: self.id,
                reason: e.to_string(),
            }),
            Err(RaftError::Fatal(e)) => Err(self.stopped(e)),
        }
    }

    /// Stops the engine; the redb file stays as it is for a later [`RaftNode::start`].
    pub async fn shutdown(&self) -> Result<(), ConsensusError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ConsensusError::Stopped {
                node: self.id,
                reason: e.to_string(),
            })
    }

    /// Reads `key` from `table` as this node has applied it, without asking the leader.
    ///
    /// It works on any member, a learner included, and may miss recent writes; use
    /// [`Consensus::read`] on the leader for a linearizable read.
    pub fn read_local(&self, table: Table, key: &str) -> Result<Option<Value>, ConsensusError> {
        Self::check_key(table, key)?;
        state_machine::read(&self.storage, table, key).map_err(|reason| ConsensusError::Storage {
            node: self.id,
            reason,
        })
    }

    /// Every document of `table` as this node has applied it (see [`RaftNode::read_local`]).
    pub fn list_local(&self, table: Table) -> Result<Vec<(String, Value)>, ConsensusError> {
        state_machine::list(&self.storage, table).map_err(|reason| ConsensusError::Storage {
            node: self.id,
            reason,
        })
    }

    /// Whether this node is a voter or learner in the membership it has stored.
    pub async fn is_member(&self) -> bool {
        let mut metrics = self.raft.metrics();
        // openraft publishes the stored membership once it has loaded the node's state.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            metrics.wait_for(|m| m.membership_config.log_id().is_some()),
        )
        .await;
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    /// The leader this node knows of and its address, from the membership it has applied.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, addr))
    }

    /// openraft's metrics of this node: state, log, applied and snapshot positions, membership.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    pub(super) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    fn stopped(&self, e: impl std::fmt::Display) -> ConsensusError {
        ConsensusError::Stopped {
            node: self.id,
            reason: e.to_string(),
        }
    }

    fn check_key(table: Table, key: &str) -> Result<(), ConsensusError> {
        if command::valid_key(key) {
            Ok(())
        } else {
            Err(ConsensusError::InvalidKey {
                table,
                len: key.len(),
            })
        }
    }

    fn membership_error(
        &self,
        target: NodeId,
        e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> ConsensusError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                ConsensusError::NotLeader {
                    node: self.id,
                    leader: f.leader_id,
                }
            }
            RaftError::APIError(e) => ConsensusError::Membership {
                node: self.id,
                target,
                reason: e.to_string(),
            },
            RaftError::Fatal(e) => self.stopped(e),
        }
    }
}

/// Follows openraft's metrics and publishes the leader and term when they change.
fn watch_leadership(raft: &Raft<TypeConfig>) -> watch::Receiver<Leadership> {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(Leadership::default());
    tokio::spawn(async move {
        loop {
            let now = {
                let m = metrics.borrow_and_update();
                Leadership {
                    leader: m.current_leader,
                    term: m.current_term,
                }
            };
            tx.send_if_modified(|seen| std::mem::replace(seen, now) != now);
            if metrics.changed().await.is_err() {
                break;
            }
        }
    });
    rx
}

impl Consensus for RaftNode {
    async fn propose(&self, command: Command) -> Result<Applied, ConsensusError> {
        Self::check_key(command.table(), command.key())?;
        let len = command.encoded_len();
        if len > MAX_COMMAND_LEN {
            return Err(ConsensusError::TooLarge {
                table: command.table(),
                key: command.key().chars().take(64).collect(),
                len,
            });
        }
        match self.raft.client_write(command).await {
            Ok(response) => response.data.ok_or_else(|| ConsensusError::Indeterminate {
                node: self.id,
                reason: "the entry applied was not a command".to_owned(),
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader {
                    node: self.id,
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(ConsensusError::Indeterminate {
                node: self.id,
                reason: e.to_string(),
            }),
            Err(RaftError::Fatal(e)) => Err(ConsensusError::Indeterminate {
                node: self.id,
                reason: format!("the engine stopped: {e}"),
            }),
        }
    }

    async fn read(&self, table: Table, key: &str) -> Result<Option<Value>, ConsensusError> {
        Self::check_key(table, key)?;
        match self.raft.ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                return Err(ConsensusError::NotLeader {
                    node: self.id,
                    leader: f.leader_id,
                });
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                return Err(ConsensusError::NoQuorum {
                    node: self.id,
                    reason: e.to_string(),
                });
            }
            Err(RaftError::Fatal(e)) => return Err(self.stopped(e)),
        }
        self.read_local(table, key)
    }

    async fn add_member(&self, id: NodeId, addr: &str, role: Role) -> Result<(), ConsensusError> {
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map_err(|e| self.membership_error(id, e))?;
        if role == Role::Voter {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(|e| self.membership_error(id, e))?;
        }
        Ok(())
    }

    async fn remove_member(&self, id: NodeId) -> Result<(), ConsensusError> {
        let is_voter = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|voter| voter == id);
        let change = if is_voter {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.membership_error(id, e))?;
        Ok(())
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    async fn snapshot(&self) -> Result<(), ConsensusError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| self.stopped(e))
    }
}
