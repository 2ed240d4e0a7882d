//! The state directory:
//!
//! ```text
//! STATE/state.redb          desired and observed state, event log
//! STATE/daemon.log          the daemon's log when started by `hypernix up`
//! STATE/units/NAME/         a unit's run directory (QMP, console, pidfile; see hypernix-vmm)
//! STATE/disks/NAME/DISK.raw a unit's disks (sparse) when no storage tiers are configured
//! STATE/storage/            the tiered store: extent map, tier files without a location
//! STATE/run/nbd.sock        the store's NBD socket (export = volume `UNIT.DISK`)
//! STATE/images/test-guest/  the built-in test guest (kernel and initramfs)
//! STATE/caps/               root keys (0600), the root credential `root.token` (0600)
//! STATE/audit.log           the hash-chained audit log
//! ```

use std::path::{Path, PathBuf};

/// Paths under a state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `root` (made absolute: QEMU runs in the run directory).
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        let root = root.into();
        Layout {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    /// The default state directory: `/var/lib/hypernix` for root, else under
    /// `$XDG_STATE_HOME` (or `~/.local/state`).
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/hypernix");
        }
        std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
            .unwrap_or_else(std::env::temp_dir)
            .join("hypernix")
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state store.
    pub fn store(&self) -> PathBuf {
        self.root.join("state.redb")
    }

    /// The daemon's log file.
    pub fn daemon_log(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    /// A unit's run directory.
    pub fn unit_dir(&self, unit: &str) -> PathBuf {
        self.root.join("units").join(unit)
    }

    /// A unit's disk.
    pub fn disk(&self, unit: &str, disk: &str) -> PathBuf {
        self.root
            .join("disks")
            .join(unit)
            .join(format!("{disk}.raw"))
    }

    /// A unit's disk directory.
    pub fn disks(&self, unit: &str) -> PathBuf {
        self.root.join("disks").join(unit)
    }

    /// The root keys and the root credential.
    pub fn caps(&self) -> PathBuf {
        self.root.join("caps")
    }

    /// The root credential: a token with every right, readable by the owner only.
    pub fn root_token(&self) -> PathBuf {
        self.caps().join("root.token")
    }

    /// The audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }

    /// The tiered store's directory.
    pub fn storage_dir(&self) -> PathBuf {
        self.root.join("storage")
    }

    /// The unix socket the store is served on over NBD.
    pub fn nbd_socket(&self) -> PathBuf {
        self.root.join("run").join("nbd.sock")
    }

    /// The image cache.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
}
