//! The errors of the store, with a small kind that the NBD server maps to error codes.

use std::path::PathBuf;

/// What went wrong in the store; every message names the volume, extent or tier.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A volume that does not exist.
    #[error("no volume named {0:?}; list volumes with `hypernix storage volume ls`")]
    NoVolume(String),
    /// A volume name that is already taken.
    #[error("volume {0:?} already exists; pick another name or remove it first")]
    VolumeExists(String),
    /// A volume name that cannot be used as an NBD export name.
    #[error("volume name {0:?} is invalid; use 1-255 characters of [A-Za-z0-9._-]")]
    BadName(String),
    /// An access past the end of a volume.
    #[error(
        "volume {volume:?}: bytes {offset}..{end} are past its size {size}; resize it or stay within it"
    )]
    OutOfRange {
        /// The volume.
        volume: String,
        /// The first byte asked for.
        offset: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The volume's size.
        size: u64,
    },
    /// Every tier that may hold a new extent is full.
    #[error(
        "volume {volume:?} extent {extent}: every tier is full; add capacity to a tier or free space"
    )]
    Full {
        /// The volume.
        volume: String,
        /// The extent index.
        extent: u64,
    },
    /// A tier name not in the configuration or the store.
    #[error("no tier named {0:?}; check storage.tiers in the configuration")]
    NoTier(String),
    /// The configuration cannot describe a store.
    #[error("storage configuration: {0}")]
    Config(String),
    /// A store whose format or granularity this build cannot use.
    #[error("store {path}: {reason}")]
    Incompatible {
        /// The map file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An I/O error on a tier's data file.
    #[error("tier {tier:?}: I/O on {path} failed; check the disk and its free space")]
    TierIo {
        /// The tier.
        tier: String,
        /// Its data file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store is open in another process.
    #[error(
        "store {0} is open in another process (a running `hypernix storage serve`?); stop it or use another store"
    )]
    InUse(PathBuf),
    /// An error of the extent map database.
    #[error("extent map {path} failed; if this persists, run `hypernix storage fsck`")]
    Map {
        /// The map file (or `memory`).
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
}

/// The broad class of a [`StorageError`], which the NBD server turns into an errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad arguments (EINVAL).
    Invalid,
    /// No space (ENOSPC).
    NoSpace,
    /// I/O failure (EIO).
    Io,
}

impl StorageError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Full { .. } => ErrorKind::NoSpace,
            StorageError::OutOfRange { .. }
            | StorageError::NoVolume(_)
            | StorageError::VolumeExists(_)
            | StorageError::BadName(_)
            | StorageError::NoTier(_)
            | StorageError::Config(_) => ErrorKind::Invalid,
            StorageError::Incompatible { .. }
            | StorageError::InUse(_)
            | StorageError::TierIo { .. }
            | StorageError::Map { .. } => ErrorKind::Io,
        }
    }
}

/// Attaches the map path to redb errors.
pub(crate) trait MapAt<T> {
    /// Converts the error into [`StorageError::Map`].
    fn at(self, path: &std::path::Path) -> Result<T, StorageError>;
}

impl<T, E: Into<redb::Error>> MapAt<T> for Result<T, E> {
    fn at(self, path: &std::path::Path) -> Result<T, StorageError> {
        self.map_err(|e| StorageError::Map {
            path: path.to_path_buf(),
            source: e.into(),
        })
    }
}
