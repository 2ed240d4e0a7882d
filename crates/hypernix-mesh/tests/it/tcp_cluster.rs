//! Real nodes on loopback TCP: election, replication, failover, membership and snapshots.

use hypernix_mesh::consensus::{Applied, Command, Consensus, ConsensusError, NodeId, Role, Table};
use hypernix_mesh::raft::tcp::{TcpDialer, serve_tcp};
use hypernix_mesh::raft::wire::{FrameError, WIRE_VERSION, read_frame};
use hypernix_mesh::raft::{Channel, RaftNode, RaftParameters};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub(crate) struct Member {
    pub(crate) node: RaftNode,
    pub(crate) addr: String,
    server: JoinHandle<std::io::Result<()>>,
}

pub(crate) struct Cluster {
    dir: TempDir,
    pub(crate) members: BTreeMap<NodeId, Member>,
}

impl Cluster {
    /// A cluster of no nodes yet, its files in a new temporary directory.
    pub(crate) fn empty() -> Cluster {
        Cluster {
            dir: tempfile::tempdir().unwrap(),
            members: BTreeMap::new(),
        }
    }

    /// Starts node `id` serving on `listener`; it joins nothing until initialized or added.
    pub(crate) async fn start_node(&mut self, id: NodeId, listener: TcpListener) -> &Member {
        let addr = listener.local_addr().unwrap().to_string();
        let path = self.dir.path().join(format!("node-{id}.redb"));
        let node = RaftNode::start(id, &path, &RaftParameters::default(), Arc::new(TcpDialer))
            .await
            .expect("the node starts");
        let server = tokio::spawn(serve_tcp(node.clone(), listener));
        self.members.insert(id, Member { node, addr, server });
        &self.members[&id]
    }

    pub(crate) async fn new(size: u64) -> Cluster {
        let mut cluster = Cluster::empty();
        for id in 1..=size {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster.start_node(id, listener).await;
        }
        let voters = cluster
            .members
            .iter()
            .map(|(id, m)| (*id, m.addr.clone()))
            .collect();
        cluster.members[&1].node.initialize(&voters).await.unwrap();
        cluster
    }

