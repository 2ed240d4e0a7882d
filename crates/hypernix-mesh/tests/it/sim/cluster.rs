//! The simulated cluster: Raft nodes as turmoil hosts, and register clients that record a history.

use super::history::{History, Input, Output};
use hypernix_mesh::consensus::{Applied, Command, ConsensusError, NodeId, Table};
use hypernix_mesh::raft::{Channel, Dialer, RaftNode, RaftParameters, serve};
use serde_json::json;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use turmoil::Sim;

/// The port every simulated node listens on.
const PORT: u16 = 7000;

/// Dials over turmoil's simulated TCP.
pub struct SimDialer;

impl Dialer for SimDialer {
    type Stream = turmoil::net::TcpStream;

    async fn dial(&self, addr: &str) -> io::Result<turmoil::net::TcpStream> {
        turmoil::net::TcpStream::connect(addr).await
    }
}

/// Node `id`'s host name.
pub fn host(id: NodeId) -> String {
    format!("n{id}")
}

fn addr(id: NodeId) -> String {
    format!("n{id}:{PORT}")
}

/// Adds nodes 1..=`size` to `sim`, each with its redb file in `dir` (kept across crashes).
pub fn add_nodes(sim: &mut Sim<'_>, dir: &Path, size: u64, parameters: &RaftParameters) {
    for id in 1..=size {
        let path = dir.join(format!("node-{id}.redb"));
        let parameters = parameters.clone();
        sim.host(host(id), move || {
            run_node(id, size, path.clone(), parameters.clone())
        });
    }
}

async fn run_node(
    id: NodeId,
    size: u64,
    path: PathBuf,
    parameters: RaftParameters,
) -> turmoil::Result {
    let node = RaftNode::start(id, &path, &parameters, Arc::new(SimDialer)).await?;
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    if id == 1 {
        let voters: BTreeMap<NodeId, String> = (1..=size).map(|id| (id, addr(id))).collect();
        node.initialize(&voters).await?;
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let node = node.clone();
        tokio::spawn(async move {
            // A connection ends when its peer goes away or sends garbage; either is fine here.
            let _ = serve(&node, stream).await;
        });
    }
}

/// A small seeded generator (xorshift64*), so every schedule is a function of its seed.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A register client: it sends each op to the node it believes leads, and records it.
pub struct Client {
    id: usize,
    channels: Vec<Channel<SimDialer>>,
    leader: usize,
    history: History,
    timeout: Duration,
}

/// How a client op ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It completed with this output.
    Done(Output),
    /// It certainly had no effect.
    Refused,
    /// Its effect is unknown.
    Unknown,
}

impl Client {
    /// Client `id` of a cluster of `size` nodes, recording into `history`.
    pub fn new(id: usize, size: u64, history: History) -> Self {
        let dialer = Arc::new(SimDialer);
        let channels = (1..=size)
            .map(|n| Channel::new(dialer.clone(), addr(n)))
            .collect();
        Client {
            id,
            channels,
            leader: id % size as usize,
            history,
            timeout: Duration::from_millis(500),
        }
    }

    /// The node this client will send its next op to.
    pub fn target(&self) -> NodeId {
        self.leader as NodeId + 1
    }

    /// Sends its next op to `node`.
    pub fn set_target(&mut self, node: NodeId) {
        self.leader = (node - 1) as usize % self.channels.len();
    }

    /// Runs `input` on `key` against the node it believes leads, and records it.
    pub async fn run(&mut self, key: u64, input: Input, rng: &mut Rng) -> Outcome {
        let op = self.history.invoke(self.id, key, input);
        let channel = &self.channels[self.leader];
        let (table, name) = (Table::Units, format!("k{key}"));
        let result = match input {
            Input::Read => channel
                .read(table, &name, self.timeout)
                .await
                .map(|v| Output::Read(v.and_then(|v| v.as_u64()))),
            Input::Write(v) => {
                let put = Command::Put {
                    table,
                    key: name,
                    value: json!(v),
                };
                channel
                    .propose(put, self.timeout)
                    .await
                    .map(|_| Output::Written)
            }
            Input::Cas(expected, new) => {
                let cas = Command::CompareAndSwap {
                    table,
                    key: name,
                    expected: expected.map(|v| json!(v)),
                    new: Some(json!(new)),
                };
                channel
                    .propose(cas, self.timeout)
                    .await
                    .map(|applied| Output::Cas(matches!(applied, Applied::Swapped)))
            }
        };
        match result {
            Ok(output) => {
                self.history.complete(op, output);
                Outcome::Done(output)
            }
            Err(e) => {
                let refused = input == Input::Read
                    || matches!(
                        e,
                        ConsensusError::NotLeader { .. } | ConsensusError::InvalidKey { .. }
                    );
                match e {
                    ConsensusError::NotLeader {
                        leader: Some(l), ..
                    } => self.set_target(l),
                    _ => self.leader = rng.below(self.channels.len() as u64) as usize,
                }
                if refused {
                    self.history.forget(op);
                    Outcome::Refused
                } else {
                    Outcome::Unknown
                }
            }
        }
    }
}
