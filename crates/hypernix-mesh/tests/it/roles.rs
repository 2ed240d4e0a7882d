//! Roles on real nodes over loopback TCP: a witness keeps quorum, an edge node only learns.

use crate::tcp_cluster::{Cluster, put};
use hypernix_mesh::consensus::{Applied, Consensus, ConsensusError, NodeId, Role, Table};
use hypernix_mesh::membership::NodeRole::{self, Controller, Edge, Storage, Witness, Worker};
use hypernix_mesh::raft::RaftNode;
use hypernix_mesh::roles::{ConsensusMembers, consensus_members, duties};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::net::TcpListener;

/// Starts one node per entry of `roles` and splits them into voters and learners by role.
async fn start(roles: &[(NodeId, &'static [NodeRole])]) -> (Cluster, ConsensusMembers) {
    let mut cluster = Cluster::empty();
    for (id, _) in roles {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        cluster.start_node(*id, listener).await;
    }
    let split = consensus_members(
        roles
            .iter()
            .map(|(id, r)| (*id, cluster.members[id].addr.as_str(), *r)),
    )
    .expect("valid roles");
    (cluster, split)
}

/// The voters and learners of the membership `node` last applied.
fn membership(node: &RaftNode) -> (BTreeSet<NodeId>, BTreeSet<NodeId>) {
    let metrics = node.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    (
        membership.voter_ids().collect(),
        membership.learner_ids().collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_and_a_witness_keep_quorum_when_a_worker_dies() {
    let roles: [(NodeId, &[NodeRole]); 3] = [(1, &[Worker]), (2, &[Worker]), (3, &[Witness])];
    let (mut cluster, split) = start(&roles).await;
    assert_eq!(split.voters.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert!(split.learners.is_empty());
    assert!(!duties(3, &[Witness]).unwrap().runs_units);
    cluster.members[&1]
        .node
        .initialize(&split.voters)
        .await
        .unwrap();
    let leader = cluster.leader(None).await;
    let node = cluster.members[&leader].node.clone();
    assert_eq!(
        node.propose(put("before", 1)).await.unwrap(),
        Applied::Written
    );

    // Kill a worker: the leader if it is one, so that the survivors must also elect.
    let victim = if leader == 3 { 1 } else { leader };
    cluster.kill(victim).await;
    let not = (victim == leader).then_some(victim);
    let leader = cluster.leader(not).await;
    let node = cluster.members[&leader].node.clone();
    let written = tokio::time::timeout(Duration::from_secs(10), node.propose(put("after", 2)))
        .await
        .expect("the survivor and the witness commit within 10 s");
    assert_eq!(written.unwrap(), Applied::Written);
    assert_eq!(
        node.read(Table::Units, "after").await.unwrap(),
        Some(json!(2))
    );
    assert_eq!(
        membership(&node),
        (BTreeSet::from([1, 2, 3]), BTreeSet::new())
    );

    // The witness's vote is what made the quorum: without it the last worker cannot commit.
    let worker = 3 - victim;
    cluster.kill(3).await;
    let alone = cluster.members[&worker].node.clone();
    // Past its election timeout too: a follower that stands for leader cannot win alone.
    let tried = tokio::time::Instant::now();
    while tried.elapsed() < Duration::from_millis(1500) {
        let attempt =
            tokio::time::timeout(Duration::from_millis(300), alone.propose(put("alone", 3))).await;
        assert!(
            !matches!(attempt, Ok(Ok(_))),
            "one worker of three committed alone"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_node_is_a_learner_that_receives_the_replicated_state() {
    let roles: [(NodeId, &[NodeRole]); 4] = [
        (1, &[Controller]),
        (2, &[Worker]),
        (3, &[Storage]),
        (4, &[Edge]),
    ];
    let (cluster, split) = start(&roles).await;
    assert_eq!(split.voters.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(split.learners.keys().copied().collect::<Vec<_>>(), [4]);
    cluster.members[&1]
        .node
        .initialize(&split.voters)
        .await
        .unwrap();
    let leader = cluster.leader(None).await;
    let node = cluster.members[&leader].node.clone();
    for (id, addr) in &split.learners {
        node.add_member(*id, addr, Role::Learner).await.unwrap();
    }
    assert_eq!(
        node.propose(put("edge", 5)).await.unwrap(),
        Applied::Written
    );

    let edge = cluster.members[&4].node.clone();
    tokio::time::timeout(Duration::from_secs(5), async {
        while edge.read_local(Table::Units, "edge").unwrap() != Some(json!(5)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the edge node applies the write within 5 s");
    let expected = (BTreeSet::from([1, 2, 3]), BTreeSet::from([4]));
    assert_eq!(membership(&node), expected);
    assert_eq!(membership(&edge), expected);
    // A learner neither leads nor accepts writes.
    assert_eq!(edge.leadership().borrow().leader, Some(leader));
    let err = edge.propose(put("edge", 6)).await.unwrap_err();
    assert!(
        matches!(err, ConsensusError::NotLeader { node: 4, .. }),
        "{err}"
    );
}
