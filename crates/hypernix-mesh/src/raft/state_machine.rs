//! The replicated key-value state machine and its snapshots, kept in the node's redb file.
//!
//! Applying a batch of committed entries is one redb write transaction: the documents it
//! changes and the id of the last entry applied commit together, so a restarted node never
//! applies an entry twice.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return StorageError by value"
)]

use super::TypeConfig;
use super::storage::{
    KV, READ_SM, SM_APPLIED, SM_MEMBERSHIP, SM_META, SM_SNAPSHOT, Storage, WRITE_SM,
};
use crate::consensus::{Applied, Command, NodeId, Table};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, Entry, EntryPayload, LogId, StorageError, StoredMembership};
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Cursor;

/// The key under which a snapshot's document bytes are kept, beside its metadata.
const SM_SNAPSHOT_DATA: &str = "snapshot_data";

type Membership = StoredMembership<NodeId, BasicNode>;
type Meta = SnapshotMeta<NodeId, BasicNode>;

/// A node's replicated state machine: documents by (table, key), in its redb file.
pub struct StateMachine {
    storage: Storage,
}

/// One document in a snapshot.
#[derive(Debug, Serialize, Deserialize)]
struct Doc {
    table: Table,
    key: String,
    value: Value,
}

impl StateMachine {
    pub(super) fn new(storage: Storage) -> Self {
        StateMachine { storage }
    }

    pub(super) fn storage(&self) -> &Storage {
        &self.storage
    }
}

/// Reads `key` of `table` from the node's applied state.
pub(super) fn read(storage: &Storage, table: Table, key: &str) -> Result<Option<Value>, String> {
    let txn = storage.db.begin_read().map_err(|e| e.to_string())?;
    let kv = txn.open_table(KV).map_err(|e| e.to_string())?;
    match kv.get((table.name(), key)).map_err(|e| e.to_string())? {
        Some(bytes) => serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| e.to_string()),
        None => Ok(None),
    }
}

/// Every key of `table` with its document, in key order, from the node's applied state.
pub(super) fn list(storage: &Storage, table: Table) -> Result<Vec<(String, Value)>, String> {
    let txn = storage.db.begin_read().map_err(|e| e.to_string())?;
    let kv = txn.open_table(KV).map_err(|e| e.to_string())?;
    let name = table.name();
    let mut out = Vec::new();
    for row in kv.range((name, "")..).map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        let (t, k) = key.value();
        if t != name {
            break;
        }
        let doc = serde_json::from_slice(value.value()).map_err(|e| e.to_string())?;
        out.push((k.to_owned(), doc));
    }
    Ok(out)
}

