//! The chunk index: chunk id → pack and blob position, in redb (on disk; a cache of the
//! pack headers that `repair` rebuilds).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::pack::Entry;

/// `chunks`: id(32) → pack(32) || entry without id (49).
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");

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
    db: Database,
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
        let index = Index {
            db,
            path: path.to_path_buf(),
        };
        let txn = index.db.begin_write().map_err(|e| err(path, e))?;
        txn.open_table(CHUNKS).map_err(|e| err(path, e))?;
        txn.commit().map_err(|e| err(path, e))?;
        Ok(index)
    }

    /// Where chunk `id` lies, if indexed.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Location>> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(|e| err(p, e))?;
        let table = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
        let Some(value) = table.get(id.as_slice()).map_err(|e| err(p, e))? else {
            return Ok(None);
        };
        decode(*id, value.value())
            .map(Some)
            .ok_or_else(|| err(p, "malformed entry"))
    }

    /// Adds the entries of one durable pack, in one transaction.
    pub fn insert_pack(&self, pack: &[u8; 32], entries: &[Entry]) -> Result<()> {
        let p = &self.path;
        let txn = self.db.begin_write().map_err(|e| err(p, e))?;
        {
            let mut table = txn.open_table(CHUNKS).map_err(|e| err(p, e))?;
            let mut value = Vec::with_capacity(81);
            for entry in entries {
                value.clear();
                value.extend_from_slice(pack);
                entry.encode(false, &mut value);
                table
                    .insert(entry.id.as_slice(), value.as_slice())
                    .map_err(|e| err(p, e))?;
            }
        }
        txn.commit().map_err(|e| err(p, e))
    }

    /// Every indexed chunk.
    pub fn all(&self) -> Result<Vec<Location>> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(|e| err(p, e))?;
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
        let txn = self.db.begin_write().map_err(|e| err(p, e))?;
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
