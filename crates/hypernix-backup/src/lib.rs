//! Deduplicating, encrypted, incremental-forever backups: the repository format of
//! `docs/backup-format.md` and the operations on it.
//!
//! A [`Repository`] is opened with a password; [`backup`] writes a [`Snapshot`] (see
//! [`write`] for the write path, step by step), [`restore`] reads one back bit-identical
//! with holes preserved, [`check`] verifies, [`repair`] rebuilds the index, and
//! [`prune`] applies a retention policy and collects garbage in two phases.
#![warn(missing_docs)]

mod check;
mod crypto;
mod error;
mod gc;
pub mod hex;
mod image;
mod index;
pub mod nbd;
pub mod pack;
mod repo;
mod restore;
pub mod retention;
pub mod similarity;
mod snapshot;
mod source;
mod stats;
pub mod write;

pub use check::{Affected, CheckReport, Problem, RepairReport, check, repair};
pub use crypto::{KdfParams, Keys};
pub use error::{Error, Result};
pub use gc::{PruneOptions, PruneReport, SnapshotVerdict, prune};
pub use image::{BlockSource, ImageOptions, backup_image};
pub use index::{Index, Location};
pub use repo::{
    ChunkerParams, CompressionParams, InitOptions, RepoConfig, Repository, SimilarityParams,
    VERSION,
};
pub use restore::restore;
pub use snapshot::{BackupStats, Extent, Node, NodeType, Snapshot, SnapshotKind};
pub use stats::{Change, ChangeKind, RepoStats, diff, stats};
pub use write::{BackupOptions, backup};
