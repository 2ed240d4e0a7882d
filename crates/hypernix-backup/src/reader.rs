//! Random access to an image snapshot: the bytes at any offset, decoded chunk by chunk,
//! with the few chunks read last kept for neighbouring reads.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::hex;
use crate::image::{Extents, layout};
use crate::repo::Repository;
use crate::snapshot::{Extent, Snapshot, SnapshotKind};

/// How many decoded chunks a reader keeps.
const CACHED: usize = 4;

/// Reads an image snapshot at any offset; clones share the layout, not the cache.
#[derive(Debug, Clone)]
pub struct ImageReader {
    repo: Arc<Repository>,
    extents: Arc<Extents>,
    size: u64,
    cache: Vec<(u64, Arc<Vec<u8>>)>,
}

impl ImageReader {
    /// A reader of `snapshot`, which must be an image.
    pub fn new(repo: Arc<Repository>, snapshot: &Snapshot) -> Result<ImageReader> {
        if snapshot.kind != SnapshotKind::Image {
            return Err(Error::NotAnImage(snapshot.id.clone()));
        }
        let (size, extents) = layout(&repo, snapshot)?;
        Ok(ImageReader {
            repo,
            extents: Arc::new(extents),
            size,
            cache: Vec::new(),
        })
    }

    /// The image's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buf` with the bytes at `offset`; the range must lie inside the image.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.size {
            return Err(Error::Config(format!(
                "read of {} bytes at {offset} passes the image's end at {}",
                buf.len(),
                self.size
            )));
        }
        let mut pos = offset;
        let mut i = self
            .extents
            .partition_point(|(off, len, _)| off + len <= pos);
        while pos < end {
            let (off, len, extent) = self.extents[i].clone();
            let (from, to) = (pos - off, (end - off).min(len));
            let out = &mut buf[(pos - offset) as usize..(off + to - offset) as usize];
            match extent {
                Extent::Hole(_) => out.fill(0),
                Extent::Chunk(id) => {
                    let data = self.chunk(off, &id)?;
                    out.copy_from_slice(&data[from as usize..to as usize]);
                }
            }
            pos = off + to;
            i += 1;
        }
        Ok(())
    }

    /// The decoded chunk `id` at image offset `off`.
    fn chunk(&mut self, off: u64, id: &str) -> Result<Arc<Vec<u8>>> {
        if let Some((_, data)) = self.cache.iter().find(|(o, _)| *o == off) {
            return Ok(data.clone());
        }
        let key = hex::decode32(id).ok_or_else(|| Error::MissingChunk(id.to_string()))?;
        let data = Arc::new(self.repo.read_chunk(&key)?);
        if self.cache.len() >= CACHED {
            self.cache.remove(0);
        }
        self.cache.push((off, data.clone()));
        Ok(data)
    }
}
