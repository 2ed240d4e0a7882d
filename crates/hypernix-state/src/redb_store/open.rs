//! Opening a redb file as a state store, and naming what went wrong when it is not one.
//!
//! Opening goes in four steps:
//! 1. look at the file's first bytes: an empty file, a file that is not redb, a file cut
//!    short inside redb's header, or a file of a newer redb format is refused before redb
//!    touches it;
//! 2. open it with redb, which takes an exclusive lock (another daemon → [`StateError::Locked`])
//!    and, since we ask it to, verifies every page's checksum, so a damaged file is an
//!    error rather than a panic later;
//! 3. a database with no tables is new: create the tables and record the store format;
//! 4. otherwise the `store` table must be there and record a format this build reads.

use super::{At, FORMAT, FORMAT_KEY, RedbStore, STORE, docs, events};
use crate::error::StateError;
use crate::store::Table;
use redb::{Builder, MultimapTableHandle, ReadableTable, TableHandle, WriteTransaction};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// redb's magic number, the first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// The redb file format this build reads (redb 4's).
const REDB_FILE_FORMAT: u8 = 3;
/// The header: 64 bytes, then two 128-byte commit slots, each starting with its version.
const HEADER_LEN: usize = 64 + 2 * 128;
/// The byte after the magic number; its lowest bit says which commit slot is current.
const GOD_BYTE: usize = REDB_MAGIC.len();

impl RedbStore {
    /// Opens the store in `path`, creating the file if it does not exist.
    ///
    /// Refuses an empty file, a file that is not a hypernix state database, a file of a
    /// newer format, a damaged file, and a file that another daemon holds open.
    ///
    /// Every open verifies the checksum of every page, so it reads the whole file: about
    /// 20 ms for 200,000 events (36 MB) in a release build.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref();
        probe(path)?;
        let db = Builder::new()
            .set_check_integrity_on_open(true)
            .create(path)
            .at(path)?;
        let store = RedbStore {
            db,
            path: path.to_path_buf(),
        };
        store.prepare()?;
        Ok(store)
    }

    /// Creates the tables of a new database, or checks the format of an existing one.
    fn prepare(&self) -> Result<(), StateError> {
        let path = &self.path;
        let txn = self.db.begin_write().at(path)?;
        let mut tables: Vec<String> = txn
            .list_tables()
            .at(path)?
            .map(|table| table.name().to_owned())
            .collect();
        tables.extend(
            txn.list_multimap_tables()
                .at(path)?
                .map(|table| table.name().to_owned()),
        );
        if tables.is_empty() {
            initialize(&txn).at(path)?;
            return txn.commit().at(path);
        }
        if !tables.iter().any(|name| name == STORE.name()) {
            return Err(StateError::Foreign {
                path: path.clone(),
                detail: format!("it holds the tables {}", tables.join(", ")),
            });
        }
        let found = txn
            .open_table(STORE)
            .at(path)?
            .get(FORMAT_KEY)
            .at(path)?
            .map(|format| format.value());
        txn.abort().at(path)?;
        match found {
            Some(FORMAT) => Ok(()),
            Some(found) if found > FORMAT => Err(StateError::NewerStoreFormat {
                path: path.clone(),
                found,
                supported: FORMAT,
            }),
            other => Err(StateError::Corrupt {
                path: path.clone(),
                reason: format!("its store table records the format {other:?}"),
            }),
        }
    }
}

/// Creates every table of a new store and records its format.
fn initialize(txn: &WriteTransaction) -> Result<(), redb::Error> {
    for table in Table::ALL {
        txn.open_table(docs(table))?;
    }
    txn.open_table(events())?;
    txn.open_table(STORE)?.insert(FORMAT_KEY, FORMAT)?;
    Ok(())
}

/// Refuses, by its first bytes, a file that redb should not be handed.
fn probe(path: &Path) -> Result<(), StateError> {
    let io_error = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(io_error(err)),
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    file.take(HEADER_LEN as u64)
        .read_to_end(&mut header)
        .map_err(io_error)?;
    if header.is_empty() {
        return Err(StateError::Empty {
            path: path.to_path_buf(),
        });
    }
    if !header.starts_with(&REDB_MAGIC) {
        return Err(StateError::NotADatabase {
            path: path.to_path_buf(),
        });
    }
    if header.len() < HEADER_LEN {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "it is cut short at {} bytes, inside redb's {HEADER_LEN}-byte header",
                header.len()
            ),
        });
    }
    let slot = 64 + 128 * usize::from(header[GOD_BYTE] & 1);
    let found = header[slot];
    if found > REDB_FILE_FORMAT {
        return Err(StateError::NewerFileFormat {
            path: path.to_path_buf(),
            found,
            supported: REDB_FILE_FORMAT,
        });
    }
    Ok(())
}

/// Names what a redb error means for the state file at `path`.
pub(super) fn classify(path: &Path, err: redb::Error) -> StateError {
    let path = path.to_path_buf();
    match err {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StateError::Locked { path }
        }
        redb::Error::UpgradeRequired(found) => StateError::OlderFileFormat { path, found },
        redb::Error::Corrupted(reason) => StateError::Corrupt { path, reason },
        redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. } => StateError::Foreign {
            path,
            detail: err.to_string(),
        },
        redb::Error::TableDoesNotExist(table) => StateError::Corrupt {
            path,
            reason: format!("its table {table} is missing"),
        },
        redb::Error::Io(source) => StateError::Io { path, source },
        source => StateError::Storage { path, source },
    }
}
