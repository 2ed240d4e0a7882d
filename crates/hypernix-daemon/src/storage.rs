//! The daemon's storage engine: the tiered store of `hypervisor.storage`, served over NBD
//! to the units' QEMUs, with the placement engine running beside it.
//!
//! 1. When the applied configuration has `storage.tiers` (at daemon start, or at the first
//!    apply that adds them), the daemon opens the store in `STATE/storage`: memory tiers
//!    in RAM, directory tiers at their provider's `location` (created if missing), or in
//!    the store directory when it has none. The opened configuration stays until the
//!    daemon restarts; a later change publishes `storage.warning` saying so.
//! 2. It serves every volume over NBD on the unix socket `STATE/run/nbd.sock` (export name
//!    = volume name).
//! 3. With tiers configured, every disk of a unit is the volume `UNIT.DISK`, created on the
//!    unit's first start, grown when its size grows, never shrunk; QEMU attaches it with
//!    `-blockdev driver=nbd`. A disk that is still a sparse file from before tiers were
//!    configured stays that file. Without tiers, disks are sparse files and a disk that
//!    asks for a `tier` fails its unit.
//! 4. Placement rounds (`storage.fabric.movement`, off when it or `heatMap` is disabled):
//!    every [`ROUND_INTERVAL`] with the continuous engine; with the scheduled one, every
//!    [`ROUND_INTERVAL`] inside its cron windows (promotions in `promotionWindow`, demotions
//!    in `demotionWindow`); only on request (`rebalanceStorage`) with the triggered one. Each
//!    extent moved publishes `storage.moved` (subject `volume/NAME`); after each move the
//!    round waits as long as `bandwidth.limit` asks.
//!
//! Removing a unit (or one of its disks) keeps its volumes, as Incus keeps custom volumes
//! and Proxmox keeps a detached disk as "unused": `deleteVolume` removes one for good.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypernix_config::Size;
use hypernix_config::schema::compute::StorageRequest;
use hypernix_config::schema::storage::{MovementEngine, Storage};
use hypernix_events::{EventBus, NewEvent};
use hypernix_storage::nbd::NbdServer;
use hypernix_storage::{ExtentPlacement, Store, StoreConfig, TierMedium, VolumeInfo};
use hypernix_vmm::{DiskFormat, DiskSource};
use serde::Serialize;
use serde_json::json;

use crate::layout::Layout;

/// How often the continuous placement engine runs a round.
pub const ROUND_INTERVAL: Duration = Duration::from_secs(10);

/// One tier as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierStatus {
    /// The tier's name.
    pub name: String,
    /// Its level (0 fastest).
    pub level: u32,
    /// Whether it survives restarts (memory tiers do not).
    pub durable: bool,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes held by extents.
    pub used: u64,
    /// Extents it holds.
    pub extents: u64,
    /// Extents moved into it since the daemon started.
    pub moved_in: u64,
    /// Extents moved out of it since the daemon started.
    pub moved_out: u64,
    /// Extent reads it served over the extent reads of all tiers (cache hits, for a
    /// memory tier); `None` before any read.
    pub hit_ratio: Option<f64>,
}

/// One extent moved by the placement engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Moved {
    /// The volume.
    pub volume: String,
    /// The extent index.
    pub extent: u64,
    /// The tier it left.
    pub from: String,
    /// The tier it went to.
    pub to: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The store as the daemon runs it.
struct Engine {
    store: Arc<Store>,
    /// The configuration it was opened with.
    config: Storage,
    /// Seconds to wait after each move (from `bandwidth.limit`).
    pause: Option<Duration>,
    /// Moves in and out, by tier name.
    moves: Mutex<BTreeMap<String, (u64, u64)>>,
    /// One placement round at a time.
    round: tokio::sync::Mutex<()>,
    bus: Arc<dyn EventBus>,
}

enum State {
    /// No tiers configured.
    Off,
    /// Tiers configured, but the store could not be opened.
    Failed { reason: String },
    /// The store is open and served.
    Ready(Arc<Engine>),
}

/// The daemon's storage: off, failed (with the reason), or a running engine.
pub struct StorageEngine {
    state: Mutex<State>,
}

impl Default for StorageEngine {
    fn default() -> Self {
        StorageEngine {
            state: Mutex::new(State::Off),
        }
    }
}

/// A storage request the daemon could not carry out.
pub type StorageResult<T> = Result<T, String>;

impl StorageEngine {
    fn engine(&self) -> StorageResult<Arc<Engine>> {
        match &*self.state.lock().expect("storage lock") {
            State::Ready(e) => Ok(e.clone()),
            State::Off => Err(
                "no storage tiers are configured; add hypervisor.storage.tiers and apply".into(),
            ),
            State::Failed { reason, .. } => Err(format!("the storage engine is down: {reason}")),
        }
    }

