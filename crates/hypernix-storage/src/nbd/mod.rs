//! An NBD server: one export per volume, on a unix socket or TCP.
//!
//! A connection goes through these steps (the fixed newstyle protocol of the NBD
//! specification, `doc/proto.md` in the NBD repository):
//! 1. the server sends `NBDMAGIC`, `IHAVEOPT` and its flags (fixed newstyle, no zeroes);
//! 2. the client answers with its flags; without fixed newstyle, or with unknown flags, the
//!    server closes the connection;
//! 3. option haggling: the client sends options (`IHAVEOPT`, option, length, data) and the
//!    server answers each: LIST names every volume, STRUCTURED_REPLY turns on structured
//!    replies, SET_META_CONTEXT selects `base:allocation`, INFO describes an export (size,
//!    flags, block sizes), ABORT ends the connection; unknown options get ERR_UNSUP;
//!    oversized options (> 64 KiB) or a bad magic close the connection;
//! 4. GO (or the old EXPORT_NAME) picks the export, named after the volume (the empty name
//!    picks the only volume, if there is exactly one), and starts transmission;
//! 5. transmission: each request (28-byte header, plus data for WRITE) runs on a blocking
//!    thread, up to 64 in flight per connection, and its reply is written whole under a lock, so replies may
//!    come out of order, matched by cookie; READ and BLOCK_STATUS answer with structured
//!    chunks when negotiated, other commands with simple replies;
//! 6. bad requests (out of range, oversize reads, unknown commands, BLOCK_STATUS without
//!    the context) get an error reply; a bad magic or an oversize WRITE closes the
//!    connection; DISC closes it after the requests in flight are answered.

pub mod client;
pub mod delta;
mod handshake;
pub mod proto;
mod transmission;

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, UnixListener};

use crate::store::Store;

/// Serves the volumes of a store over NBD.
///
/// Requests run on tokio's blocking pool; a runtime built with [`runtime`] keeps that pool
/// at one thread per CPU, since more threads only contend for the tier files' locks.
#[derive(Clone)]
pub struct NbdServer {
    store: Arc<Store>,
}

/// A multi-threaded tokio runtime suited to serving: blocking pool of one thread per CPU.
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cpus.max(2))
        .build()
}

impl NbdServer {
    /// A server for `store`.
    pub fn new(store: Arc<Store>) -> NbdServer {
        NbdServer { store }
    }

    /// Accepts connections on a unix socket forever, each on its own task.
    pub async fn serve_unix(&self, listener: UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let this = self.clone();
            let (reader, writer) = stream.into_split();
            tokio::spawn(async move { this.halves(reader, writer).await });
        }
    }

    /// Accepts TCP connections forever, each on its own task.
    pub async fn serve_tcp(&self, listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            // Small requests and replies: send them at once.
            stream.set_nodelay(true)?;
            let this = self.clone();
            let (reader, writer) = stream.into_split();
            tokio::spawn(async move { this.halves(reader, writer).await });
        }
    }

    /// Runs one connection to its end; errors are logged, never propagated.
    pub async fn connection<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(stream);
        self.halves(reader, writer).await;
    }

    /// Runs one connection given its two halves (owned halves avoid a lock per I/O).
    async fn halves<R, W>(&self, reader: R, writer: W)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        // Buffered reads: pipelined requests arrive many to a read.
        let reader = BufReader::with_capacity(256 * 1024, reader);
        let mut stream = tokio::io::join(reader, writer);
        let session = match handshake::negotiate(&mut stream, &self.store).await {
            Ok(Some(session)) => session,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("NBD handshake ended: {e}");
                return;
            }
        };
        let (reader, writer) = stream.into_inner();
        let volume = session.volume.clone();
        if let Err(e) = transmission::transmit(reader, writer, self.store.clone(), session).await {
            tracing::debug!("NBD connection to volume {volume:?} ended: {e}");
        }
    }
}
