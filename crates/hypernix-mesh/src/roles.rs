//! Node roles enforced: who votes in consensus and who may run units.
//!
//! A node's configured roles (`mesh.node.roles`) decide two things:
//! 1. consensus: every node votes, except an edge node, which joins as a learner: it
//!    receives the replicated state and never counts towards quorum;
//! 2. units: worker and edge nodes run them; controller, storage and witness nodes alone do
//!    not, and a witness never does, so a node listing witness with worker or edge is refused.
//!
//! A witness-only node therefore votes and runs nothing: two workers and a witness keep a
//! quorum of two when one worker dies. [`consensus_members`] turns the members' roles into
//! the voters for [`RaftNode::initialize`](crate::raft::RaftNode::initialize) and the
//! learners to add with [`Consensus::add_member`](crate::consensus::Consensus::add_member).

use crate::consensus::{NodeId, Role};
use crate::membership::NodeRole;
use std::collections::BTreeMap;
use thiserror::Error;

/// What a node's roles let it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duties {
    /// How it takes part in consensus: a voter, or a learner for an edge node.
    pub consensus: Role,
    /// Whether units may be placed on it.
    pub runs_units: bool,
}

/// Roles a node cannot have, or a cluster that cannot be formed from its members' roles.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RolesError {
    /// The node lists no role at all.
    #[error("node {node} has no roles; give it at least one in mesh.node.roles, such as worker")]
    NoRoles {
        /// The node.
        node: NodeId,
    },
    /// The node lists witness together with a role that runs units.
    #[error(
        "node {node} lists witness with {}, but a witness runs no units and a {} node runs them; drop one of the two roles from mesh.node.roles",
        .other.name(),
        .other.name()
    )]
    WitnessRunsUnits {
        /// The node.
        node: NodeId,
        /// The role that runs units: worker or edge.
        other: NodeRole,
    },
    /// The same node id appears twice among the members.
    #[error("node {node} is listed twice among the members; give every node its own id")]
    Duplicate {
        /// The node.
        node: NodeId,
    },
    /// No member votes, so no quorum can ever form.
    #[error(
        "none of the {members} members votes (edge nodes never do); give at least one node a role other than edge, such as controller or witness"
    )]
    NoVoters {
        /// How many members there are.
        members: usize,
    },
}

/// Decides how node `node` with `roles` takes part in consensus and whether it runs units.
pub fn duties(node: NodeId, roles: &[NodeRole]) -> Result<Duties, RolesError> {
    if roles.is_empty() {
        return Err(RolesError::NoRoles { node });
    }
    let has = |role| roles.contains(&role);
    if has(NodeRole::Witness) {
        let other = [NodeRole::Worker, NodeRole::Edge]
            .into_iter()
            .find(|r| has(*r));
        if let Some(other) = other {
            return Err(RolesError::WitnessRunsUnits { node, other });
        }
    }
    Ok(Duties {
        consensus: if has(NodeRole::Edge) {
            Role::Learner
        } else {
            Role::Voter
        },
        runs_units: has(NodeRole::Worker) || has(NodeRole::Edge),
    })
}

/// A cluster's consensus membership by role: voters and learners, each id → Raft address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsensusMembers {
    /// The nodes that vote: the members to pass to `RaftNode::initialize`.
    pub voters: BTreeMap<NodeId, String>,
    /// The nodes that only receive the log: to add with `add_member(id, addr, Role::Learner)`.
    pub learners: BTreeMap<NodeId, String>,
}

