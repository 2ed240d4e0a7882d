//! The store: volumes of extents placed on tiers, with the extent map kept in redb.
//!
//! The in-memory [`State`] mirrors the map; every change is committed to redb first (one
//! durable transaction) and applied to the mirror after, so the mirror never runs ahead of
//! what survives a crash. Data reaches a tier before the map points at it (see
//! `docs/storage-format.md`, "Write protocols").

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use serde::Serialize;

use crate::classify::Rules;
use crate::config::{StoreConfig, TierMedium, TierSpec};
use crate::counters::Counters;
use crate::error::StorageError;
use crate::heat::HeatMap;
use crate::map::{FORMAT, Map, Op};
use crate::memcache::MemCache;
use crate::options::StoreOptions;
use crate::tier::TierData;

/// A volume as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeInfo {
    /// Its name, which is also its NBD export name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Extents that hold data (the rest read as zeros).
    pub allocated_extents: u64,
}

/// One tier's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    /// The tier's name.
    pub name: String,
    /// Its level (0 fastest).
    pub level: u32,
    /// Whether it survives restarts.
    pub durable: bool,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes in use by extents.
    pub used: u64,
    /// Extents it holds (a memory tier of a durable store: extents cached).
    pub extents: u64,
    /// Extent reads it served (a memory tier of a durable store: cache hits), saved now
    /// and then while a server runs.
    pub reads: u64,
    /// `reads` over the extent reads of all tiers (0 before any read).
    pub hit_ratio: f64,
    /// Extents the placement engine moved into it.
    pub moves_in: u64,
}

/// A run of a volume with the same allocation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Its length in bytes.
    pub len: u64,
    /// Whether it holds data (false: a hole that reads as zeros).
    pub allocated: bool,
}

pub(crate) struct Volume {
    pub id: u64,
    pub size: u64,
}

pub(crate) struct TierState {
    pub id: u8,
    pub spec: TierSpec,
    pub data: TierData,
    pub high_water: u64,
    pub free: BTreeSet<u64>,
    /// Capacity in slots.
    pub slots: u64,
}

pub(crate) struct State {
    pub volumes: BTreeMap<String, Volume>,
    pub extents: HashMap<(u64, u64), (u8, u64)>,
    /// Fastest first.
    pub tiers: Vec<TierState>,
    pub next_volume: u64,
}

impl State {
    /// The index of tier `id` in `tiers`.
    pub fn index(&self, id: u8) -> usize {
        self.tiers.iter().position(|t| t.id == id).unwrap_or(0)
    }

    pub fn tier(&self, id: u8) -> &TierState {
        // Every mapped tier id was checked against the tiers at open.
        let i = self.tiers.iter().position(|t| t.id == id).unwrap_or(0);
        &self.tiers[i]
    }
}

/// A tiered extent store: a directory (or RAM) holding volumes.
pub struct Store {
    pub(crate) state: RwLock<State>,
    pub(crate) map: Map,
    pub(crate) granularity: u64,
    pub(crate) durable: bool,
    pub(crate) default_level: u32,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) heat: Mutex<HeatMap>,
    pub(crate) epoch: Instant,
    pub(crate) clock_offset: AtomicU64,
    pub(crate) cache: Option<Mutex<MemCache>>,
    pub(crate) counters: Counters,
    pub(crate) rules: RwLock<Rules>,
    /// Per volume id: where its recent runs ended, latest first (to tell sequential from
    /// random).
    pub(crate) streams: Mutex<HashMap<u64, [u64; STREAMS]>>,
}

/// How many interleaved sequential runs per volume are told apart.
const STREAMS: usize = 4;

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks that `name` can be a volume and an NBD export name.
pub fn check_volume_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StorageError::BadName(name.into()))
    }
}

