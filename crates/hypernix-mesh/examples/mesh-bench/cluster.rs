//! Raft nodes on loopback TCP, each on its own tokio runtime.
//!
//! Killing a node shuts its runtime down: its openraft tasks, its server and every
//! connection it accepted stop at once and their sockets close, as when a process exits.

use hypernix_mesh::consensus::{Command, Consensus, NodeId, Table};
use hypernix_mesh::raft::tcp::{TcpDialer, serve_tcp};
use hypernix_mesh::raft::{RaftNode, RaftParameters};
use serde_json::json;
use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// A boxed error, with what failed.
pub type BenchError = Box<dyn Error + Send + Sync>;

/// One node: its engine, its address and the runtime that runs both.
pub struct Node {
    /// The engine.
    pub node: RaftNode,
    /// Where it serves Raft and client frames.
    pub addr: String,
    runtime: Runtime,
}

/// A cluster of nodes with their redb files in a temporary directory.
pub struct Cluster {
    /// The running nodes by id.
    pub nodes: BTreeMap<NodeId, Node>,
    _dir: TempDir,
}

impl Cluster {
    /// Starts `size` nodes with `parameters`, their files under `dir`, and initializes them as voters.
    pub fn start(
        size: u64,
        parameters: &RaftParameters,
        dir: &Path,
    ) -> Result<Cluster, BenchError> {
        let files = tempfile::tempdir_in(dir)
            .map_err(|e| format!("cannot make a directory in {}: {e}", dir.display()))?;
        let mut nodes = BTreeMap::new();
        for id in 1..=size {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?.to_string();
            let path = files.path().join(format!("node-{id}.redb"));
            let node =
                runtime.block_on(RaftNode::start(id, &path, parameters, Arc::new(TcpDialer)))?;
            runtime.spawn(serve_tcp(node.clone(), listener));
            nodes.insert(
                id,
                Node {
                    node,
                    addr,
                    runtime,
                },
            );
        }
        let voters = nodes.iter().map(|(id, n)| (*id, n.addr.clone())).collect();
        if let Some(first) = nodes.values().next() {
            first.runtime.block_on(first.node.initialize(&voters))?;
        }
        Ok(Cluster { nodes, _dir: files })
    }

    /// Waits up to 10 s until every running node names the same leader, and returns it.
    pub fn leader(&self) -> Result<NodeId, BenchError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let seen: Vec<_> = self
                .nodes
                .values()
                .map(|n| n.node.leadership().borrow().leader)
                .collect();
            if let Some(Some(leader)) = seen.first()
                && seen.iter().all(|l| *l == Some(*leader))
            {
                return Ok(*leader);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err("the nodes did not agree on a leader within 10 s".into())
    }

    /// Stops node `id` at once, as if its process died.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            drop(node.node);
            node.runtime.shutdown_background();
        }
    }

    /// The addresses of the running nodes.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }
}

/// A small write of `n` under `key` in the units table.
pub fn put(key: String, n: u64) -> Command {
    Command::Put {
        table: Table::Units,
        key,
        value: json!({ "n": n }),
    }
}