    /// Opens the engine for `config` if it has tiers and none is open yet (step 1); one
    /// that failed is tried again, so fixing a tier's location and applying again works.
    pub async fn configure(&self, config: &Storage, layout: &Layout, bus: &Arc<dyn EventBus>) {
        let warning = {
            let mut state = self.state.lock().expect("storage lock");
            match &*state {
                State::Ready(e) if e.config == *config => return,
                State::Ready(_) => Some((
                    "storage.warning",
                    "hypervisor.storage changed; the running store keeps its configuration \
                     until the daemon restarts (`hypernix down --keep-units`, then `hypernix up`)"
                        .to_string(),
                )),
                State::Off if config.tiers.is_empty() => return,
                State::Off | State::Failed { .. } if config.tiers.is_empty() => {
                    *state = State::Off;
                    return;
                }
                State::Off | State::Failed { .. } => {
                    *state = match Engine::open(config, layout, bus.clone()) {
                        Ok(engine) => State::Ready(engine),
                        Err(reason) => State::Failed { reason },
                    };
                    match &*state {
                        State::Failed { reason, .. } => Some(("storage.failed", reason.clone())),
                        _ => None,
                    }
                }
            }
        };
        if let Some((kind, message)) = warning {
            tracing::warn!("storage: {message}");
            let event = NewEvent::new(kind, "storage").with_payload(json!({
                "message": message,
            }));
            if let Err(e) = bus.publish(event).await {
                tracing::error!("cannot publish an event: {e}");
            }
        }
    }

    /// The QEMU disk for `disk` of `unit`, with warnings (step 3).
    pub fn disk(
        &self,
        layout: &Layout,
        unit: &str,
        disk: &StorageRequest,
    ) -> StorageResult<(DiskSource, Option<String>)> {
        let file = layout.disk(unit, &disk.name);
        let engine = match &*self.state.lock().expect("storage lock") {
            State::Off => {
                if let Some(tier) = disk.tier {
                    return Err(format!(
                        "storage {}: tier {tier} asked for, but hypervisor.storage.tiers is \
                         empty; configure tiers or remove `tier`",
                        disk.name
                    ));
                }
                ensure_file(&file, disk.size.bytes())
                    .map_err(|e| format!("storage {}: {e}", disk.name))?;
                return Ok((file_source(file), None));
            }
            State::Failed { reason, .. } => {
                return Err(format!(
                    "storage {}: the storage engine is down: {reason}",
                    disk.name
                ));
            }
            State::Ready(e) => e.clone(),
        };
        if file.exists() {
            ensure_file(&file, disk.size.bytes())
                .map_err(|e| format!("storage {}: {e}", disk.name))?;
            let note = format!(
                "storage {}: kept as the sparse file {} made before storage tiers were \
                 configured; copy it into a volume to move it onto the tiers",
                disk.name,
                file.display()
            );
            return Ok((file_source(file), Some(note)));
        }
        let (pin, warning) = engine.tier_pin(unit, disk)?;
        let name = volume_name(unit, &disk.name);
        let size = disk.size.bytes();
        let store = &engine.store;
        let warning = match store.volume_size(&name) {
            Ok(have) if have < size => {
                store
                    .resize_volume(&name, size)
                    .map_err(|e| format!("storage {}: growing volume {name}: {e}", disk.name))?;
                warning
            }
            Ok(have) if have > size => Some(format!(
                "storage {}: size {} is smaller than volume {name} ({}); volumes never shrink, \
                 so the guest sees {}",
                disk.name,
                Size(size),
                Size(have),
                Size(have)
            )),
            Ok(_) => warning,
            Err(_) => {
                store
                    .create_volume(&name, size)
                    .map_err(|e| format!("storage {}: creating volume {name}: {e}", disk.name))?;
                warning
            }
        };
        if let Some(level) = pin {
            store.pin_volume(&name, level).map_err(|e| {
                format!(
                    "storage {} of unit {unit}: pinning to tier {level}: {e}",
                    disk.name
                )
            })?;
        }
        Ok((
            DiskSource::Nbd {
                socket: layout.nbd_socket(),
                export: name,
            },
            warning,
        ))
    }

