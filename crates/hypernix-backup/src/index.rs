//! The chunk index: chunk id → pack and blob position, in redb (on disk; a cache of the
//! pack headers that `repair` rebuilds), plus similarity sketches (hints: a stale feature
//! is ignored, a missing one only loses a delta).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::pack::Entry;
use crate::similarity::{SKETCH, Sketch, super_features};

/// `chunks`: id(32) → pack(32) || entry without id (49).
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
/// `sketches`: id(32) → u64le × 12, for stored non-delta chunks.
const SKETCHES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sketches");
/// `features`: super-feature → id(32) of a non-delta chunk that has it.
const FEATURES: TableDefinition<u64, &[u8]> = TableDefinition::new("features");

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
        txn.open_table(SKETCHES).map_err(|e| err(path, e))?;
        txn.open_table(FEATURES).map_err(|e| err(path, e))?;
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

    /// A stored non-delta chunk with super-feature `feature`, and its sketch.
    pub fn similar(&self, feature: u64) -> Result<Option<([u8; 32], Sketch)>> {
        let p = &self.path;
        let txn = self.db.begin_read().map_err(|e| err(p, e))?;
        let features = txn.open_table(FEATURES).map_err(|e| err(p, e))?;
        let Some(id) = features.get(feature).map_err(|e| err(p, e))? else {
            return Ok(None);
        };
        let Ok(id) = <[u8; 32]>::try_from(id.value()) else {
            return Ok(None);
        };
        let sketches = txn.open_table(SKETCHES).map_err(|e| err(p, e))?;
        let Some(raw) = sketches.get(id.as_slice()).map_err(|e| err(p, e))? else {
            return Ok(None);
        };
        let mut sketch = [0u64; SKETCH];
        for (v, b) in sketch.iter_mut().zip(raw.value().chunks_exact(8)) {
            *v = u64::from_le_bytes(b.try_into().unwrap_or_default());
        }
        Ok(Some((id, sketch)))
    }

    /// Adds the entries of one durable pack, and the sketches of its non-delta chunks, in
    /// one transaction.
    pub fn insert_pack(
        &self,
        pack: &[u8; 32],
        entries: &[Entry],
        sketches: &[([u8; 32], Sketch)],
    ) -> Result<()> {
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
            let mut sketch_table = txn.open_table(SKETCHES).map_err(|e| err(p, e))?;
            let mut feature_table = txn.open_table(FEATURES).map_err(|e| err(p, e))?;
            for (id, sketch) in sketches {
                let bytes: Vec<u8> = sketch.iter().flat_map(|v| v.to_le_bytes()).collect();
                sketch_table
                    .insert(id.as_slice(), bytes.as_slice())
                    .map_err(|e| err(p, e))?;
                for feature in super_features(sketch) {
                    feature_table
                        .insert(feature, id.as_slice())
                        .map_err(|e| err(p, e))?;
                }
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
            let mut sketches = txn.open_table(SKETCHES).map_err(|e| err(p, e))?;
            for id in &doomed {
                table.remove(id.as_slice()).map_err(|e| err(p, e))?;
                sketches.remove(id.as_slice()).map_err(|e| err(p, e))?;
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
