//! Raft over mutual TLS: [`TlsDialer`] and [`serve_tls`], accepting only nodes of the cluster CA.

use super::identity::{NodeIdentity, client_verifier, node_id_of};
use super::provider;
use crate::consensus::NodeId;
use crate::raft::RaftNode;
use crate::raft::network::Dialer;
use crate::raft::server::answer;
use crate::raft::wire::{FrameError, Request, read_frame, write_frame};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a peer may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS transport that could not be set up or stopped serving.
#[derive(Debug, Error)]
pub enum TlsError {
    /// rustls refused the node's certificate, key or CA.
    #[error("cannot set up TLS for node {node}: {source}; check its certificate and key")]
    Config {
        /// The node id.
        node: NodeId,
        /// rustls's error.
        source: rustls::Error,
    },
    /// The listener failed.
    #[error("cannot accept connections: {0}")]
    Accept(#[source] io::Error),
}

/// Dials peers over mutual TLS, presenting this node's certificate and trusting only the cluster CA.
#[derive(Clone)]
pub struct TlsDialer {
    connector: TlsConnector,
    cluster: Arc<str>,
}

impl TlsDialer {
    /// A dialer presenting `identity`.
    pub fn new(identity: &NodeIdentity) -> Result<Self, TlsError> {
        let config_error = |source| TlsError::Config {
            node: identity.node(),
            source,
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(identity.certificate().ca.clone())
            .map_err(config_error)?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(identity.chain(), identity.private_key())
            .map_err(config_error)?;
        Ok(TlsDialer {
            connector: TlsConnector::from(Arc::new(config)),
            cluster: identity.cluster().into(),
        })
    }
}

impl Dialer for TlsDialer {
    type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn dial(&self, addr: &str) -> io::Result<Self::Stream> {
        let name = server_name(addr)?;
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(name, tcp).await?;
        if peer_node(tls.get_ref().1.peer_certificates(), &self.cluster).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{addr} is not a node of cluster {}", self.cluster),
            ));
        }
        Ok(tls)
    }
}

/// Accepts mutual-TLS connections on `listener` and serves each on its own task, until accepting fails.
pub async fn serve_tls(
    node: RaftNode,
    listener: TcpListener,
    identity: &NodeIdentity,
) -> Result<(), TlsError> {
    let config_error = |source| TlsError::Config {
        node: identity.node(),
        source,
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(
            client_verifier(&identity.certificate().ca).map_err(config_error)?,
        )
        .with_single_cert(identity.chain(), identity.private_key())
        .map_err(config_error)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let cluster: Arc<str> = identity.cluster().into();
    loop {
        let (stream, peer) = listener.accept().await.map_err(TlsError::Accept)?;
        let node = node.clone();
        let acceptor = acceptor.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_peer(&node, &acceptor, stream, &cluster).await {
                tracing::warn!(%peer, error = %e, "closed a TLS connection");
            }
        });
    }
}

/// Why a TLS connection was closed.
#[derive(Debug, Error)]
enum PeerError {
    #[error("no TLS handshake within {HANDSHAKE_TIMEOUT:?}")]
    HandshakeTimeout,
    #[error("TLS handshake failed: {0}")]
    Handshake(io::Error),
    #[error("the peer's certificate names no node of cluster {0}")]
    NotANode(Arc<str>),
    #[error("node {peer} sent a request as node {claimed}")]
    Impostor { peer: NodeId, claimed: NodeId },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

async fn serve_peer(
    node: &RaftNode,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    cluster: &Arc<str>,
) -> Result<(), PeerError> {
    stream.set_nodelay(true).map_err(PeerError::Handshake)?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| PeerError::HandshakeTimeout)?
        .map_err(PeerError::Handshake)?;
    let peer = peer_node(tls.get_ref().1.peer_certificates(), cluster)
        .ok_or_else(|| PeerError::NotANode(cluster.clone()))?;
    serve_as(node, tls, peer).await
}

/// Answers requests from node `peer`, closing the connection on one sent in another node's name.
async fn serve_as<S>(node: &RaftNode, mut stream: S, peer: NodeId) -> Result<(), PeerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(request) = read_frame::<_, Request>(&mut stream).await? {
        if let Some(claimed) = sender(&request).filter(|claimed| *claimed != peer) {
            return Err(PeerError::Impostor { peer, claimed });
        }
        let response = answer(node, request).await;
        write_frame(&mut stream, &response).await?;
    }
    Ok(())
}

/// The node a request says it comes from (a candidate, a leader, a node joining or leaving); none for client requests.
fn sender(request: &Request) -> Option<NodeId> {
    match request {
        Request::AppendEntries(rpc) => rpc.vote.leader_id().voted_for(),
        Request::Vote(rpc) => rpc.vote.leader_id().voted_for(),
        Request::InstallSnapshot(rpc) => rpc.vote.leader_id().voted_for(),
        Request::AddMember { id, .. } | Request::RemoveMember { id } => Some(*id),
        Request::Propose(_) | Request::Read { .. } | Request::WhoLeads => None,
    }
}

/// The name a server at `addr` (`host:port`, `[v6]:port`) must have in its certificate.
pub(crate) fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn peer_node(certs: Option<&[CertificateDer<'static>]>, cluster: &str) -> Option<NodeId> {
    node_id_of(certs?.first()?, cluster)
}
