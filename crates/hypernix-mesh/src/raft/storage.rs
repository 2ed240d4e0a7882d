//! The node's redb file: which tables it holds, and opening it.
//!
//! One file per node holds both the Raft log and the state machine, so a node that crashes
//! and restarts finds its vote, its log and its applied state together.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return StorageError by value"
)]

use super::EngineError;
use super::log_store::LogStore;
use super::state_machine::StateMachine;
use crate::consensus::NodeId;
use openraft::{StorageError, StorageIOError};
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Raft log entries (JSON), by log index.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The log's bookkeeping (JSON), by name: `node`, `vote`, `committed`, `purged`.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The replicated documents (JSON), by (table name, key).
pub(super) const KV: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sm_kv");
/// The state machine's bookkeeping (JSON), by name: `applied`, `membership`, `snapshot`.
pub(super) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

pub(super) const META_VOTE: &str = "vote";
pub(super) const META_COMMITTED: &str = "committed";
pub(super) const META_PURGED: &str = "purged";
pub(super) const META_NODE: &str = "node";
pub(super) const SM_APPLIED: &str = "applied";
pub(super) const SM_MEMBERSHIP: &str = "membership";
pub(super) const SM_SNAPSHOT: &str = "snapshot";

/// A node's open redb file, shared by its log store, state machine and readers.
#[derive(Clone)]
pub(crate) struct Storage {
    pub(super) db: Arc<Database>,
}

type MapErr = fn(&dyn std::error::Error) -> StorageIOError<NodeId>;

impl Storage {
    pub(super) fn begin_write(&self) -> Result<WriteTransaction, redb::TransactionError> {
        self.db.begin_write()
    }

    /// Reads the JSON document `key` of the log's bookkeeping table.
    pub(super) fn meta<T: DeserializeOwned>(
        &self,
        key: &str,
        err: MapErr,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let txn = self.db.begin_read().map_err(|e| err(&e))?;
        let table = txn.open_table(META).map_err(|e| err(&e))?;
        match table.get(key).map_err(|e| err(&e))? {
            Some(bytes) => Ok(Some(
                serde_json::from_slice(bytes.value()).map_err(|e| err(&e))?,
            )),
            None => Ok(None),
        }
    }

    /// Writes (or with `None` removes) the JSON document `key` of the log's bookkeeping table.
    pub(super) fn set_meta<T: Serialize>(
        &self,
        key: &str,
        value: Option<&T>,
        err: MapErr,
    ) -> Result<(), StorageError<NodeId>> {
        let txn = self.begin_write().map_err(|e| err(&e))?;
        {
            let mut table = txn.open_table(META).map_err(|e| err(&e))?;
            match value {
                Some(value) => {
                    let bytes = serde_json::to_vec(value).map_err(|e| err(&e))?;
                    table.insert(key, bytes.as_slice()).map_err(|e| err(&e))?;
                }
                None => {
                    table.remove(key).map_err(|e| err(&e))?;
                }
            }
        }
        txn.commit().map_err(|e| err(&e).into())
    }
}

/// Marks the file as node `id`'s on first use, and refuses it to any other node.
pub(super) fn claim(log: &LogStore, path: &Path, id: NodeId) -> Result<(), EngineError> {
    let storage = log.storage();
    let fail = |reason: String| EngineError::Claim {
        path: PathBuf::from(path),
        reason,
    };
    match storage
        .meta::<NodeId>(META_NODE, READ)
        .map_err(|e| fail(e.to_string()))?
    {
        Some(owner) if owner == id => Ok(()),
        Some(owner) => Err(EngineError::OtherNode {
            path: PathBuf::from(path),
            owner,
            node: id,
        }),
        None => storage
            .set_meta(META_NODE, Some(&id), WRITE)
            .map_err(|e| fail(e.to_string())),
    }
}

/// Opens (creating if needed) the redb file at `path`, and returns its log store and state machine.
pub fn open(path: &Path) -> Result<(LogStore, StateMachine), EngineError> {
    let fail = |source: redb::Error| EngineError::Open {
        path: PathBuf::from(path),
        source: Box::new(source),
    };
    let db = Database::create(path).map_err(|e| fail(e.into()))?;
    let txn = db.begin_write().map_err(|e| fail(e.into()))?;
    txn.open_table(LOG).map_err(|e| fail(e.into()))?;
    txn.open_table(META).map_err(|e| fail(e.into()))?;
    txn.open_table(KV).map_err(|e| fail(e.into()))?;
    txn.open_table(SM_META).map_err(|e| fail(e.into()))?;
    txn.commit().map_err(|e| fail(e.into()))?;
    let storage = Storage { db: Arc::new(db) };
    Ok((LogStore::new(storage.clone()), StateMachine::new(storage)))
}

/// Wraps any error in openraft's `AnyError`, keeping its message.
fn anyerror(e: &dyn std::error::Error) -> openraft::AnyError {
    openraft::AnyError::error(e.to_string())
}

/// Maps a redb or JSON error into openraft's log read error.
pub(super) const READ_LOGS: MapErr = |e| StorageIOError::read_logs(anyerror(e));
/// Maps a redb or JSON error into openraft's log write error.
pub(super) const WRITE_LOGS: MapErr = |e| StorageIOError::write_logs(anyerror(e));
/// Maps a redb or JSON error into openraft's vote read error.
pub(super) const READ_VOTE: MapErr = |e| StorageIOError::read_vote(anyerror(e));
/// Maps a redb or JSON error into openraft's vote write error.
pub(super) const WRITE_VOTE: MapErr = |e| StorageIOError::write_vote(anyerror(e));
/// Maps a redb or JSON error into openraft's generic read error.
pub(super) const READ: MapErr = |e| StorageIOError::read(anyerror(e));
/// Maps a redb or JSON error into openraft's generic write error.
pub(super) const WRITE: MapErr = |e| StorageIOError::write(anyerror(e));
/// Maps a redb or JSON error into openraft's state-machine read error.
pub(super) const READ_SM: MapErr = |e| StorageIOError::read_state_machine(anyerror(e));
/// Maps a redb or JSON error into openraft's state-machine write error.
pub(super) const WRITE_SM: MapErr = |e| StorageIOError::write_state_machine(anyerror(e));