    /// Every tier, fastest first, with the moves of this daemon's life.
    pub fn tiers(&self) -> StorageResult<Vec<TierStatus>> {
        let engine = self.engine()?;
        let moves = engine.moves.lock().expect("moves lock").clone();
        let stats = engine.store.tier_stats();
        let any_reads = stats.iter().any(|t| t.reads > 0);
        Ok(stats
            .into_iter()
            .map(|t| {
                let (moved_in, moved_out) = moves.get(&t.name).copied().unwrap_or_default();
                TierStatus {
                    name: t.name,
                    level: t.level,
                    durable: t.durable,
                    capacity: t.capacity,
                    used: t.used,
                    extents: t.extents,
                    moved_in,
                    moved_out,
                    hit_ratio: any_reads.then_some(t.hit_ratio),
                }
            })
            .collect())
    }

    /// Every volume by name.
    pub fn volumes(&self) -> StorageResult<Vec<VolumeInfo>> {
        Ok(self.engine()?.store.volumes())
    }

    /// Every allocated extent of a volume with its tier and heat.
    pub fn heat_map(&self, volume: &str) -> StorageResult<Vec<ExtentPlacement>> {
        self.engine()?
            .store
            .volume_extents(volume)
            .map_err(|e| e.to_string())
    }

    /// The extent size in bytes.
    pub fn granularity(&self) -> StorageResult<u64> {
        Ok(self.engine()?.store.granularity())
    }

    /// Removes a volume and frees its extents.
    pub fn remove_volume(&self, volume: &str) -> StorageResult<()> {
        self.engine()?
            .store
            .remove_volume(volume)
            .map_err(|e| e.to_string())
    }

    /// Runs one placement round now and returns the extents it moved.
    pub async fn rebalance(&self) -> StorageResult<Vec<Moved>> {
        let engine = self.engine()?;
        let fabric = &engine.config.fabric;
        if !fabric.movement.enable || !fabric.heat_map.enable {
            return Err(
                "storage.fabric.movement.enable or storage.fabric.heatMap.enable is \
                        false; enable both to move extents by heat"
                    .into(),
            );
        }
        engine.round().await
    }
}

/// The volume that holds disk `disk` of unit `unit`.
pub fn volume_name(unit: &str, disk: &str) -> String {
    format!("{unit}.{disk}")
}

