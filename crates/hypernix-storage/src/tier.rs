//! Tier media: slots of `granularity` bytes in RAM or in one data file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::error::StorageError;

/// Where one tier's slots are.
pub(crate) enum Medium {
    /// Slots in RAM, grown on demand.
    Memory(RwLock<Vec<u8>>),
    /// Slots in a data file.
    File {
        /// The open data file.
        file: File,
        /// Its path, for messages.
        path: PathBuf,
    },
}

/// One open tier.
pub(crate) struct TierData {
    /// The tier's name.
    pub name: String,
    /// The slot size.
    pub granularity: u64,
    /// The medium.
    pub medium: Medium,
}

impl TierData {
    /// A memory tier.
    pub fn memory(name: &str, granularity: u64) -> TierData {
        TierData {
            name: name.into(),
            granularity,
            medium: Medium::Memory(RwLock::new(Vec::new())),
        }
    }

    /// A file tier, creating the file if needed.
    pub fn file(name: &str, granularity: u64, path: &Path) -> Result<TierData, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| StorageError::TierIo {
                tier: name.into(),
                path: path.into(),
                source,
            })?;
        Ok(TierData {
            name: name.into(),
            granularity,
            medium: Medium::File {
                file,
                path: path.into(),
            },
        })
    }

    /// Whether the tier survives a restart.
    pub fn durable(&self) -> bool {
        matches!(self.medium, Medium::File { .. })
    }

    fn io_err(&self, source: std::io::Error) -> StorageError {
        let path = match &self.medium {
            Medium::File { path, .. } => path.clone(),
            Medium::Memory(_) => PathBuf::from("memory"),
        };
        StorageError::TierIo {
            tier: self.name.clone(),
            path,
            source,
        }
    }

    /// Reads `buf.len()` bytes at `offset` within `slot`; bytes never written read as zeros.
    pub fn read(&self, slot: u64, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let at = slot * self.granularity + offset;
        match &self.medium {
            Medium::Memory(mem) => {
                let mem = mem.read().unwrap_or_else(|e| e.into_inner());
                let at = at as usize;
                let have = mem.len().saturating_sub(at).min(buf.len());
                buf[..have].copy_from_slice(&mem[at..at + have]);
                buf[have..].fill(0);
                Ok(())
            }
            Medium::File { file, .. } => {
                let mut done = 0;
                while done < buf.len() {
                    match file.read_at(&mut buf[done..], at + done as u64) {
                        Ok(0) => {
                            buf[done..].fill(0);
                            break;
                        }
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.io_err(e)),
                    }
                }
                Ok(())
            }
        }
    }

    /// Writes `data` at `offset` within `slot`.
    pub fn write(&self, slot: u64, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let at = slot * self.granularity + offset;
        match &self.medium {
            Medium::Memory(mem) => {
                let mut mem = mem.write().unwrap_or_else(|e| e.into_inner());
                let end = at as usize + data.len();
                if mem.len() < end {
                    mem.resize(end, 0);
                }
                mem[at as usize..end].copy_from_slice(data);
                Ok(())
            }
            Medium::File { file, .. } => file.write_all_at(data, at).map_err(|e| self.io_err(e)),
        }
    }

    /// Makes written data durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        match &self.medium {
            Medium::Memory(_) => Ok(()),
            Medium::File { file, .. } => file.sync_data().map_err(|e| self.io_err(e)),
        }
    }

    /// Releases a slot's space (punches a hole, or zeroes RAM).
    pub fn discard(&self, slot: u64) -> Result<(), StorageError> {
        let at = slot * self.granularity;
        match &self.medium {
            Medium::Memory(mem) => {
                let mut mem = mem.write().unwrap_or_else(|e| e.into_inner());
                let len = mem.len() as u64;
                if at < len {
                    let end = (at + self.granularity).min(len) as usize;
                    mem[at as usize..end].fill(0);
                }
                Ok(())
            }
            Medium::File { file, .. } => {
                use rustix::fs::{FallocateFlags, fallocate};
                let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
                match fallocate(file, flags, at, self.granularity) {
                    Ok(()) => Ok(()),
                    // A file system without hole punching keeps the old bytes: harmless,
                    // since the map no longer points at the slot.
                    Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
                    Err(e) => Err(self.io_err(e.into())),
                }
            }
        }
    }

    /// The data file's length (memory: bytes held).
    pub fn len(&self) -> Result<u64, StorageError> {
        match &self.medium {
            Medium::Memory(mem) => Ok(mem.read().unwrap_or_else(|e| e.into_inner()).len() as u64),
            Medium::File { file, .. } => {
                file.metadata().map(|m| m.len()).map_err(|e| self.io_err(e))
            }
        }
    }
}
