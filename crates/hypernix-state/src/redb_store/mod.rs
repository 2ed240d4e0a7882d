//! [`RedbStore`]: the state store and event log in one redb file.
//!
//! The file holds five tables: `desired`, `observed` and `meta` (UTF-8 key → JSON
//! document), `events` (event id → event JSON) and `store` (the store format, the
//! revision, and the last event id). Keys and values are stored as bytes and checked when
//! read, so a file altered outside hypernix gives an error naming the table and key.
//!
//! Durability: every commit, of a transaction or of an event, uses redb's default
//! durability, which writes and fsyncs before the call returns, so whatever a call
//! reported as done survives the daemon being killed or the machine losing power.

mod open;

use crate::error::StateError;
use crate::store::{Op, StateStore, Table, check_key};
use chrono::Utc;
use hypernix_events::{Event, EventLog, LogError, NewEvent};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// The layout of the tables, as recorded under [`FORMAT_KEY`]; bumped on any change.
const FORMAT: u64 = 1;

/// The store's own counters.
const STORE: TableDefinition<&[u8], u64> = TableDefinition::new("store");
const FORMAT_KEY: &[u8] = b"format";
const REVISION_KEY: &[u8] = b"revision";
const LAST_EVENT_ID_KEY: &[u8] = b"lastEventId";

/// The name of the table of events, for errors.
const EVENTS_NAME: &str = "events";

/// The definition of a table of JSON documents.
fn docs(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// The definition of the table of events.
fn events() -> TableDefinition<'static, u64, &'static [u8]> {
    TableDefinition::new(EVENTS_NAME)
}

/// The daemon's state store and event log, in one redb file that one process holds open.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
}

impl RedbStore {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends events in one durable write transaction, with consecutive ids.
    fn append_events(&self, new: Vec<NewEvent>) -> Result<Vec<Event>, StateError> {
        let path = &self.path;
        let txn = self.db.begin_write().at(path)?;
        let stored = {
            let mut store = txn.open_table(STORE).at(path)?;
            let mut table = txn.open_table(events()).at(path)?;
            let mut id = counter(&store, LAST_EVENT_ID_KEY, path)?;
            let mut stored = Vec::with_capacity(new.len());
            for event in new {
                id += 1;
                let event = event.into_event(id, Utc::now());
                let json = serde_json::to_vec(&event).map_err(|source| StateError::Encode {
                    table: EVENTS_NAME,
                    key: id.to_string(),
                    source,
                })?;
                table.insert(id, json.as_slice()).at(path)?;
                stored.push(event);
            }
            store.insert(LAST_EVENT_ID_KEY, id).at(path)?;
            stored
        };
        txn.commit().at(path)?;
        Ok(stored)
    }

    fn read_events(&self, after_id: Option<u64>, limit: usize) -> Result<Vec<Event>, StateError> {
        let path = &self.path;
        let txn = self.db.begin_read().at(path)?;
        let table = txn.open_table(events()).at(path)?;
        let start = after_id.map_or(Bound::Unbounded, Bound::Excluded);
        let mut found = Vec::new();
        for entry in table
            .range::<u64>((start, Bound::Unbounded))
            .at(path)?
            .take(limit)
        {
            let (id, json) = entry.at(path)?;
            found.push(decode(
                path,
                EVENTS_NAME,
                &id.value().to_string(),
                json.value(),
            )?);
        }
        Ok(found)
    }

    fn last_event_id(&self) -> Result<Option<u64>, StateError> {
        let txn = self.db.begin_read().at(&self.path)?;
        let store = txn.open_table(STORE).at(&self.path)?;
        let id = counter(&store, LAST_EVENT_ID_KEY, &self.path)?;
        Ok((id > 0).then_some(id))
    }
}

