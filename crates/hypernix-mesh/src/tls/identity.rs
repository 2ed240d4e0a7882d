//! A node's identity: its key, its certificate signed by the cluster CA, and node names.

use super::files::{CertFile, FileError, certificate_pem, create_dir, read_key, write_new};
use super::token::{JoinError, JoinToken};
use crate::consensus::NodeId;
use rcgen::{KeyPair, PKCS_ED25519, PublicKeyData, SignatureAlgorithm};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

/// The DNS name in the certificate of node `id` of `cluster`: `node-<id>.<cluster>.hypernix`.
pub fn node_name(id: NodeId, cluster: &str) -> String {
    format!("node-{id}.{cluster}.hypernix")
}

/// The node id named in `cert` for `cluster`, if it is a node certificate of that cluster.
pub fn node_id_of(cert: &CertificateDer<'_>, cluster: &str) -> Option<NodeId> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let suffix = format!(".{cluster}.hypernix");
    parsed.valid_dns_names().find_map(|n| {
        n.strip_prefix("node-")?
            .strip_suffix(suffix.as_str())?
            .parse()
            .ok()
    })
}

/// A certificate that is not a valid node certificate of the cluster.
#[derive(Debug, Error)]
pub enum CertError {
    /// The certificate does not chain to the cluster CA, or is unusable.
    #[error(
        "the certificate of node {node} does not chain to the CA of cluster {cluster}: {reason}; get a new one with a join token"
    )]
    Untrusted {
        /// The node id claimed.
        node: NodeId,
        /// The cluster.
        cluster: String,
        /// Why it was refused.
        reason: String,
    },
    /// The certificate names another node or cluster.
    #[error(
        "the certificate is not that of node {node} of cluster {cluster}; get a new one with a join token"
    )]
    OtherName {
        /// The node id expected.
        node: NodeId,
        /// The cluster.
        cluster: String,
    },
}

/// A node certificate as the CA signed it, with the CA certificate it chains to.
#[derive(Debug, Clone)]
pub struct NodeCert {
    /// The cluster's name.
    pub cluster: String,
    /// The node id in the certificate.
    pub node: NodeId,
    /// The node certificate, DER.
    pub certificate: CertificateDer<'static>,
    /// The CA certificate, DER.
    pub ca: CertificateDer<'static>,
}

impl NodeCert {
    /// Checks that the certificate chains to `ca` and names `node` of `cluster`, as a TLS peer would.
    pub fn verify(&self) -> Result<(), CertError> {
        let untrusted = |reason: String| CertError::Untrusted {
            node: self.node,
            cluster: self.cluster.clone(),
            reason,
        };
        let verifier = client_verifier(&self.ca).map_err(|e| untrusted(e.to_string()))?;
        verifier
            .verify_client_cert(&self.certificate, &[], UnixTime::now())
            .map_err(|e| untrusted(e.to_string()))?;
        match node_id_of(&self.certificate, &self.cluster) {
            Some(id) if id == self.node => Ok(()),
            _ => Err(CertError::OtherName {
                node: self.node,
                cluster: self.cluster.clone(),
            }),
        }
    }
}

/// A node's Ed25519 key pair, made by the node itself; only its public key leaves it.
pub struct NodeKey(KeyPair);

impl NodeKey {
    /// Makes a new Ed25519 key.
    pub fn generate() -> Result<Self, rcgen::Error> {
        KeyPair::generate_for(&PKCS_ED25519).map(NodeKey)
    }

    /// The public key, to send with a join request.
    pub fn public_key(&self) -> NodePublicKey {
        NodePublicKey(self.0.public_key_raw().to_vec())
    }
}

/// A node's raw Ed25519 public key (32 bytes), as presented when joining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePublicKey(Vec<u8>);

impl NodePublicKey {
    /// A public key from its 32 raw bytes.
    pub fn from_raw(bytes: &[u8]) -> Result<Self, JoinError> {
        if bytes.len() == 32 {
            Ok(NodePublicKey(bytes.to_vec()))
        } else {
            Err(JoinError::PublicKey { len: bytes.len() })
        }
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PublicKeyData for NodePublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ED25519
    }
}

/// The node certificate's file in a node identity directory.
pub const NODE_CERT_FILE: &str = "node.crt";
/// The node key's file in a node identity directory (mode 0600).
pub const NODE_KEY_FILE: &str = "node.key";
/// The cluster CA certificate's file in a node identity directory.
pub const NODE_CA_FILE: &str = "cluster-ca.crt";

/// What a node proves itself with over TLS: its certificate, key and the cluster CA it trusts.
pub struct NodeIdentity {
    cert: NodeCert,
    key_pem: String,
    key_der: Vec<u8>,
}

impl NodeIdentity {
    /// The identity made of a certificate and the key it was signed for.
    pub fn new(cert: NodeCert, key: &NodeKey) -> Self {
        NodeIdentity {
            cert,
            key_pem: key.0.serialize_pem(),
            key_der: key.0.serialize_der(),
        }
    }

    /// The identity of a joining node, refusing a CA other than the one `token` pins.
    pub fn joined(token: &JoinToken, cert: NodeCert, key: &NodeKey) -> Result<Self, JoinError> {
        token.check_ca(&cert.ca)?;
        cert.verify()
            .map_err(|e| JoinError::Certificate(e.to_string()))?;
        Ok(Self::new(cert, key))
    }

    /// Saves the certificate, key (mode 0600) and CA certificate as PEM into `dir`, refusing to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), FileError> {
        create_dir(dir)?;
        write_new(&dir.join(NODE_KEY_FILE), &self.key_pem, 0o600)?;
        write_new(
            &dir.join(NODE_CERT_FILE),
            &certificate_pem(&self.cert.certificate),
            0o644,
        )?;
        write_new(
            &dir.join(NODE_CA_FILE),
            &certificate_pem(&self.cert.ca),
            0o644,
        )
    }

    /// Loads the identity saved in `dir`, checking the key and that the certificate chains to the CA.
    pub fn load(dir: &Path) -> Result<Self, FileError> {
        let key_path = dir.join(NODE_KEY_FILE);
        let key = read_key(&key_path)?;
        let cert = CertFile::read(dir.join(NODE_CERT_FILE))?;
        let ca = CertFile::read(dir.join(NODE_CA_FILE))?;
        let (node, cluster) = cert
            .dns_names()
            .iter()
            .find_map(|n| {
                let (id, cluster) = n
                    .strip_prefix("node-")?
                    .strip_suffix(".hypernix")?
                    .split_once('.')?;
                Some((id.parse().ok()?, cluster.to_owned()))
            })
            .ok_or_else(|| cert.garbage("no node-<id>.<cluster>.hypernix name"))?;
        cert.check_key(&key, &key_path)?;
        let node_cert = NodeCert {
            cluster,
            node,
            certificate: cert.der.clone(),
            ca: ca.der,
        };
        node_cert
            .verify()
            .map_err(|e| cert.garbage(e.to_string()))?;
        Ok(Self::new(node_cert, &NodeKey(key)))
    }

    /// The node id.
    pub fn node(&self) -> NodeId {
        self.cert.node
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cert.cluster
    }

    /// The node certificate and the CA certificate it chains to.
    pub fn certificate(&self) -> &NodeCert {
        &self.cert
    }

    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.certificate.clone()]
    }

    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A verifier accepting only client certificates that chain to `ca`.
pub(crate) fn client_verifier(
    ca: &CertificateDer<'static>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
}
