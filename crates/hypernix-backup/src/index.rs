//! The chunk index: chunk id → pack and blob position, in redb (on disk; a cache of the
//! pack headers that `repair` rebuilds), plus similarity super-features (hints: a stale
//! feature is ignored, a missing one only loses a delta).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::pack::Entry;
use crate::similarity::{Sketch, super_features};

/// `chunks`: id(32) → pack(32) || entry without id (53, or 49 when `start` is 0).
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
/// `similar`: super-feature → the first 8 bytes (little-endian) of the id of a non-delta
/// chunk that has it. (Version 1's `sketches` and `features` tables are no longer used.)
const FEATURES: TableDefinition<u64, u64> = TableDefinition::new("similar");

/// Where a chunk lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The pack id.
    pub pack: [u8; 32],
    /// The blob's header entry.
    pub entry: Entry,
}

/// The open chunk index of one repository.
#[derive(Debug)]
pub struct Index {
    db: Mutex<Database>,
    path: PathBuf,
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Index {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

impl Index {
    /// Opens (creating if needed) the index at `path`.
    pub fn open(path: &Path) -> Result<Index> {
        let db = Database::create(path).map_err(|e| err(path, e))?;
        let txn = db.begin_write().map_err(|e| err(path, e))?;
        txn.open_table(CHUNKS).map_err(|e| err(path, e))?;
        txn.open_table(FEATURES).map_err(|e| err(path, e))?;
        txn.commit().map_err(|e| err(path, e))?;
        Ok(Index {
            db: Mutex::new(db),
            path: path.to_path_buf(),
        })
    }

    fn db(&self) -> MutexGuard<'_, Database> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives the file's free pages back (redb keeps the pages of earlier commits for
    /// reuse, so the file grows to about twice its live data without this); run at the
    /// end of a backup.
    pub fn compact(&self) -> Result<()> {
        self.db()
            .compact()
            .map(|_| ())
            .map_err(|e| err(&self.path, e))
    }

    /// Where chunk `id` lies, if indexed.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Location>> {
        let p = &self.path;
        let txn = self.db().begin_read().map_err(|e| err(p, e))?;
        let table = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
        let Some(value) = table.get(id.as_slice()).map_err(|e| err(p, e))? else {
            return Ok(None);
        };
        decode(*id, value.value())
            .map(Some)
            .ok_or_else(|| err(p, "malformed entry"))
    }

    /// The id of an indexed chunk that had super-feature `feature` when stored (the first
    /// indexed id with the recorded 8-byte prefix; the caller checks similarity itself).
    pub fn similar(&self, feature: u64) -> Result<Option<[u8; 32]>> {
        let p = &self.path;
        let txn = self.db().begin_read().map_err(|e| err(p, e))?;
        let features = txn.open_table(FEATURES).map_err(|e| err(p, e))?;
        let Some(prefix) = features.get(feature).map_err(|e| err(p, e))? else {
            return Ok(None);
        };
        let prefix = prefix.value().to_le_bytes();
        let chunks = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
        let mut range = chunks.range(prefix.as_slice()..).map_err(|e| err(p, e))?;
        let Some(first) = range.next() else {
            return Ok(None);
        };
        let (key, _) = first.map_err(|e| err(p, e))?;
        Ok(<[u8; 32]>::try_from(key.value())
            .ok()
            .filter(|id| id[..8] == prefix))
    }

    /// Adds the entries of one durable pack, and the super-features of its non-delta chunks'
    /// sketches, in one transaction.
    pub fn insert_pack(
        &self,
        pack: &[u8; 32],
        entries: &[Entry],
        sketches: &[([u8; 32], Sketch)],
    ) -> Result<()> {
        let p = &self.path;
        let txn = self.db().begin_write().map_err(|e| err(p, e))?;
        {
            let mut table = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
            let mut value = Vec::with_capacity(85);
            for entry in entries {
                value.clear();
                value.extend_from_slice(pack);
                // Without `start` when it is 0: the value version 1 wrote.
                entry.encode(false, entry.start == 0, &mut value);
                table
                    .insert(entry.id.as_slice(), value.as_slice())
                    .map_err(|e| err(p, e))?;
            }
            let mut feature_table = txn.open_table(FEATURES).map_err(|e| err(p, e))?;
            for (id, sketch) in sketches {
                let prefix = u64::from_le_bytes(id[..8].try_into().unwrap_or_default());
                for feature in super_features(sketch) {
                    feature_table
                        .insert(feature, prefix)
                        .map_err(|e| err(p, e))?;
                }
            }
        }
        txn.commit().map_err(|e| err(p, e))
    }

    /// Every indexed chunk.
    pub fn all(&self) -> Result<Vec<Location>> {
        let p = &self.path;
        let txn = self.db().begin_read().map_err(|e| err(p, e))?;
        let table = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
        let mut out = Vec::new();
        for item in table.iter().map_err(|e| err(p, e))? {
            let (k, v) = item.map_err(|e| err(p, e))?;
            let id: [u8; 32] = k.value().try_into().map_err(|_| err(p, "malformed key"))?;
            out.push(decode(id, v.value()).ok_or_else(|| err(p, "malformed entry"))?);
        }
        Ok(out)
    }

    /// Removes the entries of chunks stored in `packs`.
    pub fn remove_packs(&self, packs: &[[u8; 32]]) -> Result<()> {
        let doomed: Vec<[u8; 32]> = self
            .all()?
            .into_iter()
            .filter(|l| packs.contains(&l.pack))
            .map(|l| l.entry.id)
            .collect();
        let p = &self.path;
        let txn = self.db().begin_write().map_err(|e| err(p, e))?;
        {
            let mut table = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
            for id in &doomed {
                table.remove(id.as_slice()).map_err(|e| err(p, e))?;
            }
        }
        txn.commit().map_err(|e| err(p, e))
    }
}

fn decode(id: [u8; 32], value: &[u8]) -> Option<Location> {
    let pack: [u8; 32] = value.get(..32)?.try_into().ok()?;
    Some(Location {
        pack,
        entry: Entry::decode(id, &value[32..])?,
    })
}
