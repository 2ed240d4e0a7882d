//! Backups of running units' disks through QEMU, and the schedule of `backup.sources`.
//!
//! One disk's backup, in steps:
//! 1. Find the disk's node and the newest snapshot of `SOURCE/UNIT/NODE` whose dirty
//!    bitmap QEMU still holds, consistent: that snapshot is the parent. With none (the
//!    first backup, or a restart lost an in-memory bitmap) the whole disk is read.
//! 2. Add an overlay node (a qcow2 file in the run directory, backed by the disk).
//! 3. One transaction: add a new dirty bitmap (persistent when the disk is qcow2), disable
//!    the parent's, and start `blockdev-backup sync=none` into the overlay. From then on a
//!    guest write first copies the old blocks into the overlay, so the overlay shows the
//!    disk as it was at that instant (crash-consistent), and the new bitmap records what
//!    changes after it.
//! 4. Export the overlay read-only on QEMU's own NBD server (a socket in the run
//!    directory), with the parent's bitmap as a metadata context.
//! 5. The engine reads the ranges that bitmap marks dirty (the allocated ones when there
//!    is no parent) and takes the rest from the parent without reading it.
//! 6. Tear down the export, the NBD server, the job and the overlay.
//! 7. On success drop the parent's bitmap. On failure fold the new bitmap into the
//!    parent's, enable it again and drop the new one, so the next backup still sees every
//!    change since the parent.

mod run;
mod schedule;

pub(crate) use schedule::Scheduler;

use std::path::{Path, PathBuf};

use hypernix_backup::{InitOptions, Repository, Snapshot};
use hypernix_config::schema::backup::Backup;
use serde::{Deserialize, Serialize};

use crate::layout::Layout;

/// The environment variable holding the password of the daemon's backup repositories.
pub const PASSWORD_ENV: &str = "HYPERNIX_BACKUP_PASSWORD";

/// A snapshot as the daemon reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// The snapshot id.
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// `SOURCE/UNIT/DISK` for unit disks, the source name otherwise.
    pub source: String,
    /// What was backed up.
    pub paths: Vec<String>,
    /// Bytes of the image or files.
    pub size: u64,
    /// The snapshot an incremental image was built from.
    pub parent: Option<String>,
    /// Bytes read from the disk.
    pub bytes_read: u64,
    /// Bytes taken from the parent without reading.
    pub bytes_reused: u64,
    /// Chunks newly stored.
    pub new_chunks: u64,
}

impl From<&Snapshot> for SnapshotInfo {
    fn from(s: &Snapshot) -> Self {
        SnapshotInfo {
            id: s.id.clone(),
            time: s.time.to_rfc3339(),
            source: s.source.clone(),
            paths: s.paths.clone(),
            size: s.roots.iter().map(|r| r.size).sum(),
            parent: s.parent.clone(),
            bytes_read: s.stats.bytes,
            bytes_reused: s.stats.reused_bytes,
            new_chunks: s.stats.new_chunks,
        }
    }
}

/// Where repository `name` lives: its configured location, or `STATE/backup/NAME` for the
/// undeclared default repository.
fn location(config: &Backup, layout: &Layout, name: &str) -> Result<PathBuf, String> {
    match config.repositories.get(name) {
        Some(r) => Ok(PathBuf::from(&r.location)),
        None if name == config.default_repository => Ok(layout.root().join("backup").join(name)),
        None => Err(format!(
            "hypervisor.backup.repositories has no `{name}`; declare it"
        )),
    }
}

/// Opens repository `name`, creating it with its configured settings when its directory
/// is missing or empty. Blocking (key derivation, index); run it off the async threads.
pub(crate) fn open_repository(
    config: &Backup,
    layout: &Layout,
    name: &str,
) -> Result<Repository, String> {
    let root = location(config, layout, name)?;
    let settings = config.repositories.get(name);
    let encrypted = settings.is_none_or(|r| r.encryption.enabled);
    let password = match std::env::var(PASSWORD_ENV) {
        Ok(p) => p,
        Err(_) if !encrypted => String::new(),
        Err(_) => {
            return Err(format!(
                "repository `{name}` is encrypted: set {PASSWORD_ENV} in the daemon's \
                 environment, or set encryption.enabled = false"
            ));
        }
    };
    let fresh = !root.join("config").exists() && is_empty_dir(&root);
    let opened = if fresh {
        let options = match settings {
            Some(r) => InitOptions::try_from(r).map_err(|e| e.to_string())?,
            None => InitOptions::default(),
        };
        Repository::init(&root, password.as_bytes(), &options)
    } else {
        Repository::open(&root, password.as_bytes())
    };
    opened.map_err(|e| format!("repository `{name}`: {e}"))
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map_or(true, |mut d| d.next().is_none())
}
