//! Disk-image snapshots read from a [`BlockSource`] (a point-in-time view of a disk, such
//! as QEMU's NBD export of a running VM's disk), incrementally when a parent is given.
//!
//! 1. The parent's content is laid out at offsets: a hole has its length, a chunk the
//!    plain length its index entry records. With no parent, the image is one hole.
//! 2. Each changed range is widened to the chunks it touches (a hole may be cut anywhere);
//!    ranges closer than the chunker's minimum merge.
//! 3. Everything outside the widened ranges is taken from the parent without reading it;
//!    the widened ranges are read and cut with FastCDC as in the write path (an all-zero
//!    chunk becomes a hole).
//! 4. The snapshot names its parent and the dirty bitmap that tracks the next changes.

use std::io::Read;

use chrono::Utc;
use fastcdc::v2020::StreamCDC;

use crate::error::{Error, Result};
use crate::hex;
use crate::snapshot::{Extent, Node, NodeType, Snapshot, SnapshotKind};
use crate::source::push;
use crate::write::{Lock, Writer, hostname};
use crate::{Repository, repo::VERSION};

/// An image's extents as `(offset, length, extent)`, in order.
pub(crate) type Extents = Vec<(u64, u64, Extent)>;

/// The largest read asked of a [`BlockSource`] at once.
const READ_SIZE: usize = 4 << 20;

