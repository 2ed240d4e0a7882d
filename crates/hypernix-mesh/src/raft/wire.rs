//! The frames nodes and clients exchange: a length, a version byte, then JSON.
//!
//! A frame is `len: u32 big-endian` (the bytes after it, at most [`MAX_FRAME_LEN`]),
//! `version: u8` (= [`WIRE_VERSION`]), then a JSON [`Request`] or [`Response`]. A connection
//! carries one request, then its response, then the next request; a malformed frame closes
//! the connection, since nothing after it can be trusted to start on a frame boundary.

use super::TypeConfig;
use crate::consensus::{Applied, Command, ConsensusError, NodeId, Role, Table};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame accepted, in bytes after the length prefix.
pub const MAX_FRAME_LEN: u32 = 16 << 20;
/// The frame format's version, the first byte after the length.
pub const WIRE_VERSION: u8 = 1;

/// A request to a node, from a peer (Raft RPCs) or a client.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Request {
    /// Raft: replicate entries, or a heartbeat.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: a candidate asks for a vote.
    Vote(VoteRequest<NodeId>),
    /// Raft: one chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Client: replicate a command (answered by the leader only).
    Propose(Command),
    /// Client: a linearizable read (answered by the leader only).
    Read {
        /// The table read.
        table: Table,
        /// The key read.
        key: String,
    },
    /// Client: which node leads, and at which address, as the answering node knows.
    WhoLeads,
    /// A node asks to join: add it as a voter or learner (answered by the leader only).
    AddMember {
        /// The node joining; over TLS, it must be the sender itself.
        id: NodeId,
        /// The address it serves Raft on.
        addr: String,
        /// Voter or learner.
        role: Role,
    },
    /// A node asks to leave: remove it (answered by the leader only).
    RemoveMember {
        /// The node leaving; over TLS, it must be the sender itself.
        id: NodeId,
    },
}

/// A node's answer to a [`Request`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Response {
    /// Answer to [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Answer to [`Request::InstallSnapshot`].
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Answer to [`Request::Propose`].
    Propose(Result<Applied, ConsensusError>),
    /// Answer to [`Request::Read`].
    Read(Result<Option<Value>, ConsensusError>),
    /// Answer to [`Request::WhoLeads`]: the leader's id and address, if one is known.
    WhoLeads(Option<(NodeId, String)>),
    /// Answer to [`Request::AddMember`] and [`Request::RemoveMember`].
    Membership(Result<(), ConsensusError>),
}

/// A frame that could not be read or written.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame longer than [`MAX_FRAME_LEN`].
    #[error(
        "frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN}; the peer is not a hypernix node of this version"
    )]
    TooLarge {
        /// The announced length.
        len: u32,
    },
    /// The frame was empty, without even a version byte.
    #[error("empty frame; the peer is not a hypernix node")]
    Empty,
    /// The frame's version byte is not [`WIRE_VERSION`].
    #[error(
        "frame version {found} is not {WIRE_VERSION}; run the same hypernix version on every node"
    )]
    Version {
        /// The version found.
        found: u8,
    },
    /// The frame's JSON did not decode as the expected message.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes `message` as one frame.
pub async fn write_frame<W, T>(writer: &mut W, message: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message)?;
    let len = u32::try_from(body.len() + 1)
        .ok()
        .filter(|len| *len <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLarge {
            len: u32::try_from(body.len()).unwrap_or(u32::MAX),
        })?;
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.push(WIRE_VERSION);
    frame.extend_from_slice(&body);
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one frame; `None` if the peer closed the connection before a new frame began.
pub async fn read_frame<R, T>(reader: &mut R) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = vec![0u8; len as usize];
    reader.read_exact(&mut body).await?;
    if body[0] != WIRE_VERSION {
        return Err(FrameError::Version { found: body[0] });
    }
    Ok(Some(serde_json::from_slice(&body[1..])?))
}