impl StateStore for RedbStore {
    fn transact(&self, ops: Vec<Op>) -> Result<u64, StateError> {
        if ops.is_empty() {
            return self.revision();
        }
        let path = &self.path;
        let txn = self.db.begin_write().at(path)?;
        let revision = {
            // In the order of Table::ALL, so that `table as usize` finds a table.
            let mut tables = [
                txn.open_table(docs(Table::Desired)).at(path)?,
                txn.open_table(docs(Table::Observed)).at(path)?,
                txn.open_table(docs(Table::Meta)).at(path)?,
            ];
            for op in ops {
                match op {
                    Op::Put { table, key, value } => {
                        check_key(table, &key)?;
                        let json =
                            serde_json::to_vec(&value).map_err(|source| StateError::Encode {
                                table: table.name(),
                                key: key.clone(),
                                source,
                            })?;
                        tables[table as usize]
                            .insert(key.as_bytes(), json.as_slice())
                            .at(path)?;
                    }
                    Op::Delete { table, key } => {
                        check_key(table, &key)?;
                        tables[table as usize].remove(key.as_bytes()).at(path)?;
                    }
                }
            }
            let mut store = txn.open_table(STORE).at(path)?;
            let revision = counter(&store, REVISION_KEY, path)? + 1;
            store.insert(REVISION_KEY, revision).at(path)?;
            revision
        };
        txn.commit().at(path)?;
        Ok(revision)
    }

    fn get(&self, table: Table, key: &str) -> Result<Option<Value>, StateError> {
        let path = &self.path;
        let txn = self.db.begin_read().at(path)?;
        let docs = txn.open_table(docs(table)).at(path)?;
        let Some(json) = docs.get(key.as_bytes()).at(path)? else {
            return Ok(None);
        };
        decode(path, table.name(), key, json.value()).map(Some)
    }

    fn list(&self, table: Table) -> Result<Vec<(String, Value)>, StateError> {
        let path = &self.path;
        let txn = self.db.begin_read().at(path)?;
        let docs = txn.open_table(docs(table)).at(path)?;
        let mut found = Vec::new();
        for entry in docs.iter().at(path)? {
            let (key, json) = entry.at(path)?;
            let key =
                String::from_utf8(key.value().to_vec()).map_err(|err| StateError::KeyNotUtf8 {
                    path: path.clone(),
                    table: table.name(),
                    key: String::from_utf8_lossy(err.as_bytes()).into_owned(),
                })?;
            let value = decode(path, table.name(), &key, json.value())?;
            found.push((key, value));
        }
        Ok(found)
    }

    fn revision(&self) -> Result<u64, StateError> {
        let txn = self.db.begin_read().at(&self.path)?;
        let store = txn.open_table(STORE).at(&self.path)?;
        counter(&store, REVISION_KEY, &self.path)
    }
}

impl EventLog for RedbStore {
    fn append(&self, event: NewEvent) -> Result<Event, LogError> {
        let mut stored = self.append_events(vec![event]).map_err(LogError::new)?;
        stored
            .pop()
            .ok_or_else(|| LogError::new("the event log stored nothing"))
    }

    fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, LogError> {
        self.append_events(events).map_err(LogError::new)
    }

    fn read_from(&self, after_id: Option<u64>, limit: usize) -> Result<Vec<Event>, LogError> {
        self.read_events(after_id, limit).map_err(LogError::new)
    }

    fn last_id(&self) -> Result<Option<u64>, LogError> {
        self.last_event_id().map_err(LogError::new)
    }
}

/// The counter under `key` in the `store` table; 0 until first set.
fn counter(
    store: &impl ReadableTable<&'static [u8], u64>,
    key: &[u8],
    path: &Path,
) -> Result<u64, StateError> {
    Ok(store.get(key).at(path)?.map_or(0, |value| value.value()))
}

/// Parses the stored bytes of `table`/`key` as JSON.
fn decode<T: serde::de::DeserializeOwned>(
    path: &Path,
    table: &'static str,
    key: &str,
    json: &[u8],
) -> Result<T, StateError> {
    serde_json::from_slice(json).map_err(|source| StateError::InvalidJson {
        path: path.to_path_buf(),
        table,
        key: key.to_owned(),
        source,
    })
}

/// Turns redb's errors into [`StateError`]s that name the file.
trait At<T> {
    /// This result, with a redb error named for the database in `path`.
    fn at(self, path: &Path) -> Result<T, StateError>;
}

impl<T, E: Into<redb::Error>> At<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, StateError> {
        self.map_err(|err| open::classify(path, err.into()))
    }
}
