//! Deduplicating, encrypted, incremental-forever backups: the repository format of
//! `docs/backup-format.md` and the operations on it.
//!
//! A [`Repository`] is opened with a password; [`backup`] writes a [`Snapshot`] (see
//! [`write`] for the write path, step by step), [`restore`] reads one back bit-identical
//! with holes preserved, [`backup_image`] reads a disk incrementally from a
//! [`BlockSource`] (an NBD export of a running VM's disk, see [`nbd`]), [`serve`] exports
//! an image snapshot read-only over NBD, [`check`] verifies, [`repair`] rebuilds the index, and
//! [`prune`] applies a retention policy and collects garbage in two phases.
#![warn(missing_docs)]

mod check;
mod compress;
mod crypto;
mod error;
mod gc;
pub mod hex;
mod image;
mod index;
pub mod nbd;
pub mod pack;
mod reader;
mod repo;
mod restore;
pub mod retention;
mod serve;
pub mod similarity;
mod snapshot;
mod source;
mod stats;
pub mod write;

pub use check::{Affected, CheckReport, Problem, RepairReport, check, repair};
pub use crypto::{KdfParams, Keys, random as random_bytes};
pub use error::{Error, Result};
pub use gc::{PruneOptions, PruneReport, SnapshotVerdict, prune};
pub use image::{BlockSource, ImageOptions, backup_image};
pub use index::{Index, Location};
pub use reader::ImageReader;
pub use repo::{
    ChunkerParams, CompressionParams, InitOptions, RepoConfig, Repository, SimilarityParams,
    VERSION,
};
pub use restore::restore;
pub use serve::serve;
pub use snapshot::{BackupStats, Extent, Node, NodeType, Snapshot, SnapshotKind};
pub use stats::{Change, ChangeKind, RepoStats, diff, stats};
pub use write::{BackupOptions, backup};
