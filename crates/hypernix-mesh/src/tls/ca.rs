//! The cluster CA: made at bootstrap, saved as PEM, signing node certificates.

use super::files::{CertFile, FileError, certificate_pem, create_dir, read_key, write_new};
use super::identity::{NodeCert, NodeIdentity, NodeKey, NodePublicKey, node_name};
use super::token::{JoinError, JoinToken};
use crate::consensus::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, SanType,
};
use rustls::pki_types::CertificateDer;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// The CA certificate's file in a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The CA private key's file in a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// A cluster CA that could not be made, saved or loaded.
#[derive(Debug, Error)]
pub enum CaError {
    /// The cluster name cannot appear in a DNS name.
    #[error(
        "invalid cluster name {name:?}: use 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
    )]
    ClusterName {
        /// The name given.
        name: String,
    },
    /// rcgen could not make a key or certificate.
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A CA file could not be read, written or trusted.
    #[error(transparent)]
    File(#[from] FileError),
}

/// The cluster's certificate authority: its Ed25519 key, its certificate and the join tokens it issued.
pub struct ClusterCa {
    cluster: String,
    key: KeyPair,
    issuer: rcgen::Certificate,
    cert: CertificateDer<'static>,
    issued: HashMap<String, u64>,
    consumed: HashSet<String>,
}

impl ClusterCa {
    /// Makes a new self-signed CA for `cluster` (a DNS label).
    pub fn create(cluster: &str) -> Result<Self, CaError> {
        check_cluster_name(cluster)?;
        let key = KeyPair::generate_for(&PKCS_ED25519)?;
        let issuer = ca_params(cluster)?.self_signed(&key)?;
        let cert = issuer.der().clone();
        Ok(Self::from_parts(cluster, key, issuer, cert))
    }

    fn from_parts(
        cluster: &str,
        key: KeyPair,
        issuer: rcgen::Certificate,
        cert: CertificateDer<'static>,
    ) -> Self {
        ClusterCa {
            cluster: cluster.to_owned(),
            key,
            issuer,
            cert,
            issued: HashMap::new(),
            consumed: HashSet::new(),
        }
    }

    /// Saves the certificate and key as PEM into `dir` (created if missing), refusing to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        create_dir(dir)?;
        write_new(&dir.join(CA_KEY_FILE), &self.key.serialize_pem(), 0o600)?;
        write_new(&dir.join(CA_CERT_FILE), &certificate_pem(&self.cert), 0o644)?;
        Ok(())
    }

    /// Loads the CA saved in `dir`, checking that the key belongs to the certificate.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let key = read_key(&key_path)?;
        let cert = CertFile::read(dir.join(CA_CERT_FILE))?;
        let cluster = cert
            .dns_names()
            .iter()
            .find_map(|n| n.strip_prefix("ca.")?.strip_suffix(".hypernix"))
            .map(str::to_owned)
            .ok_or_else(|| cert.garbage("no ca.<cluster>.hypernix name"))?;
        cert.check_key(&key, &key_path)?;
        let issuer = ca_params(&cluster)?.self_signed(&key)?;
        Ok(Self::from_parts(&cluster, key, issuer, cert.der))
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The CA certificate, DER.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The SHA-256 fingerprint of the CA certificate, lowercase hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// Signs a certificate for node `id` reachable at `addrs`, for the key `public_key`.
    pub fn sign(
        &self,
        id: NodeId,
        addrs: &[IpAddr],
        public_key: &NodePublicKey,
    ) -> Result<NodeCert, CaError> {
        let name = node_name(id, &self.cluster);
        let mut params = CertificateParams::new(vec![name.clone()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .subject_alt_names
            .extend(addrs.iter().map(|a| SanType::IpAddress(*a)));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(public_key, &self.issuer, &self.key)?;
        Ok(NodeCert {
            cluster: self.cluster.clone(),
            node: id,
            certificate: cert.der().clone(),
            ca: self.cert.clone(),
        })
    }

    /// Makes this (bootstrap) node's own identity: a new key and its certificate.
    pub fn node_identity(&self, id: NodeId, addrs: &[IpAddr]) -> Result<NodeIdentity, CaError> {
        let key = NodeKey::generate()?;
        let cert = self.sign(id, addrs, &key.public_key())?;
        Ok(NodeIdentity::new(cert, &key))
    }

    /// Issues a single-use join token valid for `ttl` from `now`.
    pub fn issue_token(&mut self, ttl: Duration, now: SystemTime) -> Result<JoinToken, JoinError> {
        let token = JoinToken::issue(&self.fingerprint(), ttl, now)?;
        self.issued
            .insert(token.secret().to_owned(), token.expires());
        Ok(token)
    }

    /// Admits node `id` presenting `token` at `now` with its public key: consumes the token and signs its certificate.
    pub fn admit(
        &mut self,
        token: &str,
        now: SystemTime,
        public_key: &NodePublicKey,
        id: NodeId,
        addrs: &[IpAddr],
    ) -> Result<NodeCert, JoinError> {
        let token = JoinToken::parse(token)?;
        if token.ca_fingerprint() != self.fingerprint() {
            return Err(JoinError::WrongCa {
                expected: token.ca_fingerprint().to_owned(),
                found: self.fingerprint(),
            });
        }
        if self.consumed.contains(token.secret()) {
            return Err(JoinError::Used);
        }
        match self.issued.get(token.secret()) {
            Some(expires) if *expires == token.expires() => {}
            _ => return Err(JoinError::Unknown),
        }
        if token.is_expired(now) {
            return Err(JoinError::Expired {
                expires: token.expires(),
            });
        }
        let cert = self
            .sign(id, addrs, public_key)
            .map_err(|e| JoinError::Sign(e.to_string()))?;
        self.issued.remove(token.secret());
        self.consumed.insert(token.secret().to_owned());
        Ok(cert)
    }
}

/// The SHA-256 fingerprint of a certificate, lowercase hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ca_params(cluster: &str) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(vec![format!("ca.{cluster}.hypernix")])?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("hypernix cluster CA {cluster}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn check_cluster_name(name: &str) -> Result<(), CaError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CaError::ClusterName {
            name: name.to_owned(),
        })
    }
}
