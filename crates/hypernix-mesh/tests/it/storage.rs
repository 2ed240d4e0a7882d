//! The redb log store and state machine: openraft's storage suite, and state surviving a reopen.

use hypernix_mesh::consensus::{Applied, Command, Table};
use hypernix_mesh::raft::storage::open;
use hypernix_mesh::raft::{LogStore, StateMachine, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError, Vote};
use serde_json::json;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (log, sm) = open(&dir.path().join("node.redb")).expect("a fresh redb file opens");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).expect("the storage suite passes");
}

fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(command),
    }
}

#[tokio::test]
async fn applied_state_and_vote_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let put = Command::Put {
        table: Table::Units,
        key: "web".into(),
        value: json!({"cpu": 2}),
    };
    let cas = Command::CompareAndSwap {
        table: Table::Units,
        key: "web".into(),
        expected: Some(json!({"cpu": 1})),
        new: None,
    };
    {
        let (mut log, mut sm) = open(&path).unwrap();
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        let replies = sm.apply([entry(1, put), entry(2, cas)]).await.unwrap();
        assert_eq!(
            replies,
            vec![
                Some(Applied::Written),
                Some(Applied::Mismatch {
                    current: Some(json!({"cpu": 2}))
                })
            ]
        );
    }
    let (mut log, mut sm) = open(&path).unwrap();
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied.map(|id| id.index), Some(2));
}

#[tokio::test]
async fn a_snapshot_installs_the_same_documents_elsewhere() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, mut leader) = open(&dirs.0.path().join("a.redb")).unwrap();
    let (_, mut follower) = open(&dirs.1.path().join("b.redb")).unwrap();
    let put = |key: &str, n: u64| Command::Put {
        table: Table::Placement,
        key: key.into(),
        value: json!(n),
    };
    leader
        .apply([entry(1, put("a", 1)), entry(2, put("b", 2))])
        .await
        .unwrap();
    follower.apply([entry(1, put("stale", 9))]).await.unwrap();
    let snapshot = {
        use openraft::storage::RaftSnapshotBuilder;
        leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
    };
    follower
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    let (applied, _) = follower.applied_state().await.unwrap();
    assert_eq!(applied.map(|id| id.index), Some(2));
    let rebuilt = {
        use openraft::storage::RaftSnapshotBuilder;
        follower
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
    };
    let docs: serde_json::Value = serde_json::from_slice(rebuilt.snapshot.get_ref()).unwrap();
    assert_eq!(
        docs,
        json!([
            {"table": "placement", "key": "a", "value": 1},
            {"table": "placement", "key": "b", "value": 2}
        ])
    );
}

#[tokio::test]
async fn a_malformed_snapshot_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut sm) = open(&dir.path().join("a.redb")).unwrap();
    let meta = Default::default();
    let garbage = Box::new(std::io::Cursor::new(b"{not json".to_vec()));
    assert!(sm.install_snapshot(&meta, garbage).await.is_err());
}

#[test]
fn a_file_in_use_by_another_node_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let _first = open(&path).unwrap();
    let Err(err) = open(&path) else {
        panic!("a second open of the same file succeeded");
    };
    let message = err.to_string();
    assert!(
        message.contains("node.redb") && message.contains("no other node uses it"),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_redb_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    std::fs::write(&path, b"this is not a database").unwrap();
    assert!(open(&path).is_err());
}

#[test]
fn raft_parameters_follow_the_schema_and_are_validated() {
    use hypernix_mesh::raft::RaftParameters;
    use std::time::Duration;
    let config = RaftParameters::default().to_openraft().unwrap();
    assert_eq!(
        (config.election_timeout_min, config.election_timeout_max),
        (150, 300)
    );
    assert_eq!(config.heartbeat_interval, 50);
    let backwards = RaftParameters {
        heartbeat_interval: Duration::from_millis(200),
        ..RaftParameters::default()
    };
    let err = backwards.to_openraft().unwrap_err();
    assert!(
        err.to_string()
            .contains("heartbeatInterval shorter than electionTimeout"),
        "{err}"
    );
}
