//! Real partitions: three node processes, each in its own network namespace on a bridge, and a
//! leader cut off from its peers with nftables. Needs root (CAP_NET_ADMIN), `ip` and `nft`.
//!
//! The node processes are this test binary run again (`node_process`, told what to be through
//! an environment variable), so no other binary has to be built first.

pub(crate) mod node;

use hypernix_mesh::consensus::{Applied, Command, ConsensusError, NodeId, Table};
use hypernix_mesh::raft::Channel;
use hypernix_mesh::raft::tcp::TcpDialer;
use node::NodeArgs;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The environment variable that turns this test binary into a node: its arguments, one a line.
pub(crate) const NODE_ENV: &str = "HNX_MESH_NETNS_NODE";
/// Where nodes serve Raft and client frames.
const RAFT_PORT: u16 = 7000;
/// Where nodes answer the test's `status` and `local KEY` lines.
const ADMIN_PORT: u16 = 7001;
/// The nftables table that cuts a node off.
const CUT_TABLE: &str = "hnxcut";
/// How long each phase may take.
pub(crate) const PHASE: Duration = Duration::from_secs(15);
const NODES: [NodeId; 3] = [1, 2, 3];

/// A node process of the partition test when `HNX_MESH_NETNS_NODE` is set; otherwise does nothing.
#[test]
fn node_process() {
    let Ok(args) = std::env::var(NODE_ENV) else {
        return;
    };
    node::exit_when_stdin_closes();
    let result = NodeArgs::parse(args.lines().map(str::to_owned)).and_then(node::run);
    if let Err(e) = result {
        eprintln!("mesh-node: {e}");
        std::process::exit(1);
    }
}

/// Runs `program args`, returning its standard output, or what failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}; install it (scripts/install-deps.sh)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// A /24 of 10.0.0.0/8 that nothing on this host uses yet, as its first three octets.
fn free_subnet() -> String {
    let used = must("ip", &["-4", "-o", "addr", "show"]) + &must("ip", &["-4", "route", "show"]);
    let pid = std::process::id();
    (0..1000)
        .map(|k| {
            let n = pid.wrapping_add(k);
            format!("10.{}.{}", 200 + (n / 256) % 50, n % 256)
        })
        .find(|subnet| !used.contains(&format!("{subnet}.")))
        .expect("a free 10.x.y.0/24 for the test network")
}

/// Node processes that answer on a Raft address and an admin address each: the helpers the
/// partition test here and the loopback tests of `procs` share.
pub(crate) trait Nodes {
    /// Where node `id` serves Raft and client frames.
    fn raft_addr(&self, id: NodeId) -> String;

    /// Where node `id` answers `status` and `local KEY`.
    fn admin_addr(&self, id: NodeId) -> SocketAddr;