impl Engine {
    fn open(
        config: &Storage,
        layout: &Layout,
        bus: Arc<dyn EventBus>,
    ) -> StorageResult<Arc<Engine>> {
        let store_config = StoreConfig::from_config(config).map_err(|e| e.to_string())?;
        if store_config
            .tiers
            .iter()
            .all(|t| t.medium == TierMedium::Memory)
        {
            return Err(
                "every tier in hypervisor.storage.tiers is a memory tier; unit disks \
                        need a durable one: add a tier with a directory-backed provider"
                    .into(),
            );
        }
        for t in &store_config.tiers {
            if let TierMedium::Directory(Some(dir)) = &t.medium {
                std::fs::create_dir_all(dir).map_err(|e| {
                    format!(
                        "tier {}: cannot create its location {}: {e}; point the provider's \
                         location at a writable directory",
                        t.name,
                        dir.display()
                    )
                })?;
            }
        }
        let pause = match &config.fabric.movement.bandwidth.limit {
            None => None,
            Some(limit) => {
                let bytes = limit
                    .trim_end_matches("/s")
                    .parse::<Size>()
                    .ok()
                    .filter(|s| s.bytes() > 0)
                    .ok_or_else(|| {
                        format!(
                            "storage.fabric.movement.bandwidth.limit {limit:?} is not a rate; \
                             write bytes per second like \"100Mi\""
                        )
                    })?;
                Some(Duration::from_secs_f64(
                    store_config.granularity as f64 / bytes.bytes() as f64,
                ))
            }
        };
        let store = Store::open(&layout.storage_dir(), &store_config)
            .map(Arc::new)
            .map_err(|e| e.to_string())?;
        let socket = layout.nbd_socket();
        let listener = bind(&socket)?;
        let server = NbdServer::new(store.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve_unix(listener).await {
                tracing::error!("the NBD server stopped: {e}");
            }
        });
        let engine = Arc::new(Engine {
            store,
            config: config.clone(),
            pause,
            moves: Mutex::new(BTreeMap::new()),
            round: tokio::sync::Mutex::new(()),
            bus,
        });
        let movement = &config.fabric.movement;
        let moving = movement.enable && config.fabric.heat_map.enable;
        if moving && movement.engine == MovementEngine::Continuous {
            let e = engine.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ROUND_INTERVAL).await;
                    if let Err(err) = e.round().await {
                        tracing::warn!("storage placement round: {err}");
                    }
                }
            });
        } else if moving && movement.engine == MovementEngine::Scheduled {
            // The store's cron windows decide, minute by minute, which directions may move.
            let plan = hypernix_storage::schedule::Movement::from_config(movement)
                .map_err(|e| e.to_string())?;
            let e = engine.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ROUND_INTERVAL).await;
                    let (promote, demote) = plan.allowed(chrono::Utc::now());
                    if !(promote || demote) {
                        continue;
                    }
                    if let Err(err) = e.round_directions(promote, demote).await {
                        tracing::warn!("storage placement round: {err}");
                    }
                }
            });
        }
        tracing::info!("storage: serving volumes over NBD on {}", socket.display());
        Ok(engine)
    }

    /// The level a disk's `tier` pins its volume to, or a warning when it cannot be pinned
    /// (a memory tier holds no volume data); fails if no such level.
    fn tier_pin(
        &self,
        unit: &str,
        disk: &StorageRequest,
    ) -> StorageResult<(Option<u32>, Option<String>)> {
        let Some(tier) = disk.tier else {
            return Ok((None, None));
        };
        let Some((name, t)) = self.config.tiers.iter().find(|(_, t)| t.level == tier) else {
            let mut levels: Vec<u32> = self.config.tiers.values().map(|t| t.level).collect();
            levels.sort_unstable();
            let levels: Vec<String> = levels.iter().map(u32::to_string).collect();
            return Err(format!(
                "storage {} of unit {unit}: tier {tier} is not a level of \
                 hypervisor.storage.tiers (levels: {}); use one of them",
                disk.name,
                levels.join(", ")
            ));
        };
        let default = self.config.default_tier;
        let memory = t
            .providers
            .first()
            .is_some_and(|p| p.kind == hypernix_config::schema::storage::ProviderKind::Memory);
        Ok(if memory {
            (
                None,
                Some(format!(
                    "storage {}: tier {tier} ({name}) is a memory tier, which holds no volume \
                     data; new extents go to level {default} (storage.defaultTier) and move by \
                     heat",
                    disk.name
                )),
            )
        } else {
            (Some(tier), None)
        })
    }

    /// One placement round: plan, then move extent by extent, publishing each move.
    async fn round(&self) -> StorageResult<Vec<Moved>> {
        self.round_directions(true, true).await
    }

    /// A placement round moving extents up (`promote`) and/or down (`demote`) only.
    async fn round_directions(&self, promote: bool, demote: bool) -> StorageResult<Vec<Moved>> {
        let _one = self.round.lock().await;
        let store = self.store.clone();
        let levels: BTreeMap<String, u32> = self
            .store
            .tier_stats()
            .into_iter()
            .map(|t| (t.name, t.level))
            .collect();
        let planned = tokio::task::spawn_blocking(move || store.plan_moves())
            .await
            .map_err(|e| format!("placement round: {e}"))?
            .into_iter()
            .filter(|m| {
                let up = levels.get(&m.to) < levels.get(&m.from);
                (up && promote) || (!up && demote)
            });
        let mut done = Vec::new();
        for m in planned {
            let store = self.store.clone();
            let (volume, extent, to) = (m.volume.clone(), m.extent, m.to.clone());
            let moved =
                tokio::task::spawn_blocking(move || store.move_extent(&volume, extent, &to))
                    .await
                    .map_err(|e| format!("placement round: {e}"))?
                    .map_err(|e| e.to_string())?;
            if !moved {
                continue;
            }
            {
                let mut moves = self.moves.lock().expect("moves lock");
                moves.entry(m.to.clone()).or_default().0 += 1;
                moves.entry(m.from.clone()).or_default().1 += 1;
            }
            let moved = Moved {
                volume: m.volume,
                extent: m.extent,
                from: m.from,
                to: m.to,
                bytes: self.store.granularity(),
            };
            let event = NewEvent::new("storage.moved", format!("volume/{}", moved.volume))
                .with_payload(serde_json::to_value(&moved).unwrap_or_default());
            if let Err(e) = self.bus.publish(event).await {
                tracing::error!("cannot publish an event: {e}");
            }
            done.push(moved);
            if let Some(pause) = self.pause {
                tokio::time::sleep(pause).await;
            }
        }
        Ok(done)
    }
}

/// Binds the NBD socket, replacing one left by an earlier daemon.
fn bind(socket: &Path) -> StorageResult<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(socket);
    tokio::net::UnixListener::bind(socket).map_err(|e| {
        format!(
            "cannot listen for NBD on {}: {e}; use a shorter --state-dir if the path is too long",
            socket.display()
        )
    })
}

fn file_source(path: std::path::PathBuf) -> DiskSource {
    DiskSource::File {
        path,
        format: DiskFormat::Raw,
    }
}

/// Creates a sparse disk of `size` bytes, or grows a smaller one; never shrinks.
fn ensure_file(path: &Path, size: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    if f.metadata()?.len() < size {
        f.set_len(size)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
