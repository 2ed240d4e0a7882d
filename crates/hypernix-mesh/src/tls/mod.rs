//! Mutual TLS between nodes: a cluster CA made at bootstrap, node certificates, join tokens.
//!
//! The bootstrap node makes a [`ClusterCa`] and its own [`NodeIdentity`]; it issues single-use
//! [`JoinToken`]s; a joining node presents one with its public key and gets a [`NodeCert`]
//! signed by the CA, after checking the CA's fingerprint against the token. Nodes then talk
//! Raft over [`TlsDialer`] and [`serve_tls`], which accept only certificates of the cluster CA.
//! [`join`] and [`serve_join`] carry a join over the network; [`files`] keeps CA and node
//! certificates and keys as PEM files.

pub mod ca;
pub mod enroll;
pub mod files;
pub mod identity;
pub mod token;
pub mod transport;

pub use ca::{CaError, ClusterCa};
pub use enroll::{join, serve_join};
pub use files::FileError;
pub use identity::{CertError, NodeCert, NodeIdentity, NodeKey, NodePublicKey};
pub use token::{JoinError, JoinToken};
pub use transport::{TlsDialer, TlsError, serve_tls};

use std::sync::Arc;

/// The crypto provider every TLS configuration of the mesh uses: rustls's ring provider.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests;
