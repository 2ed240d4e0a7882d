//! The extent map in redb (layout in `docs/storage-format.md`): loading it whole, and
//! committing a batch of changes in one durable transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{MapAt, StorageError};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VOLUMES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("volumes");
const EXTENTS: TableDefinition<(u64, u64), (u8, u64)> = TableDefinition::new("extents");
const TIERS: TableDefinition<&str, (u8, u64)> = TableDefinition::new("tiers");
const FREE: TableDefinition<(u8, u64), ()> = TableDefinition::new("free");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const HEAT: TableDefinition<(u64, u64), (f32, f32, u64)> = TableDefinition::new("heat");

/// A saved heat row: (volume id, extent index) → (reads, writes, unix second of last access).
pub(crate) type HeatRow = ((u64, u64), (f32, f32, u64));

/// The map format this build reads and writes.
pub const FORMAT: u64 = 1;

/// One change to the map.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Set a `meta` key.
    Meta(&'static str, u64),
    /// Insert or replace a volume: name, id, size.
    PutVolume(String, u64, u64),
    /// Delete a volume.
    DelVolume(String),
    /// Map an extent (volume id, index) to (tier id, slot).
    PutExtent((u64, u64), (u8, u64)),
    /// Unmap an extent.
    DelExtent((u64, u64)),
    /// Insert or replace a tier: name, id, high water.
    PutTier(String, u8, u64),
    /// Add a slot to a tier's free list.
    AddFree(u8, u64),
    /// Remove a slot from a tier's free list.
    TakeFree(u8, u64),
    /// Set a statistics counter.
    Counter(String, u64),
    /// Empty the saved heat.
    ClearHeat,
    /// Save an extent's heat: reads, writes, unix second of the last access.
    Heat((u64, u64), (f32, f32, u64)),
}

/// The whole map, read at open.
#[derive(Debug, Default, Clone)]
pub(crate) struct Loaded {
    /// `meta` table.
    pub meta: BTreeMap<String, u64>,
    /// name → (id, size).
    pub volumes: BTreeMap<String, (u64, u64)>,
    /// (volume id, index) → (tier id, slot).
    pub extents: BTreeMap<(u64, u64), (u8, u64)>,
    /// name → (tier id, high water).
    pub tiers: BTreeMap<String, (u8, u64)>,
    /// Free slots.
    pub free: BTreeSet<(u8, u64)>,
    /// Statistics counters.
    pub counters: BTreeMap<String, u64>,
    /// Saved heat.
    pub heat: Vec<HeatRow>,
}

/// The open map database.
pub(crate) struct Map {
    db: Database,
    path: PathBuf,
}

impl Map {
    /// Opens (or creates) the map at `path`.
    pub fn open(path: &Path) -> Result<Map, StorageError> {
        let db = match Database::create(path) {
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StorageError::InUse(path.into()));
            }
            other => other.at(path)?,
        };
        Ok(Map {
            db,
            path: path.into(),
        })
    }

    /// An in-memory map for ephemeral stores.
    pub fn memory() -> Result<Map, StorageError> {
        let path = PathBuf::from("memory");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .at(&path)?;
        Ok(Map { db, path })
    }

    /// The map file's path (`memory` for ephemeral stores).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads every table.
    pub fn load(&self) -> Result<Loaded, StorageError> {
        let p = &self.path;
        // Make sure the tables exist, so reading a new map works.
        self.commit(&[])?;
        let txn = self.db.begin_read().at(p)?;
        let mut out = Loaded::default();
        for row in txn.open_table(META).at(p)?.iter().at(p)? {
            let (k, v) = row.at(p)?;
            out.meta.insert(k.value().to_owned(), v.value());
        }
        for row in txn.open_table(VOLUMES).at(p)?.iter().at(p)? {
            let (k, v) = row.at(p)?;
            out.volumes.insert(k.value().to_owned(), v.value());
        }
        for row in txn.open_table(EXTENTS).at(p)?.iter().at(p)? {
            let (k, v) = row.at(p)?;
            out.extents.insert(k.value(), v.value());
        }
        for row in txn.open_table(TIERS).at(p)?.iter().at(p)? {
            let (k, v) = row.at(p)?;
            out.tiers.insert(k.value().to_owned(), v.value());
        }
        for row in txn.open_table(FREE).at(p)?.iter().at(p)? {
            let (k, _) = row.at(p)?;
            out.free.insert(k.value());
        }
        for row in txn.open_table(COUNTERS).at(p)?.iter().at(p)? {
            let (k, v) = row.at(p)?;
            out.counters.insert(k.value().to_owned(), v.value());
        }
        for row in txn.open_table(HEAT).at(p)?.iter().at(p)? {
            let (k, v) = row.at(p)?;
            out.heat.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Applies `ops` in one durable transaction: all or nothing.
    pub fn commit(&self, ops: &[Op]) -> Result<(), StorageError> {
        let p = &self.path;
        let txn = self.db.begin_write().at(p)?;
        {
            let mut meta = txn.open_table(META).at(p)?;
            let mut volumes = txn.open_table(VOLUMES).at(p)?;
            let mut extents = txn.open_table(EXTENTS).at(p)?;
            let mut tiers = txn.open_table(TIERS).at(p)?;
            let mut free = txn.open_table(FREE).at(p)?;
            let mut counters = txn.open_table(COUNTERS).at(p)?;
            let mut heat = txn.open_table(HEAT).at(p)?;
            for op in ops {
                match op {
                    Op::Meta(k, v) => drop(meta.insert(*k, *v).at(p)?),
                    Op::PutVolume(name, id, size) => {
                        drop(volumes.insert(name.as_str(), (*id, *size)).at(p)?)
                    }
                    Op::DelVolume(name) => drop(volumes.remove(name.as_str()).at(p)?),
                    Op::PutExtent(k, v) => drop(extents.insert(*k, *v).at(p)?),
                    Op::DelExtent(k) => drop(extents.remove(*k).at(p)?),
                    Op::PutTier(name, id, hw) => {
                        drop(tiers.insert(name.as_str(), (*id, *hw)).at(p)?)
                    }
                    Op::AddFree(t, s) => drop(free.insert((*t, *s), ()).at(p)?),
                    Op::TakeFree(t, s) => drop(free.remove((*t, *s)).at(p)?),
                    Op::Counter(k, v) => drop(counters.insert(k.as_str(), *v).at(p)?),
                    Op::ClearHeat => heat.retain(|_, _| false).at(p)?,
                    Op::Heat(k, v) => drop(heat.insert(*k, *v).at(p)?),
                }
            }
        }
        txn.commit().at(p)
    }
}