fn sm_meta<T: for<'de> Deserialize<'de>>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StorageError<NodeId>> {
    match table.get(key).map_err(|e| READ_SM(&e))? {
        Some(bytes) => Ok(Some(
            serde_json::from_slice(bytes.value()).map_err(|e| READ_SM(&e))?,
        )),
        None => Ok(None),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    serde_json::to_vec(value).map_err(|e| WRITE_SM(&e).into())
}

/// Applies one command to the documents table.
fn apply_command(
    kv: &mut redb::Table<(&str, &str), &[u8]>,
    command: &Command,
) -> Result<Applied, StorageError<NodeId>> {
    let at = (command.table().name(), command.key());
    match command {
        Command::Put { value, .. } => {
            kv.insert(at, to_json(value)?.as_slice())
                .map_err(|e| WRITE_SM(&e))?;
            Ok(Applied::Written)
        }
        Command::Delete { .. } => {
            kv.remove(at).map_err(|e| WRITE_SM(&e))?;
            Ok(Applied::Written)
        }
        Command::CompareAndSwap { expected, new, .. } => {
            let current: Option<Value> = match kv.get(at).map_err(|e| READ_SM(&e))? {
                Some(bytes) => {
                    Some(serde_json::from_slice(bytes.value()).map_err(|e| READ_SM(&e))?)
                }
                None => None,
            };
            if current != *expected {
                return Ok(Applied::Mismatch { current });
            }
            match new {
                Some(value) => kv.insert(at, to_json(value)?.as_slice()).map(|_| ()),
                None => kv.remove(at).map(|_| ()),
            }
            .map_err(|e| WRITE_SM(&e))?;
            Ok(Applied::Swapped)
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        let txn = self.storage.db.begin_read().map_err(|e| READ_SM(&e))?;
        let meta = txn.open_table(SM_META).map_err(|e| READ_SM(&e))?;
        let applied = sm_meta(&meta, SM_APPLIED)?;
        let membership = sm_meta(&meta, SM_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<Applied>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let txn = self.storage.begin_write().map_err(|e| WRITE_SM(&e))?;
        let mut replies = Vec::new();
        {
            let mut kv = txn.open_table(KV).map_err(|e| WRITE_SM(&e))?;
            let mut meta = txn.open_table(SM_META).map_err(|e| WRITE_SM(&e))?;
            for entry in entries {
                let reply = match &entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(command) => Some(apply_command(&mut kv, command)?),
                    EntryPayload::Membership(membership) => {
                        let stored = Membership::new(Some(entry.log_id), membership.clone());
                        meta.insert(SM_MEMBERSHIP, to_json(&stored)?.as_slice())
                            .map_err(|e| WRITE_SM(&e))?;
                        None
                    }
                };
                meta.insert(SM_APPLIED, to_json(&entry.log_id)?.as_slice())
                    .map_err(|e| WRITE_SM(&e))?;
                replies.push(reply);
            }
        }
        txn.commit().map_err(|e| WRITE_SM(&e))?;
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            storage: self.storage.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let docs: Vec<Doc> = serde_json::from_slice(&data).map_err(|e| WRITE_SM(&e))?;
        let txn = self.storage.begin_write().map_err(|e| WRITE_SM(&e))?;
        {
            let mut kv = txn.open_table(KV).map_err(|e| WRITE_SM(&e))?;
            kv.retain(|_, _| false).map_err(|e| WRITE_SM(&e))?;
            for doc in &docs {
                kv.insert(
                    (doc.table.name(), doc.key.as_str()),
                    to_json(&doc.value)?.as_slice(),
                )
                .map_err(|e| WRITE_SM(&e))?;
            }
            let mut sm = txn.open_table(SM_META).map_err(|e| WRITE_SM(&e))?;
            match &meta.last_log_id {
                Some(id) => sm.insert(SM_APPLIED, to_json(id)?.as_slice()).map(|_| ()),
                None => sm.remove(SM_APPLIED).map(|_| ()),
            }
            .map_err(|e| WRITE_SM(&e))?;
            sm.insert(SM_MEMBERSHIP, to_json(&meta.last_membership)?.as_slice())
                .map_err(|e| WRITE_SM(&e))?;
            sm.insert(SM_SNAPSHOT, to_json(meta)?.as_slice())
                .map_err(|e| WRITE_SM(&e))?;
            sm.insert(SM_SNAPSHOT_DATA, data.as_slice())
                .map_err(|e| WRITE_SM(&e))?;
        }
        txn.commit().map_err(|e| WRITE_SM(&e).into())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let txn = self.storage.db.begin_read().map_err(|e| READ_SM(&e))?;
        let sm = txn.open_table(SM_META).map_err(|e| READ_SM(&e))?;
        let Some(meta) = sm_meta::<Meta>(&sm, SM_SNAPSHOT)? else {
            return Ok(None);
        };
        let data = match sm.get(SM_SNAPSHOT_DATA).map_err(|e| READ_SM(&e))? {
            Some(bytes) => bytes.value().to_vec(),
            None => Vec::new(),
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Builds a snapshot of the applied state from one consistent read of the redb file.
pub struct SnapshotBuilder {
    storage: Storage,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, data) = {
            let txn = self.storage.db.begin_read().map_err(|e| READ_SM(&e))?;
            let sm = txn.open_table(SM_META).map_err(|e| READ_SM(&e))?;
            let last_log_id: Option<LogId<NodeId>> = sm_meta(&sm, SM_APPLIED)?;
            let last_membership: Membership = sm_meta(&sm, SM_MEMBERSHIP)?.unwrap_or_default();
            let kv = txn.open_table(KV).map_err(|e| READ_SM(&e))?;
            let mut docs = Vec::new();
            for row in kv.iter().map_err(|e| READ_SM(&e))? {
                let (key, bytes) = row.map_err(|e| READ_SM(&e))?;
                let (table, key) = key.value();
                let Some(table) = Table::from_name(table) else {
                    continue;
                };
                let value = serde_json::from_slice(bytes.value()).map_err(|e| READ_SM(&e))?;
                docs.push(Doc {
                    table,
                    key: key.to_owned(),
                    value,
                });
            }
            let snapshot_id = match &last_log_id {
                Some(id) => format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.leader_id.node_id, id.index
                ),
                None => "empty".to_owned(),
            };
            let meta = Meta {
                last_log_id,
                last_membership,
                snapshot_id,
            };
            (meta, serde_json::to_vec(&docs).map_err(|e| WRITE_SM(&e))?)
        };
        let txn = self.storage.begin_write().map_err(|e| WRITE_SM(&e))?;
        {
            let mut sm = txn.open_table(SM_META).map_err(|e| WRITE_SM(&e))?;
            sm.insert(SM_SNAPSHOT, to_json(&meta)?.as_slice())
                .map_err(|e| WRITE_SM(&e))?;
            sm.insert(SM_SNAPSHOT_DATA, data.as_slice())
                .map_err(|e| WRITE_SM(&e))?;
        }
        txn.commit().map_err(|e| WRITE_SM(&e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