    /// Waits until every running node in a cluster agrees on a leader other than `not`.
    pub(crate) async fn leader(&self, not: Option<NodeId>) -> NodeId {
        let joined = |node: &RaftNode| {
            let metrics = node.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .voter_ids()
                .next()
                .is_some()
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let seen: Vec<_> = self
                    .members
                    .values()
                    .filter(|m| !m.server.is_finished() && joined(&m.node))
                    .map(|m| m.node.leadership().borrow().leader)
                    .collect();
                if let Some(Some(leader)) = seen.first()
                    && Some(*leader) != not
                    && seen.iter().all(|l| *l == Some(*leader))
                {
                    return *leader;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a leader within 10 s")
    }

    pub(crate) async fn kill(&mut self, id: NodeId) {
        let member = self.members.remove(&id).unwrap();
        member.server.abort();
        member.node.shutdown().await.unwrap();
    }
}

pub(crate) fn put(key: &str, n: u64) -> Command {
    Command::Put {
        table: Table::Units,
        key: key.into(),
        value: json!(n),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_replicates_and_survives_its_leader() {
    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader(None).await;
    let node = &cluster.members[&leader].node;
    assert_eq!(node.propose(put("web", 1)).await.unwrap(), Applied::Written);
    assert_eq!(
        node.read(Table::Units, "web").await.unwrap(),
        Some(json!(1))
    );

    let follower = cluster
        .members
        .keys()
        .find(|id| **id != leader)
        .copied()
        .unwrap();
    let err = cluster.members[&follower]
        .node
        .propose(put("web", 2))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ConsensusError::NotLeader {
            node: follower,
            leader: Some(leader)
        }
    );
    let err = cluster.members[&follower]
        .node
        .read(Table::Units, "web")
        .await
        .unwrap_err();
    assert!(matches!(err, ConsensusError::NotLeader { .. }), "{err}");

    let term = cluster.members[&leader].node.leadership().borrow().term;
    cluster.kill(leader).await;
    let started = tokio::time::Instant::now();
    let new_leader = cluster.leader(Some(leader)).await;
    let failover = started.elapsed();
    eprintln!(
        "failover: all survivors agree on a new leader {failover:?} after the old one stopped"
    );
    let node = &cluster.members[&new_leader].node;
    assert!(node.leadership().borrow().term > term);
    assert_eq!(
        node.read(Table::Units, "web").await.unwrap(),
        Some(json!(1))
    );
    let cas = Command::CompareAndSwap {
        table: Table::Units,
        key: "web".into(),
        expected: Some(json!(1)),
        new: Some(json!(3)),
    };
    assert_eq!(node.propose(cas).await.unwrap(), Applied::Swapped);
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_the_leader_over_tcp_and_bad_keys_are_refused() {
    let cluster = Cluster::new(3).await;
    let leader = cluster.leader(None).await;
    let channel = Channel::new(Arc::new(TcpDialer), cluster.members[&leader].addr.clone());
    let timeout = Duration::from_secs(5);
    assert_eq!(
        channel.propose(put("db", 7), timeout).await.unwrap(),
        Applied::Written
    );
    assert_eq!(
        channel.read(Table::Units, "db", timeout).await.unwrap(),
        Some(json!(7))
    );
    let err = channel.read(Table::Units, "", timeout).await.unwrap_err();
    assert_eq!(
        err,
        ConsensusError::InvalidKey {
            table: Table::Units,
            len: 0
        }
    );
    let long = "k".repeat(2000);
    let err = channel.propose(put(&long, 1), timeout).await.unwrap_err();
    assert!(err.to_string().contains("use 1 to 1024 bytes"), "{err}");
    let huge = Command::Put {
        table: Table::Units,
        key: "huge".into(),
        value: json!("x".repeat(70 << 10)),
    };
    let err = channel.propose(huge, timeout).await.unwrap_err();
    assert!(
        matches!(err, ConsensusError::TooLarge { len, .. } if len > 70 << 10),
        "{err}"
    );
    assert!(err.to_string().contains("replicate a reference"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_closes_a_connection_that_sends_garbage() {
    let cluster = Cluster::new(1).await;
    cluster.leader(None).await;
    let mut stream = tokio::net::TcpStream::connect(&cluster.members[&1].addr)
        .await
        .unwrap();
    let mut frame = 5u32.to_be_bytes().to_vec();
    frame.push(WIRE_VERSION);
    frame.extend_from_slice(b"}}}}");
    stream.write_all(&frame).await.unwrap();
    let answer = read_frame::<_, serde_json::Value>(&mut stream).await;
    assert!(
        matches!(answer, Ok(None) | Err(FrameError::Io(_))),
        "{answer:?}"
    );
    // The node still serves others.
    let channel = Channel::new(Arc::new(TcpDialer), cluster.members[&1].addr.clone());
    let applied = channel
        .propose(put("after", 1), Duration::from_secs(5))
        .await;
    assert_eq!(applied.unwrap(), Applied::Written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_catches_up_from_a_snapshot_and_can_be_promoted_and_removed() {
    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader(None).await;
    let node = cluster.members[&leader].node.clone();
    for n in 0..20 {
        node.propose(put(&format!("u{n}"), n)).await.unwrap();
    }
    node.snapshot().await.unwrap();
    let snapshot_at = |node: &RaftNode| node.metrics().borrow().snapshot.map(|id| id.index);
    let mut metrics = node.metrics();
    tokio::time::timeout(Duration::from_secs(5), async {
        // The snapshot is taken in the background.
        while snapshot_at(&node).is_none() {
            metrics.changed().await.unwrap();
        }
    })
    .await
    .expect("a snapshot within 5 s");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    cluster.start_node(4, listener).await;
    node.add_member(4, &addr, Role::Learner).await.unwrap();
    // The log before the snapshot is purged, so the learner got the snapshot itself.
    let learner = cluster.members[&4].node.clone();
    let mut metrics = learner.metrics();
    tokio::time::timeout(Duration::from_secs(5), async {
        while snapshot_at(&learner) < Some(20) {
            metrics.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no snapshot on the learner: {:?}; leader: {:?}",
            learner.metrics().borrow(),
            node.metrics().borrow()
        )
    });
    node.add_member(4, &addr, Role::Voter).await.unwrap();
    cluster.kill(leader).await;
    let new_leader = cluster.leader(Some(leader)).await;
    let node = cluster.members[&new_leader].node.clone();
    assert_eq!(
        node.read(Table::Units, "u19").await.unwrap(),
        Some(json!(19))
    );
    node.remove_member(leader).await.unwrap();
    node.propose(put("after-removal", 1)).await.unwrap();
}

#[tokio::test]
async fn a_state_file_serves_only_the_node_that_made_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let parameters = RaftParameters::default();
    let node = RaftNode::start(2, &path, &parameters, Arc::new(TcpDialer))
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    drop(node);
    let Err(err) = RaftNode::start(3, &path, &parameters, Arc::new(TcpDialer)).await else {
        panic!("node 3 started on node 2's file");
    };
    assert!(
        err.to_string().contains("belongs to node 2, not node 3"),
        "{err}"
    );
    let again = RaftNode::start(2, &path, &parameters, Arc::new(TcpDialer)).await;
    assert!(again.is_ok(), "node 2 could not restart on its own file");
}
