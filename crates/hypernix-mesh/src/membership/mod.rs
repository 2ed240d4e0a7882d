//! Cluster membership: who is in the mesh, with which roles, by SWIM gossip (foca).
//!
//! Each node runs an [`agent::run`] loop over a datagram socket:
//! 1. it announces itself to the configured static peers (their ids are not known yet, so
//!    it addresses them by address alone);
//! 2. foca probes a random member every period, asks others to probe it indirectly when it
//!    does not answer, marks it suspect, and after the suspicion timeout down;
//! 3. membership changes ride along on probes and periodic gossip to `gossip_fanout` members;
//! 4. after every step the agent publishes the members it believes alive (itself included)
//!    on a watch channel.
//!
//! A restarted node must come back with a higher incarnation than before (a start counter or
//! a clock), so that its new identity wins over the one the others remember as down.

pub mod agent;

pub use agent::{Datagrams, SwimParameters, run};

use crate::consensus::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a node is for in the mesh (`mesh.node.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeRole {
    /// Votes in consensus and may lead.
    Controller,
    /// Runs units.
    Worker,
    /// Holds volumes.
    Storage,
    /// Runs units at the edge and never votes.
    Edge,
    /// Votes and runs no units.
    Witness,
}

impl NodeRole {
    /// The role as `mesh.node.roles` spells it.
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Controller => "controller",
            NodeRole::Worker => "worker",
            NodeRole::Storage => "storage",
            NodeRole::Edge => "edge",
            NodeRole::Witness => "witness",
        }
    }
}

/// A node as it gossips itself: id, address, roles and the incarnation of this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The node's id; 0 only in the placeholder used to reach a peer not yet known.
    pub id: NodeId,
    /// Where its membership agent listens (`host:port`).
    pub addr: String,
    /// Its roles.
    pub roles: Vec<NodeRole>,
    /// Grows with every start of the node, so a restart supersedes the old identity.
    pub incarnation: u64,
}

impl Identity {
    /// A stand-in for the unknown node at `addr`, to announce ourselves to.
    pub fn placeholder(addr: &str) -> Identity {
        Identity {
            id: 0,
            addr: addr.to_owned(),
            roles: Vec::new(),
            incarnation: 0,
        }
    }
}

impl foca::Identity for Identity {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        Some(Identity {
            incarnation: self.incarnation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.addr.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

/// A member as the rest of hypernix sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Where its membership agent listens.
    pub addr: String,
    /// Its roles.
    pub roles: Vec<NodeRole>,
}

/// The members a node believes alive, by id, itself included.
pub type Members = BTreeMap<NodeId, Member>;
