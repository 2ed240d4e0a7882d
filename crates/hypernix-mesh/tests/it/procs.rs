//! Node processes on loopback: no namespaces and no root. Each node is this test binary run
//! again as `netns::node_process`, on ports picked by binding port 0. Killing a process with
//! SIGKILL is a crash: the tests kill leaders and majorities and restart them on their redb files.

use crate::netns::node::NodeArgs;
use crate::netns::{Nodes, put, spawn_node};
use hypernix_mesh::consensus::{Applied, ConsensusError, NodeId};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Node processes on 127.0.0.1; all killed on drop, even after a panic.
struct Cluster {
    ids: Vec<NodeId>,
    raft: BTreeMap<NodeId, SocketAddr>,
    admin: BTreeMap<NodeId, SocketAddr>,
    nodes: BTreeMap<NodeId, (Child, ChildStdin)>,
    started: BTreeSet<NodeId>,
    dir: TempDir,
}

/// `n` ports on 127.0.0.1 that were free a moment ago, all distinct.
fn free_ports(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

impl Cluster {
    /// Starts nodes 1..=n; node 1 initializes the cluster.
    fn start(n: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut ports = free_ports(ids.len() * 2).into_iter();
        let mut cluster = Cluster {
            raft: ids.iter().map(|id| (*id, ports.next().unwrap())).collect(),
            admin: ids.iter().map(|id| (*id, ports.next().unwrap())).collect(),
            ids,
            nodes: BTreeMap::new(),
            started: BTreeSet::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for id in cluster.ids.clone() {
            cluster.run(id);
        }
        cluster
    }

    /// Starts node `id` on its redb directory; only node 1's first start initializes the cluster.
    fn run(&mut self, id: NodeId) {
        let args = NodeArgs {
            id,
            listen: self.raft_addr(id),
            admin: Some(self.admin[&id].to_string()),
            dir: self.dir.path().join(format!("node-{id}")),
            peers: self
                .ids
                .iter()
                .filter(|p| **p != id)
                .map(|p| (*p, self.raft_addr(*p)))
                .collect(),
            init: id == 1 && !self.started.contains(&id),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(id))
            .unwrap();
        let mut child = spawn_node(None, &args, log);
        let stdin = child.stdin.take().unwrap();
        self.nodes.insert(id, (child, stdin));
        self.started.insert(id);
    }

    /// SIGKILLs node `id` and waits for it to be gone.
    fn kill(&mut self, id: NodeId) {
        let (mut child, _stdin) = self.nodes.remove(&id).expect("a running node");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn log(&self, id: NodeId) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }
}

impl Nodes for Cluster {
    fn raft_addr(&self, id: NodeId) -> String {
        self.raft[&id].to_string()
    }

    fn admin_addr(&self, id: NodeId) -> SocketAddr {
        self.admin[&id]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _stdin) in self.nodes.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for id in &self.ids {
                let log = std::fs::read_to_string(self.log(*id)).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("--- node {id}, last lines of its log:\n{tail}");
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `n` nodes commit; the leader is SIGKILLed; the others elect a leader and commit; the killed
/// node restarts on its redb file and applies what was committed without it.
fn leader_killed(n: u64) {
    let started = Instant::now();
    let runtime = runtime();
    let mut cluster = Cluster::start(n);
    let all = cluster.ids.clone();
    let (old, term) = cluster.leader(&all, 0);
    let applied = runtime.block_on(cluster.commit(&[old], put("k", "before")));
    assert_eq!(applied, Applied::Written);
    for id in &all {
        cluster.wait_local(*id, "k", &json!("before"));
    }

    cluster.kill(old);
    let killed_at = Instant::now();
    let rest: Vec<NodeId> = all.iter().copied().filter(|id| *id != old).collect();
    let (new, new_term) = cluster.leader(&rest, term);
    let applied = runtime.block_on(cluster.commit(&rest, put("k", "after")));
    assert_eq!(applied, Applied::Written);
    eprintln!(
        "procs: {n} nodes, leader {old} (term {term}) killed; node {new} leads term {new_term}, \
         write committed {:?} after the kill",
        killed_at.elapsed()
    );

    let restarted_at = Instant::now();
    cluster.run(old);
    cluster.wait_local(old, "k", &json!("after"));
    assert_eq!(
        runtime.block_on(cluster.read(&all, "k")),
        Some(json!("after"))
    );
    eprintln!(
        "procs: node {old} caught up {:?} after its restart; done in {:?}",
        restarted_at.elapsed(),
        started.elapsed()
    );
}

#[test]
fn five_processes_elect_a_new_leader_after_the_leader_is_killed() {
    leader_killed(5);
}

#[test]
fn three_processes_elect_a_new_leader_after_the_leader_is_killed() {
    leader_killed(3);
}

/// Five nodes; the leader and the two lowest-numbered followers are SIGKILLed, so two followers
/// are left: a minority that takes no write. Restarted, the majority holds the value from before
/// the kill, and writes resume.
#[test]
fn two_of_five_processes_cannot_commit_and_writes_resume_with_a_majority() {
    let started = Instant::now();
    let runtime = runtime();
    let mut cluster = Cluster::start(5);
    let all = cluster.ids.clone();
    let (leader, term) = cluster.leader(&all, 0);
    let applied = runtime.block_on(cluster.commit(&[leader], put("k", "before")));
    assert_eq!(applied, Applied::Written);
    for id in &all {
        cluster.wait_local(*id, "k", &json!("before"));
    }

    let mut killed = vec![leader];
    killed.extend(all.iter().copied().filter(|id| *id != leader).take(2));
    let survivors: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|id| !killed.contains(id))
        .collect();
    for id in &killed {
        cluster.kill(*id);
    }
    // Well past the election timeout: the survivors have noticed that the leader is gone.
    std::thread::sleep(Duration::from_secs(1));
    let refused_or_lost = |r: &Result<Applied, ConsensusError>| {
        matches!(
            r,
            Err(ConsensusError::Unreachable { .. }
                | ConsensusError::NotLeader { .. }
                | ConsensusError::Indeterminate { .. })
        )
    };
    let mut errors = Vec::new();
    for id in &survivors {
        let channel = cluster.channel(*id);
        let (result, only) = runtime.block_on(async {
            tokio::join!(
                channel.propose(put("k", "minority"), Duration::from_secs(3)),
                channel.propose(put("minority-only", "x"), Duration::from_secs(3)),
            )
        });
        assert!(
            refused_or_lost(&result) && refused_or_lost(&only),
            "node {id}, with one other node of five, committed or failed oddly: {result:?}, {only:?}"
        );
        assert_eq!(cluster.local(*id, "k"), Ok(json!("before")));
        assert_eq!(cluster.local(*id, "minority-only"), Ok(Value::Null));
        errors.push(result.unwrap_err());
    }
    eprintln!(
        "procs: killed {killed:?} (leader {leader}); {survivors:?} committed nothing: {errors:?}"
    );

    let restarted_at = Instant::now();
    for id in &killed {
        cluster.run(*id);
    }
    // The restarted leader may lead its old term again: its vote for itself was committed.
    let (back, back_term) = cluster.leader(&all, 0);
    runtime.block_on(async {
        assert_eq!(cluster.read(&all, "k").await, Some(json!("before")));
        assert_eq!(cluster.read(&all, "minority-only").await, None);
    });
    let applied = runtime.block_on(cluster.commit(&all, put("k", "resumed")));
    assert_eq!(applied, Applied::Written);
    for id in &all {
        cluster.wait_local(*id, "k", &json!("resumed"));
        assert_eq!(cluster.local(*id, "minority-only"), Ok(Value::Null));
    }
    eprintln!(
        "procs: majority back under node {back} (term {back_term}, killed in term {term}), write committed {:?} after the restart; done in {:?}",
        restarted_at.elapsed(),
        started.elapsed()
    );
}