    /// Sends one line to node `id`'s admin port and returns its JSON answer.
    fn admin(&self, id: NodeId, request: &str) -> Result<Value, String> {
        let addr = self.admin_addr(id);
        let exchange = || -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(format!("{request}\n").as_bytes())?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(line)
        };
        let line = exchange().map_err(|e| format!("node {id} admin: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("node {id} admin answered {line:?}: {e}"))
    }

    /// Node `id`'s view of the leader and term, if it answers.
    fn status(&self, id: NodeId) -> Option<(Option<NodeId>, u64)> {
        let answer = self.admin(id, "status").ok()?;
        Some((answer["leader"].as_u64(), answer["term"].as_u64()?))
    }

    /// What node `id` has applied under `key` in the units table.
    fn local(&self, id: NodeId, key: &str) -> Result<Value, String> {
        let answer = self.admin(id, &format!("local {key}"))?;
        match answer.get("ok") {
            Some(value) => Ok(value.clone()),
            None => Err(format!("node {id}: {}", answer["err"])),
        }
    }

    /// Waits until every node of `ids` names the same leader among `ids`, in a term after `after`.
    fn leader(&self, ids: &[NodeId], after: u64) -> (NodeId, u64) {
        let deadline = Instant::now() + PHASE;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            seen = ids.iter().map(|id| self.status(*id)).collect();
            if let Some(Some((Some(leader), term))) = seen.first().copied()
                && ids.contains(&leader)
                && term > after
                && seen.iter().all(|s| *s == Some((Some(leader), term)))
            {
                return (leader, term);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nodes {ids:?} agreed on no leader after term {after} within {PHASE:?}: {seen:?}");
    }

    /// Waits until node `id` has applied `expected` under `key`.
    fn wait_local(&self, id: NodeId, key: &str, expected: &Value) {
        let deadline = Instant::now() + PHASE;
        let mut last = Err(String::new());
        while Instant::now() < deadline {
            last = self.local(id, key);
            if last.as_ref() == Ok(expected) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("node {id} did not apply {key} = {expected} within {PHASE:?}: {last:?}");
    }

    fn channel(&self, id: NodeId) -> Channel<TcpDialer> {
        Channel::new(Arc::new(TcpDialer), self.raft_addr(id))
    }

    /// Commits `command` through whichever of `ids` leads, retrying until it is applied.
    async fn commit(&self, ids: &[NodeId], command: Command) -> Applied {
        let deadline = Instant::now() + PHASE;
        let mut errors = Vec::new();
        while Instant::now() < deadline {
            for id in ids {
                match self
                    .channel(*id)
                    .propose(command.clone(), Duration::from_secs(2))
                    .await
                {
                    Ok(applied) => return applied,
                    Err(e) => errors.push(e),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nodes {ids:?} did not commit {command:?} within {PHASE:?}: {errors:?}");
    }

    /// Reads `key` linearizably through whichever of `ids` leads.
    async fn read(&self, ids: &[NodeId], key: &str) -> Option<Value> {
        let deadline = Instant::now() + PHASE;
        let mut errors = Vec::new();
        while Instant::now() < deadline {
            for id in ids {
                match self
                    .channel(*id)
                    .read(Table::Units, key, Duration::from_secs(2))
                    .await
                {
                    Ok(value) => return value,
                    Err(e) => errors.push(e),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("nodes {ids:?} answered no read of {key} within {PHASE:?}: {errors:?}");
    }
}

/// The namespaces, bridge and node processes of one test; all removed on drop, even after a panic.
struct Net {
    bridge_ns: String,
    node_ns: BTreeMap<NodeId, String>,
    client_if: String,
    subnet: String,
    nodes: BTreeMap<NodeId, (Child, ChildStdin)>,
    dir: TempDir,
}

impl Net {
    /// A bridge in its own namespace, one namespace per node on it, and a link from here to it.
    fn build() -> Net {
        let prefix = format!("hnx{}", std::process::id());
        let net = Net {
            bridge_ns: format!("{prefix}b"),
            node_ns: NODES
                .iter()
                .map(|id| (*id, format!("{prefix}n{id}")))
                .collect(),
            client_if: format!("{prefix}c"),
            subnet: free_subnet(),
            nodes: BTreeMap::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        // Left over by an earlier run that was killed with the same pid.
        net.remove_network();
        let b = net.bridge_ns.clone();
        must("ip", &["netns", "add", &b]);
        must("ip", &["-n", &b, "link", "set", "lo", "up"]);
        must("ip", &["-n", &b, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", &b, "link", "set", "br0", "up"]);
        for (id, ns) in &net.node_ns {
            let port = format!("v{id}");
            let addr = format!("{}.{id}/24", net.subnet);
            must("ip", &["netns", "add", ns]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
            must(
                "ip",
                &[
                    "-n", &b, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", ns,
                ],
            );
            must(
                "ip",
                &["-n", &b, "link", "set", &port, "master", "br0", "up"],
            );
            must("ip", &["-n", ns, "addr", "add", &addr, "dev", "eth0"]);
            must("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        let c = net.client_if.clone();
        must(
            "ip",
            &[
                "link", "add", &c, "type", "veth", "peer", "name", "vc", "netns", &b,
            ],
        );
        must(
            "ip",
            &["-n", &b, "link", "set", "vc", "master", "br0", "up"],
        );
        must(
            "ip",
            &["addr", "add", &format!("{}.254/24", net.subnet), "dev", &c],
        );
        must("ip", &["link", "set", &c, "up"]);
        net
    }

    /// Starts node `id` in its namespace; node 1 initializes the cluster.
    fn start(&mut self, id: NodeId) {
        let args = NodeArgs {
            id,
            listen: self.raft_addr(id),
            admin: Some(format!("{}.{id}:{ADMIN_PORT}", self.subnet)),
            dir: self.dir.path().join(format!("node-{id}")),
            peers: NODES
                .iter()
                .filter(|p| **p != id)
                .map(|p| (*p, self.raft_addr(*p)))
                .collect(),
            init: id == 1,
        };
        let log = std::fs::File::create(self.log(id)).unwrap();
        let mut child = spawn_node(Some(&self.node_ns[&id]), &args, log);
        let stdin = child.stdin.take().unwrap();
        self.nodes.insert(id, (child, stdin));
    }

    fn log(&self, id: NodeId) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// Drops everything node `id` sends to or receives from the other nodes.
    fn cut(&self, id: NodeId) {
        let peers: Vec<String> = NODES
            .iter()
            .filter(|p| **p != id)
            .map(|p| format!("{}.{p}", self.subnet))
            .collect();
        let peers = peers.join(", ");
        let rules = format!(
            "table inet {CUT_TABLE} {{\n\
             \tchain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {peers} }} drop; }}\n\
             \tchain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {peers} }} drop; }}\n\
             }}\n"
        );
        let file = self.dir.path().join("cut.nft");
        std::fs::write(&file, rules).unwrap();
        let file = file.display().to_string();
        must(
            "ip",
            &["netns", "exec", &self.node_ns[&id], "nft", "-f", &file],
        );
    }

    /// Removes the rules of [`Net::cut`].
    fn heal(&self, id: NodeId) {
        let ns = &self.node_ns[&id];
        must(
            "ip",
            &[
                "netns", "exec", ns, "nft", "delete", "table", "inet", CUT_TABLE,
            ],
        );
    }

    fn remove_network(&self) {
        let mut namespaces: Vec<&String> = self.node_ns.values().collect();
        namespaces.push(&self.bridge_ns);
        for ns in namespaces {
            // Processes left in the namespace: only this test starts any there.
            if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
                for pid in pids.split_whitespace() {
                    let _ = run("kill", &["-9", pid]);
                }
            }
            let _ = run("ip", &["netns", "del", ns]);
        }
        // Deleting the bridge's namespace removed the client link's peer, and so the link.
        let _ = run("ip", &["link", "del", &self.client_if]);
    }
}

impl Nodes for Net {
    fn raft_addr(&self, id: NodeId) -> String {
        format!("{}.{id}:{RAFT_PORT}", self.subnet)
    }

    fn admin_addr(&self, id: NodeId) -> SocketAddr {
        format!("{}.{id}:{ADMIN_PORT}", self.subnet)
            .parse()
            .unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Killed, or closing their standard input if that fails, each node stops.
        for (child, _stdin) in self.nodes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in self.nodes.keys() {
                let log = std::fs::read_to_string(self.log(*id)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("--- node {id}, last lines of its log:\n{tail}");
            }
        }
        self.remove_network();
    }
}

/// Starts a node process (this test binary re-run as `netns::node_process`), inside
/// network namespace `ns` when given, its output going to `log`; it ends when its stdin
/// closes.
pub(crate) fn spawn_node(ns: Option<&str>, args: &NodeArgs, log: std::fs::File) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
        None => std::process::Command::new(exe),
    };
    cmd.args([
        "--exact",
        "netns::node_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(NODE_ENV, args.to_args().join("\n"))
    .stdin(Stdio::piped())
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .unwrap()
}

/// A write of `value` under `key` in the units table.
pub(crate) fn put(key: &str, value: &str) -> Command {
    Command::Put {
        table: Table::Units,
        key: key.into(),
        value: json!(value),
    }
}

fn check_prerequisites() {
    assert_eq!(
        effective_uid(),
        Some(0),
        "netns::a_leader_cut_off_by_nftables_cannot_commit_and_catches_up_after_healing needs \
         root (CAP_NET_ADMIN) to build network namespaces: run the tests as root, e.g. \
         `sudo -E cargo test -p hypernix-mesh --test it netns`"
    );
    for (program, arg) in [("ip", "-V"), ("nft", "--version")] {
        if let Err(e) = run(program, &[arg]) {
            panic!("the partition test needs {program}: {e}");
        }
    }
}

#[test]
fn a_leader_cut_off_by_nftables_cannot_commit_and_catches_up_after_healing() {
    check_prerequisites();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut net = Net::build();
    for id in NODES {
        net.start(id);
    }
    let (first, _) = net.leader(&NODES, 0);
    let applied = runtime.block_on(net.commit(&[first], put("split", "before")));
    assert_eq!(applied, Applied::Written);
    for id in NODES {
        net.wait_local(id, "split", &json!("before"));
    }
    eprintln!(
        "netns: 3 nodes, leader {first}, first write everywhere after {:?}",
        started.elapsed()
    );

    // Cut off the leader; if leadership moved while the rules went in, heal and try again.
    let (old, term) = (0..3)
        .find_map(|_| {
            let (leader, term) = net.leader(&NODES, 0);
            net.cut(leader);
            if net.status(leader) == Some((Some(leader), term)) {
                return Some((leader, term));
            }
            net.heal(leader);
            None
        })
        .expect("a leader that stays leader while it is cut off");
    let majority: Vec<NodeId> = NODES.iter().copied().filter(|id| *id != old).collect();
    let cut_at = Instant::now();

    // (a) The cut-off leader takes no write: it cannot reach a quorum.
    let old_channel = net.channel(old);
    let (isolated, only) = runtime.block_on(async {
        tokio::join!(
            old_channel.propose(put("split", "isolated"), Duration::from_secs(3)),
            old_channel.propose(put("minority-only", "isolated"), Duration::from_secs(3)),
        )
    });
    assert!(
        isolated.is_err() && only.is_err(),
        "node {old}, cut off from its peers, committed writes: {isolated:?}, {only:?}"
    );
    let refused_or_lost = |r: &Result<Applied, ConsensusError>| {
        matches!(
            r,
            Err(ConsensusError::Unreachable { .. }
                | ConsensusError::NotLeader { .. }
                | ConsensusError::Indeterminate { .. })
        )
    };
    assert!(refused_or_lost(&isolated), "{isolated:?}");
    assert!(refused_or_lost(&only), "{only:?}");
    assert_eq!(net.local(old, "split"), Ok(json!("before")));

    // (b) The majority elects a new leader and commits.
    let (new, new_term) = net.leader(&majority, term);
    let applied = runtime.block_on(net.commit(&majority, put("split", "majority")));
    assert_eq!(applied, Applied::Written);
    // Still cut off, the old leader has not seen it.
    assert_eq!(net.local(old, "split"), Ok(json!("before")));
    eprintln!(
        "netns: node {old} (term {term}) cut off; node {new} leads term {new_term} and committed {:?} later",
        cut_at.elapsed()
    );

    // (c) Healed, the old leader drops its uncommitted writes and applies the majority's.
    let healed_at = Instant::now();
    net.heal(old);
    net.wait_local(old, "split", &json!("majority"));
    net.wait_local(old, "minority-only", &Value::Null);
    eprintln!(
        "netns: node {old} caught up {:?} after healing",
        healed_at.elapsed()
    );
    runtime.block_on(async {
        assert_eq!(net.read(&NODES, "split").await, Some(json!("majority")));
        assert_eq!(net.read(&NODES, "minority-only").await, None);
    });
    for id in NODES {
        net.wait_local(id, "split", &json!("majority"));
        assert_eq!(net.local(id, "minority-only"), Ok(Value::Null));
    }
    eprintln!("netns: done in {:?}", started.elapsed());
}