/// Splits `members` (id, Raft address, roles) into voters and learners by their roles.
pub fn consensus_members<'a>(
    members: impl IntoIterator<Item = (NodeId, &'a str, &'a [NodeRole])>,
) -> Result<ConsensusMembers, RolesError> {
    let mut split = ConsensusMembers::default();
    for (node, addr, roles) in members {
        if split.voters.contains_key(&node) || split.learners.contains_key(&node) {
            return Err(RolesError::Duplicate { node });
        }
        let set = match duties(node, roles)?.consensus {
            Role::Voter => &mut split.voters,
            Role::Learner => &mut split.learners,
        };
        set.insert(node, addr.to_owned());
    }
    if split.voters.is_empty() {
        return Err(RolesError::NoVoters {
            members: split.learners.len(),
        });
    }
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;
    use NodeRole::{Controller, Edge, Storage, Witness, Worker};

    fn duty(roles: &[NodeRole]) -> (Role, bool) {
        let d = duties(7, roles).expect("valid roles");
        (d.consensus, d.runs_units)
    }

    #[test]
    fn each_role_votes_and_runs_units_as_promised() {
        assert_eq!(duty(&[Controller]), (Role::Voter, false));
        assert_eq!(duty(&[Worker]), (Role::Voter, true));
        assert_eq!(duty(&[Storage]), (Role::Voter, false));
        assert_eq!(duty(&[Edge]), (Role::Learner, true));
        assert_eq!(duty(&[Witness]), (Role::Voter, false));
        assert_eq!(duty(&[Controller, Worker, Storage]), (Role::Voter, true));
        assert_eq!(duty(&[Controller, Witness, Storage]), (Role::Voter, false));
        // An edge node never votes, whatever else it lists.
        assert_eq!(duty(&[Controller, Edge]), (Role::Learner, true));
        assert_eq!(duty(&[Storage, Edge, Edge]), (Role::Learner, true));
    }

    #[test]
    fn a_witness_that_would_run_units_is_refused() {
        for (roles, other) in [
            (vec![Witness, Worker], Worker),
            (vec![Edge, Witness], Edge),
            (vec![Worker, Witness, Edge], Worker),
        ] {
            let err = duties(3, &roles).unwrap_err();
            assert_eq!(err, RolesError::WitnessRunsUnits { node: 3, other });
            let text = err.to_string();
            assert!(
                text.contains(&format!("node 3 lists witness with {}", other.name())),
                "{text}"
            );
            assert!(text.contains("drop one of the two roles"), "{text}");
        }
        let err = duties(4, &[]).unwrap_err();
        assert_eq!(err, RolesError::NoRoles { node: 4 });
        assert!(err.to_string().contains("at least one"), "{err}");
    }

    #[test]
    fn members_split_into_voters_and_learners() {
        let members: [(NodeId, &str, &[NodeRole]); 5] = [
            (1, "a:1", &[Worker]),
            (2, "b:1", &[Worker]),
            (3, "c:1", &[Witness]),
            (4, "d:1", &[Edge]),
            (5, "e:1", &[Edge, Storage]),
        ];
        let split = consensus_members(members).unwrap();
        let ids = |m: &BTreeMap<NodeId, String>| m.keys().copied().collect::<Vec<_>>();
        assert_eq!(ids(&split.voters), [1, 2, 3]);
        assert_eq!(ids(&split.learners), [4, 5]);
        assert_eq!(split.voters[&3], "c:1");
        assert_eq!(split.learners[&4], "d:1");
    }

    #[test]
    fn a_cluster_needs_a_voter_valid_roles_and_distinct_ids() {
        let edges: [(NodeId, &str, &[NodeRole]); 2] = [(1, "a:1", &[Edge]), (2, "b:1", &[Edge])];
        let err = consensus_members(edges).unwrap_err();
        assert_eq!(err, RolesError::NoVoters { members: 2 });
        assert!(
            err.to_string().contains("none of the 2 members votes"),
            "{err}"
        );

        let twice: [(NodeId, &str, &[NodeRole]); 2] =
            [(1, "a:1", &[Worker]), (1, "b:1", &[Witness])];
        assert_eq!(
            consensus_members(twice).unwrap_err(),
            RolesError::Duplicate { node: 1 }
        );

        let bad: [(NodeId, &str, &[NodeRole]); 2] =
            [(1, "a:1", &[Worker]), (2, "b:1", &[Witness, Edge])];
        assert_eq!(
            consensus_members(bad).unwrap_err(),
            RolesError::WitnessRunsUnits {
                node: 2,
                other: Edge
            }
        );
    }
}
