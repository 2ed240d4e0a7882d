//! Tiered block volumes served over NBD.
//!
//! A [`Store`] holds volumes made of fixed-size extents (`storage.fabric.heatMap.granularity`).
//! Each allocated extent lives in one slot of one tier: a memory tier or a directory tier
//! (one data file). The extent map is kept in redb and changed only by copy-then-switch
//! (write data, sync, commit), so a crash at any moment leaves a consistent map; see
//! `docs/storage-format.md`. Unallocated extents read as zeros. [`HeatMap`] counts accesses
//! with exponential decay and in time windows, and [`placement`] moves extents between
//! tiers by heat, as [`schedule`] and [`classify`] allow. In a durable store the memory
//! tier is a read cache whose [`cache`] policy admits extents by heat. [`replay`] runs a
//! block trace through the same heat, cache and planner in simulated time. [`nbd`] serves
//! each volume as an NBD export.

#![warn(missing_docs)]

pub mod cache;
pub mod classify;
pub mod config;
mod counters;
pub mod error;
mod extents;
mod fsck;
pub mod heat;
mod heatview;
mod io;
mod map;
mod memcache;
pub mod nbd;
mod options;
pub mod placement;
pub mod replay;
pub mod schedule;
mod store;
mod tier;

pub use config::{Demote, Promote, StoreConfig, TierMedium, TierSpec};
pub use error::{ErrorKind, StorageError};
pub use extents::ExtentPlacement;
pub use fsck::FsckReport;
pub use heat::HeatMap;
pub use heatview::{ExtentHeat, VolumeHeat};
pub use map::FORMAT;
pub use options::{CacheSpec, CacheWrite, StoreOptions};
pub use placement::{Move, PlacementReport};
pub use store::{Run, Store, TierStats, VolumeInfo, check_volume_name};
