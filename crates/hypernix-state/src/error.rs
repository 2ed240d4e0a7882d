//! State store errors; each names the file, table or key and says what to do.

use std::io;
use std::path::PathBuf;
use thiserror::Error;

/// Why the state store could not be opened, read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// Another process (normally another daemon) has the database open.
    #[error(
        "state database {path} is held by another hypernix daemon; stop that daemon, \
         or give this one its own state file"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file exists but is empty.
    #[error(
        "state database {path} is an empty file; remove it to start with an empty store, \
         or restore it from a backup"
    )]
    Empty {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a redb database at all.
    #[error(
        "{path} is not a hypernix state database (it is not a redb file); \
         check the daemon's state path, or move the file away"
    )]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The file is a redb database that belongs to some other program.
    #[error(
        "{path} is a redb database of another program ({detail}), not a hypernix state \
         database; check the daemon's state path"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// What gave it away: its tables, or a table of the wrong type.
        detail: String,
    },
    /// The file was written by a newer redb than this build links.
    #[error(
        "state database {path} uses redb file format {found}, newer than this build reads \
         ({supported}); run a newer hypernix"
    )]
    NewerFileFormat {
        /// The database file.
        path: PathBuf,
        /// The file format version in the file.
        found: u8,
        /// The newest file format version this build reads.
        supported: u8,
    },
    /// The file was written by a redb too old for this build to open.
    #[error(
        "state database {path} uses the old redb file format {found}; upgrade it with the \
         hypernix release that wrote it, or restore a newer backup"
    )]
    OlderFileFormat {
        /// The database file.
        path: PathBuf,
        /// The file format version in the file.
        found: u8,
    },
    /// The store's own layout is newer than this build understands.
    #[error(
        "state database {path} has store format {found}, newer than this build reads \
         ({supported}); run a newer hypernix"
    )]
    NewerStoreFormat {
        /// The database file.
        path: PathBuf,
        /// The store format recorded in the file.
        found: u64,
        /// The newest store format this build reads.
        supported: u64,
    },
    /// The file failed redb's checks: torn, truncated, or altered outside redb.
    #[error(
        "state database {path} is damaged: {reason}; restore it from a backup, \
         or move it away to start with an empty store"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What redb found wrong.
        reason: String,
    },
    /// A stored value is not valid JSON.
    #[error(
        "{table}/{key} in state database {path} is not valid JSON; the file was altered \
         outside hypernix: restore it from a backup, or delete the key"
    )]
    InvalidJson {
        /// The database file.
        path: PathBuf,
        /// The table holding the value.
        table: &'static str,
        /// The key of the value.
        key: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A stored key is not UTF-8.
    #[error(
        "table {table} in state database {path} holds a key that is not UTF-8 ({key}); \
         the file was altered outside hypernix: restore it from a backup"
    )]
    KeyNotUtf8 {
        /// The database file.
        path: PathBuf,
        /// The table holding the key.
        table: &'static str,
        /// The key, with invalid bytes replaced.
        key: String,
    },
    /// A key that may not be stored: empty, or too long.
    #[error(
        "key {key:?} ({len} bytes) cannot be stored in table {table}; keys are 1 to {max} \
         bytes",
        max = crate::store::MAX_KEY_LEN
    )]
    BadKey {
        /// The table written.
        table: &'static str,
        /// The key, cut to 64 characters.
        key: String,
        /// The key's length in bytes.
        len: usize,
    },
    /// A stored document is valid JSON but not of the type asked for.
    #[error("{table}/{key} is not a {type_name}; fix the document, or read it as JSON")]
    Decode {
        /// The table read.
        table: &'static str,
        /// The key read.
        key: String,
        /// The Rust type asked for.
        type_name: &'static str,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("the value for {table}/{key} cannot be encoded as JSON")]
    Encode {
        /// The table written.
        table: &'static str,
        /// The key written.
        key: String,
        /// The encoding error.
        source: serde_json::Error,
    },
    /// The file could not be read or written.
    #[error("cannot read or write state database {path}; check that it exists and is writable")]
    Io {
        /// The database file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Any other failure of redb.
    #[error("state database {path} failed; the daemon may need a restart")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// redb's error.
        source: redb::Error,
    },
}
