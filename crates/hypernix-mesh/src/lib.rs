//! Mesh clustering: consensus behind one trait, and its Raft engine.
//!
//! [`consensus::Consensus`] is the interface the rest of hypernix replicates its state
//! through: [`consensus::Command`]s on a key-value state machine of [`consensus::Table`]s.
//! [`raft::RaftNode`] implements it on openraft, with the log and state machine in one redb
//! file per node, and peers reached over framed streams ([`raft::wire`], [`raft::tcp`]).
//! [`membership`] gossips who is in the mesh; [`roles`] decides from each node's roles
//! whether it votes and whether it runs units.
//! [`tls`] secures node-to-node traffic with mutual TLS under a cluster CA and admits
//! new nodes with join tokens.
//! [`scheduler`] decides which node runs which unit, and what happens when a node fails.

#![deny(missing_docs)]

pub mod consensus;
pub mod membership;
pub mod raft;
pub mod roles;
pub mod scheduler;
pub mod tls;
