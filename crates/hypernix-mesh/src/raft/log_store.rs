//! The Raft log and vote, kept in the node's redb file.

#![allow(
    clippy::result_large_err,
    reason = "openraft's storage traits return StorageError by value"
)]

use super::TypeConfig;
use super::storage::{
    LOG, META, META_COMMITTED, META_PURGED, META_VOTE, READ, READ_LOGS, READ_VOTE, Storage, WRITE,
    WRITE_LOGS, WRITE_VOTE,
};
use crate::consensus::NodeId;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, RaftLogId, StorageError, Vote};
use redb::{ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

/// The Raft log storage of one node: entries by index, and the vote, in its redb file.
#[derive(Clone)]
pub struct LogStore {
    storage: Storage,
}

impl LogStore {
    pub(super) fn new(storage: Storage) -> Self {
        LogStore { storage }
    }

    pub(super) fn storage(&self) -> &Storage {
        &self.storage
    }

    fn entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let txn = self.storage.db.begin_read().map_err(|e| READ_LOGS(&e))?;
        let table = txn.open_table(LOG).map_err(|e| READ_LOGS(&e))?;
        let mut out = Vec::new();
        for row in table.range::<u64>(range).map_err(|e| READ_LOGS(&e))? {
            let (_, bytes) = row.map_err(|e| READ_LOGS(&e))?;
            let entry = serde_json::from_slice(bytes.value()).map_err(|e| READ_LOGS(&e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.entries((range.start_bound().cloned(), range.end_bound().cloned()))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.storage.meta(META_PURGED, READ_LOGS)?;
        let txn = self.storage.db.begin_read().map_err(|e| READ_LOGS(&e))?;
        let table = txn.open_table(LOG).map_err(|e| READ_LOGS(&e))?;
        let last = match table.last().map_err(|e| READ_LOGS(&e))? {
            Some((_, bytes)) => {
                let entry: Entry<TypeConfig> =
                    serde_json::from_slice(bytes.value()).map_err(|e| READ_LOGS(&e))?;
                Some(*entry.get_log_id())
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.storage.set_meta(META_VOTE, Some(vote), WRITE_VOTE)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.storage.meta(META_VOTE, READ_VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.storage
            .set_meta(META_COMMITTED, committed.as_ref(), WRITE)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.storage.meta(META_COMMITTED, READ)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let txn = self.storage.begin_write().map_err(|e| WRITE_LOGS(&e))?;
        {
            let mut table = txn.open_table(LOG).map_err(|e| WRITE_LOGS(&e))?;
            for entry in entries {
                let bytes = serde_json::to_vec(&entry).map_err(|e| WRITE_LOGS(&e))?;
                table
                    .insert(entry.get_log_id().index, bytes.as_slice())
                    .map_err(|e| WRITE_LOGS(&e))?;
            }
        }
        let committed = txn.commit();
        let io_result = committed
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(io_result);
        committed.map_err(|e| WRITE_LOGS(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let txn = self.storage.begin_write().map_err(|e| WRITE_LOGS(&e))?;
        {
            let mut table = txn.open_table(LOG).map_err(|e| WRITE_LOGS(&e))?;
            table
                .retain_in(log_id.index.., |_, _| false)
                .map_err(|e| WRITE_LOGS(&e))?;
        }
        txn.commit().map_err(|e| WRITE_LOGS(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let txn = self.storage.begin_write().map_err(|e| WRITE_LOGS(&e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| WRITE_LOGS(&e))?;
            let bytes = serde_json::to_vec(&log_id).map_err(|e| WRITE_LOGS(&e))?;
            meta.insert(META_PURGED, bytes.as_slice())
                .map_err(|e| WRITE_LOGS(&e))?;
            let mut table = txn.open_table(LOG).map_err(|e| WRITE_LOGS(&e))?;
            table
                .retain_in(..=log_id.index, |_, _| false)
                .map_err(|e| WRITE_LOGS(&e))?;
        }
        txn.commit().map_err(|e| WRITE_LOGS(&e).into())
    }
}
