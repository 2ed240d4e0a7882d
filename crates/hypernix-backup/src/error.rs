//! The errors of the backup library; each names the repository file it concerns and says
//! what to do.

use std::path::PathBuf;

/// Something went wrong reading or writing a backup repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An incremental image backup's parent snapshot does not fit the disk.
    #[error(
        "snapshot {id} cannot be the parent of this image backup: {reason}; take a full backup"
    )]
    Parent {
        /// The parent snapshot.
        id: String,
        /// Why it does not fit.
        reason: String,
    },
    /// A snapshot of files where a disk image is needed.
    #[error(
        "snapshot {0} is a tree of files, not a disk image; restore it with `hypernix backup restore`"
    )]
    NotAnImage(String),
    /// An NBD server refused or broke the protocol.
    #[error("NBD export {export}: {what}")]
    Nbd {
        /// The export (socket and name).
        export: String,
        /// What went wrong.
        what: String,
    },
    /// The directory is not a repository.
    #[error(
        "{0} is not a hypernix backup repository (no readable config); run `hypernix backup init --repo DIR` first"
    )]
    NotARepository(PathBuf),
    /// `init` found an existing repository or a non-empty directory.
    #[error("{0} already exists and is not empty; choose an empty or new directory")]
    AlreadyExists(PathBuf),
    /// The password does not unwrap the master key.
    #[error("wrong password for repository {0}; check --password-file or HYPERNIX_BACKUP_PASSWORD")]
    WrongPassword(PathBuf),
    /// A repository file is damaged or not what it should be.
    #[error(
        "{path} is corrupt: {what}; `hypernix backup check --read-data` shows what it affects \
         (`repair` rebuilds the index; config and keys/master can only come from a copy)"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// A repository file has a version this build does not know.
    #[error(
        "{path} has format version {found}, this build reads version {known}; upgrade hypernix"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build knows.
        known: u32,
    },
    /// A chunk named by a snapshot is not in the index.
    #[error(
        "chunk {0} is missing from the repository; run `hypernix backup repair`, then `check --read-data`"
    )]
    MissingChunk(String),
    /// No snapshot with this id (or unique prefix).
    #[error("no snapshot matches `{0}`; list them with `hypernix backup ls`")]
    NoSuchSnapshot(String),
    /// A path inside a snapshot does not exist.
    #[error("snapshot {snapshot} has no path `{path}`")]
    NoSuchPath {
        /// The snapshot id.
        snapshot: String,
        /// The path looked for.
        path: String,
    },
    /// The chunk index could not be used.
    #[error(
        "chunk index {path}: {what}; if another hypernix backup command is running, wait for it, else run `hypernix backup repair`"
    )]
    Index {
        /// The index file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
    /// A setting is out of range.
    #[error("invalid repository setting: {0}")]
    Config(String),
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds a path to an I/O error.
pub(crate) trait IoContext<T> {
    /// Names `path` in the error.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}

/// A corrupt-file error.
pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.into(),
        what: what.into(),
    }
}
