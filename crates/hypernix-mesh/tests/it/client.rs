//! The leader client on a real TCP cluster: finding the leader through any node, proposing,
//! joining and leaving; and listing a table from a node's applied state.

use crate::tcp_cluster::{Cluster, put};
use hypernix_mesh::consensus::{Applied, Command, Consensus, ConsensusError, Role, Table};
use hypernix_mesh::raft::tcp::TcpDialer;
use hypernix_mesh::raft::wire::{Request, Response};
use hypernix_mesh::raft::{Channel, LeaderClient};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_seeded_with_a_follower_reaches_the_leader_and_nodes_join_and_leave() {
    let mut cluster = Cluster::new(3).await;
    let leader = cluster.leader(None).await;
    let follower = *cluster.members.keys().find(|id| **id != leader).unwrap();
    let seeds = vec![cluster.members[&follower].addr.clone()];
    let client = LeaderClient::new(Arc::new(TcpDialer), seeds);

    // Every node names the same leader and its address.
    let who = Channel::new(Arc::new(TcpDialer), cluster.members[&follower].addr.clone())
        .call(&Request::WhoLeads, Duration::from_secs(2))
        .await
        .unwrap();
    match who {
        Response::WhoLeads(Some((id, addr))) => {
            assert_eq!(id, leader);
            assert_eq!(addr, cluster.members[&leader].addr);
        }
        other => panic!("expected the leader, got {other:?}"),
    }
    assert_eq!(client.leader().await.map(|l| l.0), Some(leader));
    assert_eq!(
        client.propose(put("web", 1), PATIENCE).await.unwrap(),
        Applied::Written
    );

    // A fourth node joins as a learner through the client, receives the state, then leaves.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = cluster.start_node(4, listener).await.addr.clone();
    client
        .add_member(4, &addr, Role::Learner, PATIENCE)
        .await
        .unwrap();
    let node4 = cluster.members[&4].node.clone();
    tokio::time::timeout(PATIENCE, async {
        while node4.read_local(Table::Units, "web").unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the learner applies the leader's writes");
    assert!(node4.is_member().await);
    assert_eq!(
        node4.propose(put("web", 2)).await.unwrap_err(),
        ConsensusError::NotLeader {
            node: 4,
            leader: Some(leader)
        }
    );
    client.remove_member(4, PATIENCE).await.unwrap();
    let members = cluster.members[&leader].node.metrics();
    assert!(
        members
            .borrow()
            .membership_config
            .membership()
            .get_node(&4)
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_reachable_node_gives_up_after_its_patience() {
    // A port nothing listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let client = LeaderClient::new(Arc::new(TcpDialer), vec![addr]);
    let started = std::time::Instant::now();
    let err = client
        .propose(put("web", 1), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConsensusError::NotLeader { leader: None, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lists_its_own_documents_in_key_order() {
    let cluster = Cluster::new(1).await;
    let leader = cluster.leader(None).await;
    let node = &cluster.members[&leader].node;
    for (table, key, n) in [
        (Table::Units, "b", 2),
        (Table::Units, "a", 1),
        (Table::Placement, "a", 9),
        (Table::Nodes, "1", 7),
        (Table::Meta, "config", 5),
    ] {
        let put = Command::Put {
            table,
            key: key.into(),
            value: json!(n),
        };
        node.propose(put).await.unwrap();
    }
    let units = node.list_local(Table::Units).unwrap();
    assert_eq!(units, vec![("a".into(), json!(1)), ("b".into(), json!(2))]);
    assert_eq!(
        node.list_local(Table::Placement).unwrap(),
        vec![("a".into(), json!(9))]
    );
    assert_eq!(
        node.list_local(Table::Meta).unwrap(),
        vec![("config".into(), json!(5))]
    );
    assert!(node.list_local(Table::Revocations).unwrap().is_empty());
}