/// A disk seen at one point in time.
pub trait BlockSource {
    /// The disk's size in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` with the bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

/// What an image backup reads and records.
#[derive(Debug, Clone)]
pub struct ImageOptions {
    /// The source's name, recorded in the snapshot (retention applies per source).
    pub source: String,
    /// The name of the image, recorded as the snapshot's path.
    pub path: String,
    /// The snapshot this one builds on; its extents outside `changed` are reused.
    pub parent: Option<Snapshot>,
    /// The byte ranges `[start, end)` to read: those changed since the parent, or the
    /// allocated ones when there is no parent.
    pub changed: Vec<(u64, u64)>,
    /// The dirty bitmap that records writes from this snapshot on.
    pub bitmap: Option<String>,
}

/// Backs up the image `src` and returns the saved snapshot; `progress` gets the bytes
/// done (read or reused) so far.
pub fn backup_image(
    repo: &Repository,
    options: &ImageOptions,
    src: &mut dyn BlockSource,
    progress: &mut dyn FnMut(u64),
) -> Result<Snapshot> {
    let _lock = Lock::take(repo)?;
    let size = src.size();
    let parent = match &options.parent {
        Some(parent) => {
            let (parent_size, extents) = layout(repo, parent)?;
            if parent_size != size {
                return Err(Error::Parent {
                    id: parent.id.clone(),
                    reason: format!("it is {parent_size} bytes and the disk now {size}"),
                });
            }
            extents
        }
        None => vec![(0, size, Extent::Hole(size))],
    };
    let ranges = widen(
        &parent,
        &options.changed,
        size,
        u64::from(repo.config().chunker.min),
    );
    let time = Utc::now();
    let mut w = Writer::new(repo, progress)?;
    let mut content = Vec::new();
    let mut pos = 0;
    for &(start, end) in &ranges {
        reuse(&mut w, &mut content, &parent, pos, start);
        read_range(&mut w, &mut content, src, start, end, &options.path)?;
        pos = end;
    }
    reuse(&mut w, &mut content, &parent, pos, size);
    w.file_done();
    let stats = w.finish()?;
    let mut snapshot = Snapshot {
        version: VERSION,
        id: String::new(),
        time,
        host: hostname(),
        source: options.source.clone(),
        kind: SnapshotKind::Image,
        paths: vec![options.path.clone()],
        roots: vec![Node {
            name: options.path.clone(),
            kind: NodeType::File,
            mode: 0o600,
            mtime: time.timestamp(),
            size,
            content,
            target: None,
            children: Vec::new(),
        }],
        stats,
        parent: options.parent.as_ref().map(|p| p.id.clone()),
        bitmap: options.bitmap.clone(),
    };
    repo.save_snapshot(&mut snapshot)?;
    Ok(snapshot)
}

/// An image snapshot's size and its extents with their offsets (step 1).
pub(crate) fn layout(repo: &Repository, snapshot: &Snapshot) -> Result<(u64, Extents)> {
    let mismatch = |reason: String| Error::Parent {
        id: snapshot.id.clone(),
        reason,
    };
    let root = match (snapshot.kind, snapshot.roots.as_slice()) {
        (SnapshotKind::Image, [root]) => root,
        _ => return Err(mismatch("it is not a single-image snapshot".into())),
    };
    let mut out = Vec::with_capacity(root.content.len());
    let mut offset = 0;
    for extent in &root.content {
        let len = match extent {
            Extent::Hole(len) => *len,
            Extent::Chunk(id) => {
                let missing = || Error::MissingChunk(id.clone());
                let key = hex::decode32(id).ok_or_else(missing)?;
                let loc = repo.index().get(&key)?.ok_or_else(missing)?;
                u64::from(loc.entry.plain_len)
            }
        };
        out.push((offset, len, extent.clone()));
        offset += len;
    }
    if offset != root.size {
        return Err(mismatch(format!(
            "its content adds up to {offset} bytes, not {}",
            root.size
        )));
    }
    Ok((root.size, out))
}

/// The ranges to read (step 2): `changed` clipped to `size`, widened to whole chunks of
/// `parent`, sorted, and merged when closer than `min_gap`.
fn widen(
    parent: &[(u64, u64, Extent)],
    changed: &[(u64, u64)],
    size: u64,
    min_gap: u64,
) -> Vec<(u64, u64)> {
    // The chunk holding byte `at`, as (start, end).
    let chunk_at = |at: u64| {
        let i = parent.partition_point(|(off, len, _)| off + len <= at);
        parent
            .get(i)
            .filter(|(_, _, e)| matches!(e, Extent::Chunk(_)))
            .map(|(off, len, _)| (*off, off + len))
    };
    let mut ranges: Vec<(u64, u64)> = changed
        .iter()
        .map(|&(s, e)| (s.min(size), e.min(size)))
        .filter(|(s, e)| s < e)
        .map(|(s, e)| {
            let s = chunk_at(s).map_or(s, |c| c.0);
            let e = chunk_at(e - 1).map_or(e, |c| c.1);
            (s, e)
        })
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s.saturating_sub(last.1) < min_gap => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    // Every end is a chunk boundary or lies in a hole, so a merged range still cuts no
    // chunk: the gap it swallowed holds whole extents.
    merged
}

/// Copies the parent's extents over `[from, to)`, cutting holes at the edges (step 3).
fn reuse(
    w: &mut Writer<'_>,
    content: &mut Vec<Extent>,
    parent: &[(u64, u64, Extent)],
    from: u64,
    to: u64,
) {
    if from >= to {
        return;
    }
    let first = parent.partition_point(|(off, len, _)| off + len <= from);
    for (off, len, extent) in &parent[first..] {
        if *off >= to {
            break;
        }
        let (s, e) = ((*off).max(from), (off + len).min(to));
        match extent {
            Extent::Hole(_) => push(content, Extent::Hole(e - s)),
            // Range ends lie on chunk boundaries (see `widen`), so a chunk is whole here.
            Extent::Chunk(_) => push(content, extent.clone()),
        }
        w.reused(e - s);
    }
}

/// Reads `[start, end)` of `src` and stores it as chunks and holes (step 3).
fn read_range(
    w: &mut Writer<'_>,
    content: &mut Vec<Extent>,
    src: &mut dyn BlockSource,
    start: u64,
    end: u64,
    name: &str,
) -> Result<()> {
    let params = w.repo().config().chunker;
    let reader = RangeReader {
        src,
        pos: start,
        end,
    };
    for chunk in StreamCDC::new(reader, params.min, params.avg, params.max) {
        let chunk = chunk.map_err(|e| Error::Io {
            path: name.into(),
            source: match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
        })?;
        push(content, w.store(&chunk.data)?);
    }
    Ok(())
}

/// `[pos, end)` of a block source as a reader.
struct RangeReader<'a> {
    src: &'a mut dyn BlockSource,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(READ_SIZE)
            .min(usize::try_from(self.end - self.pos).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.src.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}
