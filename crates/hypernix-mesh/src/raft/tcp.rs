//! Raft over plain TCP.
//!
//! Frames travel unencrypted and unauthenticated: use this only on a trusted network, or
//! use [`crate::tls`] (mutual TLS under the cluster CA), which wraps the same streams.

use super::network::Dialer;
use super::{RaftNode, serve};
use std::io;
use tokio::net::{TcpListener, TcpStream};

/// Dials peers over plain TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    type Stream = TcpStream;

    async fn dial(&self, addr: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Accepts connections on `listener` and serves each on its own task, until accepting fails.
pub async fn serve_tcp(node: RaftNode, listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(&node, stream).await {
                tracing::warn!(%peer, error = %e, "closed a connection after a bad frame");
            }
        });
    }
}
