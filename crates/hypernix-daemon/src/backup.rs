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
    open_with(config, layout, name, std::env::var(PASSWORD_ENV).ok())
}

/// [`open_repository`] with the password from the environment given as `env`. An
/// encrypted repository without one uses its key file `STATE/backup/NAME.key` (0600),
/// which the daemon writes with a random password when it creates the repository, as it
/// writes its root credential; `hypernix backup --password-file` reads it.
fn open_with(
    config: &Backup,
    layout: &Layout,
    name: &str,
    env: Option<String>,
) -> Result<Repository, String> {
    let root = location(config, layout, name)?;
    let settings = config.repositories.get(name);
    let encrypted = settings.is_none_or(|r| r.encryption.enabled);
    let fresh = !root.join("config").exists() && is_empty_dir(&root);
    let key_file = key_file(layout, name);
    let password = match env {
        Some(p) => p,
        None if !encrypted => String::new(),
        None if key_file.exists() => std::fs::read_to_string(&key_file)
            .map(|p| p.trim_end().to_string())
            .map_err(|e| format!("repository `{name}`: key file {}: {e}", key_file.display()))?,
        None if fresh => write_key_file(&key_file)
            .map_err(|e| format!("repository `{name}`: key file {}: {e}", key_file.display()))?,
        None => {
            return Err(format!(
                "repository `{name}` is encrypted and has no key file {}: set {PASSWORD_ENV} \
                 in the daemon's environment, or set encryption.enabled = false",
                key_file.display()
            ));
        }
    };
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

/// Where the daemon keeps the password of repository `name`.
pub fn key_file(layout: &Layout, name: &str) -> PathBuf {
    layout.root().join("backup").join(format!("{name}.key"))
}

/// Writes a new random password to `path`, readable by its owner only, and returns it.
fn write_key_file(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let password = hypernix_backup::hex::encode(&hypernix_backup::random_bytes::<32>());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{password}\n").as_bytes())?;
    file.sync_all()?;
    Ok(password)
}

fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map_or(true, |mut d| d.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_repository_made_by_the_daemon_gets_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let config = Backup::default();
        open_with(&config, &layout, "default", None).unwrap();
        let key = key_file(&layout, "default");
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        // Opened again with the key file, and with its password given explicitly.
        open_with(&config, &layout, "default", None).unwrap();
        let password = std::fs::read_to_string(&key).unwrap().trim().to_string();
        assert_eq!(password.len(), 64);
        open_with(&config, &layout, "default", Some(password)).unwrap();
        // A wrong password is refused; a lost key file is named.
        let wrong = open_with(&config, &layout, "default", Some("nope".into())).unwrap_err();
        assert!(wrong.contains("wrong password"), "{wrong}");
        std::fs::remove_file(&key).unwrap();
        let lost = open_with(&config, &layout, "default", None).unwrap_err();
        assert!(
            lost.contains("has no key file") && lost.contains("default.key"),
            "{lost}"
        );
    }
}