fn tier_path(dir: &Path, spec: &TierSpec) -> PathBuf {
    match &spec.medium {
        TierMedium::Directory(Some(loc)) => loc.join(format!("hypernix-tier-{}.data", spec.name)),
        _ => dir.join(format!("tier-{}.data", spec.name)),
    }
}

impl Store {
    /// Opens the store in `dir` (creating it), with the tiers of `config` and default
    /// [`StoreOptions`] (a memory tier becomes a W-TinyLFU read cache).
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Store, StorageError> {
        Store::open_with(dir, config, &StoreOptions::default())
    }

    /// Opens the store in `dir` (creating it), with the tiers of `config` and `options`.
    pub fn open_with(
        dir: &Path,
        config: &StoreConfig,
        options: &StoreOptions,
    ) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::TierIo {
            tier: "(store)".into(),
            path: dir.into(),
            source,
        })?;
        let map = Map::open(&dir.join("map.redb"))?;
        Store::build(map, config, Some(dir), Some(options))
    }

    /// An ephemeral store in RAM: every tier is a memory tier; nothing survives a restart.
    pub fn ephemeral(config: &StoreConfig) -> Result<Store, StorageError> {
        Store::build(Map::memory()?, config, None, None)
    }

    /// Builds the store; `options` is `None` for an ephemeral store (no cache).
    fn build(
        map: Map,
        config: &StoreConfig,
        dir: Option<&Path>,
        options: Option<&StoreOptions>,
    ) -> Result<Store, StorageError> {
        let g = config.granularity;
        let loaded = map.load()?;
        let incompatible = |reason: String| StorageError::Incompatible {
            path: map.path().into(),
            reason,
        };
        let mut ops = Vec::new();
        match loaded.meta.get("format") {
            None => ops.extend([
                Op::Meta("format", FORMAT),
                Op::Meta("granularity", g),
                Op::Meta("next_volume", 1),
            ]),
            Some(&FORMAT) => {}
            Some(other) => {
                return Err(incompatible(format!(
                    "map format {other}, this build reads {FORMAT}; use a matching hypernix"
                )));
            }
        }
        if let Some(&have) = loaded.meta.get("granularity")
            && have != g
        {
            return Err(incompatible(format!(
                "extent granularity is {have} bytes but the configuration says {g}; \
                 set storage.fabric.heatMap.granularity back to {have}"
            )));
        }
        let mut next_id = loaded
            .tiers
            .values()
            .map(|t| t.0)
            .max()
            .map_or(0, |m| m + 1);
        let mut tiers = Vec::new();
        for spec in &config.tiers {
            let (id, high_water) = match loaded.tiers.get(&spec.name) {
                Some(&t) => t,
                None => {
                    let id = next_id;
                    next_id = next_id.checked_add(1).ok_or_else(|| {
                        StorageError::Config("more than 255 tiers over the store's life".into())
                    })?;
                    ops.push(Op::PutTier(spec.name.clone(), id, 0));
                    (id, 0)
                }
            };
            let data = match (dir, &spec.medium) {
                (Some(dir), TierMedium::Directory(_)) => {
                    TierData::file(&spec.name, g, &tier_path(dir, spec))?
                }
                _ => TierData::memory(&spec.name, g),
            };
            let free = loaded
                .free
                .range((id, 0)..=(id, u64::MAX))
                .map(|&(_, s)| s)
                .collect();
            tiers.push(TierState {
                id,
                spec: spec.clone(),
                data,
                high_water,
                free,
                slots: spec.capacity / g,
            });
        }
        let mut extents = HashMap::new();
        for (&key, &(tier, slot)) in &loaded.extents {
            let Some(t) = tiers.iter().find(|t| t.id == tier) else {
                let name = loaded.tiers.iter().find(|(_, v)| v.0 == tier);
                let name = name.map_or("?", |(n, _)| n.as_str());
                return Err(StorageError::NoTier(format!(
                    "{name} (holds extents; add it back to storage.tiers)"
                )));
            };
            if dir.is_some() && !t.data.durable() {
                return Err(incompatible(format!(
                    "tier {:?} is a memory tier but holds extents; it must be a directory tier",
                    t.spec.name
                )));
            }
            extents.insert(key, (tier, slot));
        }
        map.commit(&ops)?;
        let volumes = loaded
            .volumes
            .into_iter()
            .map(|(name, (id, size))| (name, Volume { id, size }))
            .collect();
        let next_volume = loaded.meta.get("next_volume").copied().unwrap_or(1);
        if let Some(o) = options
            && o.cache.capacity.is_some()
            && tiers.iter().all(|t| t.data.durable())
        {
            return Err(StorageError::Config(
                "storage.fabric.caching.layers has a memory layer but storage.tiers has no \
                 memory tier for it; add a tier with a memory provider"
                    .into(),
            ));
        }
        let cache = options.and_then(|o| {
            let tier = tiers.iter().position(|t| !t.data.durable())?;
            let capacity = o.cache.capacity.unwrap_or(tiers[tier].spec.capacity) / g;
            (capacity > 0).then(|| Mutex::new(MemCache::new(&o.cache, tier, capacity)))
        });
        let half_life = config.half_life.as_secs_f64().max(1.0);
        let mut heat = HeatMap::with_windows(
            half_life,
            &options.map_or_else(|| StoreOptions::default().windows, |o| o.windows.clone()),
        );
        let unix = unix_now();
        for &(key, (reads, writes, last)) in &loaded.heat {
            // Decayed over the time the store was closed; idle time restarts at open.
            let f = (-(unix.saturating_sub(last) as f64) / half_life).exp2() as f32;
            let counter = crate::heat::Counter {
                reads: reads * f,
                writes: writes * f,
                last: 0,
            };
            heat.restore(key, counter);
        }
        let counters = Counters::new(
            tiers.iter().map(|t| t.spec.name.clone()).collect(),
            &loaded.counters,
        );
        Ok(Store {
            state: RwLock::new(State {
                volumes,
                extents,
                tiers,
                next_volume,
            }),
            map,
            granularity: g,
            durable: dir.is_some(),
            default_level: config.default_level,
            dir: dir.map(Path::to_path_buf),
            heat: Mutex::new(heat),
            epoch: Instant::now(),
            clock_offset: AtomicU64::new(0),
            cache,
            counters,
            rules: RwLock::new(options.map(|o| o.rules.clone()).unwrap_or_default()),
            streams: Mutex::new(HashMap::new()),
        })
    }

    /// The placement rules (classifications, exclusions, pins).
    pub(crate) fn rules(&self) -> RwLockReadGuard<'_, Rules> {
        self.rules.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins volume `volume` to tier level `level` (a unit disk's `tier`): from now on its
    /// new extents are allocated on that level only and placement never moves its extents
    /// off it (nor onto it from elsewhere: extents already placed elsewhere stay put
    /// unless the level allows them). Fails if no tier of that level can hold volume data.
    pub fn pin_volume(&self, volume: &str, level: u32) -> Result<(), StorageError> {
        let st = self.shared();
        if !st
            .tiers
            .iter()
            .any(|t| t.spec.level == level && (!self.durable || t.data.durable()))
        {
            return Err(StorageError::NoTier(format!("level {level}")));
        }
        drop(st);
        self.rules
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .pin(volume, level);
        Ok(())
    }

    /// Exclusive access: for changes to the map (allocations, frees, moves).
    pub(crate) fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Shared access: for reads and in-place writes, which may run in parallel; a move
    /// waits for them to finish, so none can land in a slot being copied.
    pub(crate) fn shared(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds since the store opened, plus any [`Store::advance_clock`].
    pub fn now(&self) -> u32 {
        let secs = self.epoch.elapsed().as_secs() + self.clock_offset.load(Ordering::Relaxed);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// Moves the store's heat clock forward by `secs` (simulated time in tests and replays).
    pub fn advance_clock(&self, secs: u64) {
        self.clock_offset.fetch_add(secs, Ordering::Relaxed);
    }

    /// Counts an access to every extent of `[offset, offset+len)` of volume `id`, noting
    /// whether it continues the volume's previous access (or spans a whole extent), and for
    /// writes whether `data` looks compressible.
    pub(crate) fn record(&self, id: u64, offset: u64, len: u64, write: bool, data: Option<&[u8]>) {
        if len == 0 {
            return;
        }
        let now = self.now();
        let g = self.granularity;
        let compressible = data.map(crate::heat::looks_compressible);
        let mut heat = self.heat.lock().unwrap_or_else(|e| e.into_inner());
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let ends = streams.entry(id).or_default();
        let hit = ends.iter().position(|&e| e == offset && e != 0);
        let sequential = len >= g || hit.is_some();
        // Follow up to STREAMS interleaved runs: the continued one, else the oldest goes.
        let slot = hit.unwrap_or(STREAMS - 1);
        ends[..=slot].rotate_right(1);
        ends[0] = offset + len;
        for idx in offset / g..=(offset + len - 1) / g {
            heat.record((id, idx), now, write);
            heat.note_pattern((id, idx), sequential);
            if let Some(c) = compressible {
                heat.note_content((id, idx), c);
            }
        }
    }

    /// The extent size in bytes.
    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// The store directory (`None` for an ephemeral store).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Creates an empty (all-zero, unallocated) volume of `size` bytes.
    pub fn create_volume(&self, name: &str, size: u64) -> Result<VolumeInfo, StorageError> {
        check_volume_name(name)?;
        let mut st = self.lock();
        if st.volumes.contains_key(name) {
            return Err(StorageError::VolumeExists(name.into()));
        }
        let id = st.next_volume;
        self.map.commit(&[
            Op::PutVolume(name.into(), id, size),
            Op::Meta("next_volume", id + 1),
        ])?;
        st.next_volume = id + 1;
        st.volumes.insert(name.into(), Volume { id, size });
        Ok(VolumeInfo {
            name: name.into(),
            size,
            allocated_extents: 0,
        })
    }

    /// Lists the volumes by name.
    pub fn volumes(&self) -> Vec<VolumeInfo> {
        let st = self.shared();
        let mut count: HashMap<u64, u64> = HashMap::new();
        for &(vid, _) in st.extents.keys() {
            *count.entry(vid).or_default() += 1;
        }
        st.volumes
            .iter()
            .map(|(name, v)| VolumeInfo {
                name: name.clone(),
                size: v.size,
                allocated_extents: count.get(&v.id).copied().unwrap_or(0),
            })
            .collect()
    }

    /// The size of volume `name`.
    pub fn volume_size(&self, name: &str) -> Result<u64, StorageError> {
        let st = self.shared();
        st.volumes
            .get(name)
            .map(|v| v.size)
            .ok_or_else(|| StorageError::NoVolume(name.into()))
    }

    /// Removes volume `name` and frees its extents.
    pub fn remove_volume(&self, name: &str) -> Result<(), StorageError> {
        let mut st = self.lock();
        let id = st
            .volumes
            .get(name)
            .map(|v| v.id)
            .ok_or_else(|| StorageError::NoVolume(name.into()))?;
        let keys: Vec<_> = st.extents.keys().filter(|k| k.0 == id).copied().collect();
        let mut ops = vec![Op::DelVolume(name.into())];
        self.free_extents(&mut st, &keys, &mut ops)?;
        st.volumes.remove(name);
        Ok(())
    }

    /// Changes the size of volume `name`; shrinking frees the extents past the new end and
    /// zeroes the cut-off tail of the last one.
    pub fn resize_volume(&self, name: &str, size: u64) -> Result<(), StorageError> {
        let mut st = self.lock();
        let (id, old) = st
            .volumes
            .get(name)
            .map(|v| (v.id, v.size))
            .ok_or_else(|| StorageError::NoVolume(name.into()))?;
        let g = self.granularity;
        if size < old && !size.is_multiple_of(g) {
            let idx = size / g;
            if let Some(&(t, slot)) = st.extents.get(&(id, idx)) {
                let tail = vec![0u8; (g - size % g) as usize];
                st.tier(t).data.write(slot, size % g, &tail)?;
                self.cache_written((id, idx), size % g, &tail);
                st.tier(t).data.sync()?;
            }
        }
        let first_gone = size.div_ceil(g);
        let keys: Vec<_> = st
            .extents
            .keys()
            .filter(|k| k.0 == id && k.1 >= first_gone)
            .copied()
            .collect();
        let mut ops = vec![Op::PutVolume(name.into(), id, size)];
        self.free_extents(&mut st, &keys, &mut ops)?;
        if let Some(v) = st.volumes.get_mut(name) {
            v.size = size;
        }
        Ok(())
    }

    /// Commits `ops` plus the freeing of `keys`, then updates the mirror and punches slots.
    fn free_extents(
        &self,
        st: &mut State,
        keys: &[(u64, u64)],
        ops: &mut Vec<Op>,
    ) -> Result<(), StorageError> {
        let mut freed = Vec::new();
        for key in keys {
            if let Some(&(t, s)) = st.extents.get(key) {
                ops.push(Op::DelExtent(*key));
                ops.push(Op::AddFree(t, s));
                freed.push((*key, t, s));
            }
        }
        self.map.commit(ops)?;
        for (key, t, s) in freed {
            st.extents.remove(&key);
            self.cache_drop(key);
            self.heat
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .forget(key);
            let i = st.tiers.iter().position(|x| x.id == t).unwrap_or(0);
            st.tiers[i].free.insert(s);
            st.tiers[i].data.discard(s)?;
        }
        Ok(())
    }

    /// Per-tier usage, reads and moves, fastest first.
    pub fn tier_stats(&self) -> Vec<TierStats> {
        let st = self.shared();
        let mut count: HashMap<u8, u64> = HashMap::new();
        for &(t, _) in st.extents.values() {
            *count.entry(t).or_default() += 1;
        }
        let cache = self.cache.as_ref().map(|c| {
            let c = c.lock().unwrap_or_else(|e| e.into_inner());
            (c.tier, c.len(), c.capacity)
        });
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let reads: Vec<u64> = self.counters.served.iter().map(load).collect();
        let total: u64 = reads.iter().sum();
        st.tiers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (extents, slots) = match cache {
                    Some((tier, len, capacity)) if tier == i => (len, capacity),
                    _ => (count.get(&t.id).copied().unwrap_or(0), t.slots),
                };
                TierStats {
                    name: t.spec.name.clone(),
                    level: t.spec.level,
                    durable: t.data.durable(),
                    capacity: slots * self.granularity,
                    used: extents * self.granularity,
                    extents,
                    reads: reads[i],
                    hit_ratio: if total == 0 {
                        0.0
                    } else {
                        reads[i] as f64 / total as f64
                    },
                    moves_in: load(&self.counters.moves_in[i]),
                }
            })
            .collect()
    }

    /// Saves the read, move and cache counters and every extent's decayed heat to the map
    /// (a flush does so every 30 s), so they survive a restart.
    pub fn save_counters(&self) -> Result<(), StorageError> {
        let mut ops = self.counters.ops();
        ops.push(Op::ClearHeat);
        let now = self.now();
        let unix = unix_now();
        let heat = self.heat.lock().unwrap_or_else(|e| e.into_inner());
        for (key, c) in heat.counters() {
            let last = unix.saturating_sub(u64::from(now.saturating_sub(c.last)));
            ops.push(Op::Heat(key, (c.reads, c.writes, last)));
        }
        drop(heat);
        self.map.commit(&ops)
    }
}
