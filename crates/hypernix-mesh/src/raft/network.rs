//! How a node reaches its peers: a [`Dialer`] opens streams, a [`Channel`] carries framed
//! requests over pooled connections, and [`Network`] hands openraft one [`Peer`] per target.

#![allow(
    clippy::result_large_err,
    reason = "openraft's network trait returns RPCError by value"
)]

use super::TypeConfig;
use super::wire::{FrameError, Request, Response, read_frame, write_frame};
use crate::consensus::{Applied, Command, ConsensusError, NodeId, Table};
use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

/// Opens byte streams to node addresses: real TCP, or a simulated network in tests.
pub trait Dialer: Send + Sync + 'static {
    /// The stream type a dial returns.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Connects to `addr` (`host:port`).
    fn dial(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// A call over a [`Channel`] that got no answer.
#[derive(Debug, Error)]
pub enum CallError {
    /// The connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The dial error.
        source: io::Error,
    },
    /// A frame could not be sent or received.
    #[error("exchange with {addr} failed: {source}")]
    Frame {
        /// The peer's address.
        addr: String,
        /// The frame error.
        source: FrameError,
    },
    /// No answer came in time.
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout {
        /// The peer's address.
        addr: String,
        /// How long the call waited.
        timeout: Duration,
    },
    /// The answer was of another kind than the request.
    #[error("{addr} answered a {request} request with something else")]
    Mismatch {
        /// The peer's address.
        addr: String,
        /// The request kind.
        request: &'static str,
    },
}

/// Framed request/response calls to one address, reusing idle connections.
pub struct Channel<D: Dialer> {
    dialer: Arc<D>,
    addr: String,
    idle: Arc<Mutex<Vec<D::Stream>>>,
}

impl<D: Dialer> Clone for Channel<D> {
    fn clone(&self) -> Self {
        Channel {
            dialer: self.dialer.clone(),
            addr: self.addr.clone(),
            idle: self.idle.clone(),
        }
    }
}

impl<D: Dialer> Channel<D> {
    /// A channel to `addr`, connecting lazily.
    pub fn new(dialer: Arc<D>, addr: impl Into<String>) -> Self {
        Channel {
            dialer,
            addr: addr.into(),
            idle: Arc::default(),
        }
    }

    /// Sends `request` and waits up to `timeout` for its response.
    pub async fn call(&self, request: &Request, timeout: Duration) -> Result<Response, CallError> {
        let exchange =
            async {
                let pooled = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
                let mut stream =
                    match pooled {
                        Some(stream) => stream,
                        None => self.dialer.dial(&self.addr).await.map_err(|source| {
                            CallError::Connect {
                                addr: self.addr.clone(),
                                source,
                            }
                        })?,
                    };
                let frame = |source| CallError::Frame {
                    addr: self.addr.clone(),
                    source,
                };
                write_frame(&mut stream, request).await.map_err(frame)?;
                let response = read_frame(&mut stream)
                    .await
                    .map_err(frame)?
                    .ok_or_else(|| frame(FrameError::Io(io::ErrorKind::UnexpectedEof.into())))?;
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(stream);
                }
                Ok(response)
            };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout {
                addr: self.addr.clone(),
                timeout,
            })?
    }

    /// Proposes `command` to the node at this address (it must be the leader).
    pub async fn propose(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Applied, ConsensusError> {
        match self.call(&Request::Propose(command), timeout).await {
            Ok(Response::Propose(result)) => result,
            Ok(_) => Err(self.unreachable(self.mismatch("propose"))),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    /// Reads `key` of `table` linearizably from the node at this address (it must be the leader).
    pub async fn read(
        &self,
        table: Table,
        key: &str,
        timeout: Duration,
    ) -> Result<Option<Value>, ConsensusError> {
        let request = Request::Read {
            table,
            key: key.to_owned(),
        };
        match self.call(&request, timeout).await {
            Ok(Response::Read(result)) => result,
            Ok(_) => Err(self.unreachable(self.mismatch("read"))),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    fn mismatch(&self, request: &'static str) -> CallError {
        CallError::Mismatch {
            addr: self.addr.clone(),
            request,
        }
    }

    fn unreachable(&self, e: CallError) -> ConsensusError {
        ConsensusError::Unreachable {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }
}

/// openraft's network factory: one [`Peer`] per target, sharing a channel per node.
pub struct Network<D: Dialer> {
    dialer: Arc<D>,
    channels: HashMap<NodeId, Channel<D>>,
}

impl<D: Dialer> Network<D> {
    /// A network that reaches peers through `dialer`.
    pub fn new(dialer: Arc<D>) -> Self {
        Network {
            dialer,
            channels: HashMap::new(),
        }
    }
}

impl<D: Dialer> RaftNetworkFactory<TypeConfig> for Network<D> {
    type Network = Peer<D>;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer<D> {
        let channel = self
            .channels
            .entry(target)
            .and_modify(|c| {
                if c.addr != node.addr {
                    *c = Channel::new(self.dialer.clone(), node.addr.clone());
                }
            })
            .or_insert_with(|| Channel::new(self.dialer.clone(), node.addr.clone()))
            .clone();
        Peer { target, channel }
    }
}

/// The Raft RPC client for one peer.
pub struct Peer<D: Dialer> {
    target: NodeId,
    channel: Channel<D>,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl<D: Dialer> Peer<D> {
    async fn rpc(&self, request: Request, option: &RPCOption) -> Result<Response, CallError> {
        self.channel.call(&request, option.hard_ttl()).await
    }

    fn failed<E: std::error::Error>(
        e: CallError,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        match e {
            CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn remote<T, E: std::error::Error>(
        &self,
        result: Result<T, RaftError<NodeId, E>>,
    ) -> RpcResult<T, E> {
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn mismatch<E: std::error::Error>(
        &self,
        request: &'static str,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        Self::failed(self.channel.mismatch(request))
    }
}

impl<D: Dialer> RaftNetwork<TypeConfig> for Peer<D> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.rpc(Request::AppendEntries(rpc), &option).await {
            Ok(Response::AppendEntries(result)) => self.remote(result),
            Ok(_) => Err(self.mismatch("appendEntries")),
            Err(e) => Err(Self::failed(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.rpc(Request::InstallSnapshot(rpc), &option).await {
            Ok(Response::InstallSnapshot(result)) => self.remote(result),
            Ok(_) => Err(self.mismatch("installSnapshot")),
            Err(e) => Err(Self::failed(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.rpc(Request::Vote(rpc), &option).await {
            Ok(Response::Vote(result)) => self.remote(result),
            Ok(_) => Err(self.mismatch("vote")),
            Err(e) => Err(Self::failed(e)),
        }
    }
}
