//! Joining over the network: the joiner sends its token and public key over TLS to a node
//! holding the CA, trusting only the CA its token pins, and gets its node certificate back.

use super::ca::{ClusterCa, fingerprint};
use super::identity::{NodeCert, NodeIdentity, NodeKey, NodePublicKey};
use super::provider;
use super::token::{JoinError, JoinToken};
use super::transport::{HANDSHAKE_TIMEOUT, TlsError, server_name};
use crate::consensus::NodeId;
use crate::raft::wire::{FrameError, read_frame, write_frame};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What a joining node sends: its token, id, raw Ed25519 public key and addresses.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinRequest {
    token: String,
    node: NodeId,
    public_key: Vec<u8>,
    addrs: Vec<IpAddr>,
}

/// What it gets back: its certificate and the CA's (DER), or why it was refused.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JoinGrant {
    cluster: String,
    certificate: Vec<u8>,
    ca: Vec<u8>,
}

type JoinResponse = Result<JoinGrant, String>;

/// Answers join requests on `listener` with `ca`, presenting `identity` and the CA certificate;
/// each connection gets [`HANDSHAKE_TIMEOUT`] for its handshake, request and answer.
pub async fn serve_join(
    ca: Arc<Mutex<ClusterCa>>,
    identity: &NodeIdentity,
    listener: TcpListener,
) -> Result<(), TlsError> {
    let config_error = |source| TlsError::Config {
        node: identity.node(),
        source,
    };
    let chain = vec![
        identity.certificate().certificate.clone(),
        identity.certificate().ca.clone(),
    ];
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, identity.private_key())
        .map_err(config_error)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (stream, peer) = listener.accept().await.map_err(TlsError::Accept)?;
        let (ca, acceptor) = (ca.clone(), acceptor.clone());
        tokio::spawn(async move {
            let answered =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, answer_join(&ca, &acceptor, stream)).await;
            match answered {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(%peer, error = %e, "closed a join connection"),
                Err(_) => {
                    tracing::warn!(%peer, "closed a join connection idle for {HANDSHAKE_TIMEOUT:?}")
                }
            }
        });
    }
}

async fn answer_join(
    ca: &Mutex<ClusterCa>,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Result<(), FrameError> {
    let mut tls = acceptor.accept(stream).await?;
    let Some(request) = read_frame::<_, JoinRequest>(&mut tls).await? else {
        return Ok(());
    };
    let response: JoinResponse = admit(ca, &request).map_err(|e| e.to_string());
    write_frame(&mut tls, &response).await
}

fn admit(ca: &Mutex<ClusterCa>, request: &JoinRequest) -> Result<JoinGrant, JoinError> {
    let key = NodePublicKey::from_raw(&request.public_key)?;
    let mut ca = ca
        .lock()
        .map_err(|_| JoinError::Sign("the CA's lock is poisoned".into()))?;
    let cert = ca.admit(
        &request.token,
        SystemTime::now(),
        &key,
        request.node,
        &request.addrs,
    )?;
    Ok(JoinGrant {
        cluster: cert.cluster,
        certificate: cert.certificate.to_vec(),
        ca: cert.ca.to_vec(),
    })
}

/// Joins the cluster through the node at `addr` with `token`, as node `node` serving on `addrs`.
pub async fn join(
    addr: &str,
    token: &str,
    node: NodeId,
    addrs: &[IpAddr],
) -> Result<NodeIdentity, JoinError> {
    let parsed = JoinToken::parse(token)?;
    let key = NodeKey::generate().map_err(|e| JoinError::Sign(e.to_string()))?;
    let failed = |reason: String| JoinError::Connect {
        addr: addr.to_owned(),
        reason,
    };
    let verifier = Arc::new(PinnedCa {
        fingerprint: parsed.ca_fingerprint().to_owned(),
        provider: provider(),
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| failed(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = server_name(addr).map_err(|e| failed(e.to_string()))?;
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let request = JoinRequest {
            token: token.trim().to_owned(),
            node,
            public_key: key.public_key().as_bytes().to_vec(),
            addrs: addrs.to_vec(),
        };
        write_frame(&mut tls, &request).await?;
        read_frame::<_, JoinResponse>(&mut tls).await
    };
    let response = tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no answer within {HANDSHAKE_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("the connection closed without an answer".into()))?;
    let grant = response.map_err(|reason| JoinError::Refused {
        addr: addr.to_owned(),
        reason,
    })?;
    let cert = NodeCert {
        cluster: grant.cluster,
        node,
        certificate: CertificateDer::from(grant.certificate),
        ca: CertificateDer::from(grant.ca),
    };
    NodeIdentity::joined(&parsed, cert, &key)
}

/// Trusts a server whose chain includes the CA with the pinned fingerprint and chains to it.
#[derive(Debug)]
struct PinnedCa {
    fingerprint: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "the server did not present the CA with fingerprint {} that the join token pins",
                    self.fingerprint
                ))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
