//! `mesh.consensus`: the consensus engine, its parameters and the quorum.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::check_positive;
use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::Duration;

/// `mesh.consensus`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Consensus {
    /// Consensus engine.
    pub algorithm: ConsensusAlgorithm,
    /// Settings of each engine.
    pub parameters: ConsensusParameters,
    /// Which nodes vote, and how many votes decide.
    pub quorum: Quorum,
}

/// A consensus engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsensusAlgorithm {
    /// Raft: crash faults, one leader.
    #[default]
    Raft,
    /// Practical Byzantine fault tolerance.
    Pbft,
    /// Tendermint BFT.
    Tendermint,
    /// Avalanche sampling.
    Avalanche,
    /// HotStuff BFT.
    Hotstuff,
}

/// `mesh.consensus.parameters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConsensusParameters {
    /// Raft settings.
    pub raft: RaftParameters,
    /// PBFT settings.
    pub pbft: PbftParameters,
    /// Tendermint settings.
    pub tendermint: TendermintParameters,
}

/// `mesh.consensus.parameters.raft`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RaftParameters {
    /// Silence after which a follower stands for leader.
    pub election_timeout: Duration,
    /// Time between the leader's heartbeats.
    pub heartbeat_interval: Duration,
    /// Log entries between snapshots.
    pub snapshot_interval: u64,
    /// Most unacknowledged messages per follower.
    pub max_inflight_msgs: u64,
}

impl Default for RaftParameters {
    fn default() -> Self {
        RaftParameters {
            election_timeout: Duration::millis(150),
            heartbeat_interval: Duration::millis(50),
            snapshot_interval: 10_000,
            max_inflight_msgs: 256,
        }
    }
}

/// `mesh.consensus.parameters.pbft`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PbftParameters {
    /// Faulty nodes tolerated (f; the cluster needs 3f + 1 voters).
    pub fault_tolerance: u32,
    /// Requests per batch.
    pub batch_size: u32,
    /// Requests between checkpoints.
    pub checkpoint_period: u64,
}

impl Default for PbftParameters {
    fn default() -> Self {
        PbftParameters {
            fault_tolerance: 1,
            batch_size: 100,
            checkpoint_period: 100,
        }
    }
}

/// `mesh.consensus.parameters.tendermint`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TendermintParameters {
    /// Target time between blocks.
    pub block_time: Duration,
}

impl Default for TendermintParameters {
    fn default() -> Self {
        TendermintParameters {
            block_time: Duration::millis(1000),
        }
    }
}

/// `mesh.consensus.quorum`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Quorum {
    /// Votes that decide (a majority of the voters when unset).
    pub size: Option<u32>,
    /// Node ids that vote (every controller when empty).
    pub voters: Vec<String>,
    /// Node ids that follow without voting.
    pub observers: Vec<String>,
}

impl Consensus {
    pub(super) fn validate(&self, at: &AttrPath, problems: &mut Problems) {
        let without_engine = match self.algorithm {
            ConsensusAlgorithm::Raft => None,
            ConsensusAlgorithm::Pbft => Some("pbft"),
            ConsensusAlgorithm::Tendermint => Some("tendermint"),
            ConsensusAlgorithm::Avalanche => Some("avalanche"),
            ConsensusAlgorithm::Hotstuff => Some("hotstuff"),
        };
        if let Some(name) = without_engine {
            problems.at(
                at.join("algorithm"),
                format!(
                    "\"{name}\" has no engine yet; use \"raft\", the only consensus engine \
                     hypernix has so far"
                ),
            );
        }
        let params = at.join("parameters");
        let raft = &self.parameters.raft;
        let path = params.join("raft");
        check_positive(
            raft.election_timeout,
            path.join("electionTimeout"),
            problems,
        );
        check_positive(
            raft.heartbeat_interval,
            path.join("heartbeatInterval"),
            problems,
        );
        if !raft.election_timeout.std().is_zero()
            && raft.heartbeat_interval >= raft.election_timeout
        {
            problems.at(
                path.join("heartbeatInterval"),
                format!(
                    "{} is not shorter than electionTimeout ({}), so followers would keep \
                     starting elections; use a few times less than the election timeout",
                    raft.heartbeat_interval, raft.election_timeout
                ),
            );
        }
        at_least_one(
            raft.snapshot_interval,
            path.join("snapshotInterval"),
            problems,
        );
        at_least_one(
            raft.max_inflight_msgs,
            path.join("maxInflightMsgs"),
            problems,
        );

        let pbft = &self.parameters.pbft;
        let path = params.join("pbft");
        at_least_one(pbft.batch_size.into(), path.join("batchSize"), problems);
        at_least_one(
            pbft.checkpoint_period,
            path.join("checkpointPeriod"),
            problems,
        );
        check_positive(
            self.parameters.tendermint.block_time,
            params.join("tendermint").join("blockTime"),
            problems,
        );

        let quorum = &self.quorum;
        let path = at.join("quorum");
        let voters = quorum.voters.len();
        if self.algorithm == ConsensusAlgorithm::Pbft && voters > 0 {
            let needed = 3 * u64::from(pbft.fault_tolerance) + 1;
            if (voters as u64) < needed {
                problems.at(
                    params.join("pbft").join("faultTolerance"),
                    format!(
                        "tolerating {} faulty nodes needs at least {needed} voters, but \
                         quorum.voters lists {voters}; lower faultTolerance or add voters",
                        pbft.fault_tolerance
                    ),
                );
            }
        }
        match quorum.size {
            Some(0) => problems.at(
                path.join("size"),
                "is 0; a quorum needs at least 1 vote (leave it unset for a majority)",
            ),
            Some(size) if voters > 0 && size as usize > voters => problems.at(
                path.join("size"),
                format!(
                    "{size} is more than the {voters} voters, so no decision could be made; \
                     use at most {voters}"
                ),
            ),
            Some(size) if voters > 0 && (size as usize) * 2 <= voters => problems.at(
                path.join("size"),
                format!(
                    "{size} is not a majority of the {voters} voters, so two halves of the \
                     cluster could both decide; use at least {}",
                    voters / 2 + 1
                ),
            ),
            _ => {}
        }
        let voter_set: BTreeSet<&str> = quorum.voters.iter().map(String::as_str).collect();
        for (i, observer) in quorum.observers.iter().enumerate() {
            if voter_set.contains(observer.as_str()) {
                problems.at(
                    path.join("observers").join(index(i)),
                    format!(
                        "`{observer}` is also a voter; a node either votes or observes, so \
                         remove it from one list"
                    ),
                );
            }
        }
    }
}

/// Reports a count of 0 at `path`.
fn at_least_one(value: u64, path: AttrPath, problems: &mut Problems) {
    if value == 0 {
        problems.at(path, "is 0; use 1 or more");
    }
}
