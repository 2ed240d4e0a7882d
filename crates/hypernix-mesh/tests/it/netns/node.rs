//! One Raft node as its own process: the partition test starts three of them in network
//! namespaces, and `examples/mesh-node.rs` runs the same code by hand.
//!
//! A node serves Raft and client frames (propose, linearizable read) on `--listen`, and, with
//! `--admin`, a line protocol for the test: `status` answers `{"leader":..,"term":..}` and
//! `local KEY` answers what this node has applied under `KEY` in the units table, as
//! `{"ok":VALUE}` or `{"err":"..."}`, one JSON line per request line.

use hypernix_mesh::consensus::{Consensus, NodeId, Table};
use hypernix_mesh::raft::tcp::{TcpDialer, serve_tcp};
use hypernix_mesh::raft::{RaftNode, RaftParameters};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How to run a node: `--id N --listen ADDR --dir DIR [--admin ADDR] [--peer ID=ADDR]... [--init]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeArgs {
    /// The node's id.
    pub id: NodeId,
    /// Where it serves Raft and client frames.
    pub listen: String,
    /// Where it answers the test's `status` and `local KEY` lines, if anywhere.
    pub admin: Option<String>,
    /// The directory of its redb file.
    pub dir: PathBuf,
    /// The other voters, id → address.
    pub peers: BTreeMap<NodeId, String>,
    /// Whether this node initializes the cluster of itself and its peers.
    pub init: bool,
}

const USAGE: &str =
    "usage: mesh-node --id N --listen ADDR --dir DIR [--admin ADDR] [--peer ID=ADDR]... [--init]";

impl NodeArgs {
    /// Parses the command line (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<NodeArgs, String> {
        let mut args = args.into_iter();
        let (mut id, mut listen, mut admin, mut dir) = (None, None, None, None);
        let mut peers = BTreeMap::new();
        let mut init = false;
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .ok_or_else(|| format!("{arg} needs a value; {USAGE}"))
            };
            match arg.as_str() {
                "--id" => {
                    let v = value()?;
                    id = Some(parse_id(&v, "--id")?);
                }
                "--listen" => listen = Some(value()?),
                "--admin" => admin = Some(value()?),
                "--dir" => dir = Some(PathBuf::from(value()?)),
                "--peer" => {
                    let v = value()?;
                    let (peer, addr) = v
                        .split_once('=')
                        .ok_or_else(|| format!("--peer {v:?} is not ID=ADDR; {USAGE}"))?;
                    peers.insert(parse_id(peer, "--peer")?, addr.to_owned());
                }
                "--init" => init = true,
                other => return Err(format!("unknown argument {other:?}; {USAGE}")),
            }
        }
        let missing = |name: &str| format!("{name} is missing; {USAGE}");
        Ok(NodeArgs {
            id: id.ok_or_else(|| missing("--id"))?,
            listen: listen.ok_or_else(|| missing("--listen"))?,
            admin,
            dir: dir.ok_or_else(|| missing("--dir"))?,
            peers,
            init,
        })
    }

    /// The command line that [`NodeArgs::parse`] reads back as these arguments.
    #[allow(dead_code, reason = "the example only parses")]
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--id".to_owned(),
            self.id.to_string(),
            "--listen".to_owned(),
            self.listen.clone(),
            "--dir".to_owned(),
            self.dir.display().to_string(),
        ];
        if let Some(admin) = &self.admin {
            args.extend(["--admin".to_owned(), admin.clone()]);
        }
        for (id, addr) in &self.peers {
            args.extend(["--peer".to_owned(), format!("{id}={addr}")]);
        }
        if self.init {
            args.push("--init".to_owned());
        }
        args
    }
}

fn parse_id(v: &str, flag: &str) -> Result<NodeId, String> {
    v.parse()
        .map_err(|_| format!("{flag} {v:?} is not a node id (a number); {USAGE}"))
}

/// Runs the node until the process is killed; returns only if it cannot start.
pub fn run(args: NodeArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    runtime.block_on(serve(args))
}

/// Exits the process once its standard input closes, so nodes die with the test that started them.
#[allow(dead_code, reason = "only the test's nodes use it")]
pub fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
}

async fn serve(args: NodeArgs) -> Result<(), String> {
    let id = args.id;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot make {}: {e}", args.dir.display()))?;
    let path = args.dir.join(format!("node-{id}.redb"));
    let node = RaftNode::start(id, &path, &RaftParameters::default(), Arc::new(TcpDialer))
        .await
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| {
        format!(
            "cannot listen on {}: {e}; is the address on this host?",
            args.listen
        )
    })?;
    tokio::spawn(serve_tcp(node.clone(), listener));
    if let Some(admin) = &args.admin {
        let listener = TcpListener::bind(admin)
            .await
            .map_err(|e| format!("cannot listen on {admin}: {e}; is the address on this host?"))?;
        tokio::spawn(serve_admin(node.clone(), listener));
    }
    let mut leadership = node.leadership();
    tokio::spawn(async move {
        loop {
            let now = *leadership.borrow_and_update();
            eprintln!("mesh-node {id}: leader {:?}, term {}", now.leader, now.term);
            if leadership.changed().await.is_err() {
                break;
            }
        }
    });
    eprintln!("mesh-node {id}: serving on {}", args.listen);
    if args.init {
        let mut voters = args.peers.clone();
        voters.insert(id, args.listen.clone());
        node.initialize(&voters).await.map_err(|e| e.to_string())?;
        eprintln!("mesh-node {id}: initialized the cluster {voters:?}");
    }
    std::future::pending::<()>().await;
    Ok(())
}

async fn serve_admin(node: RaftNode, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer_admin(node.clone(), stream));
            }
            Err(e) => eprintln!("mesh-node {}: admin accept failed: {e}", node.id()),
        }
    }
}

async fn answer_admin(node: RaftNode, stream: TcpStream) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        let answer: Value = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["status"] => {
                let now = *node.leadership().borrow();
                json!({ "leader": now.leader, "term": now.term })
            }
            ["local", key] => match node.read_local(Table::Units, key) {
                Ok(value) => json!({ "ok": value }),
                Err(e) => json!({ "err": e.to_string() }),
            },
            _ => {
                json!({ "err": format!("unknown request {line:?}; send `status` or `local KEY`") })
            }
        };
        writer.write_all(format!("{answer}\n").as_bytes()).await?;
    }
    Ok(())
}
