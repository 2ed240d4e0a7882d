//! The backup write path.
//!
//! 1. Open the repository (config, key, index) and write `locks/ID`.
//! 2. Walk the source; find each file's data regions with `SEEK_DATA`/`SEEK_HOLE`.
//! 3. Cut each region with FastCDC; an all-zero chunk becomes a hole.
//! 4. Hash the chunk with the keyed BLAKE3 id key; a known id is only recorded (dedup),
//!    unless its pack is marked as garbage, when it is stored again.
//! 5. Otherwise encode it (delta against a similar chunk, else zstd, else raw), seal it and
//!    append it to the open pack.
//! 6. A full pack is written atomically (tmp, fsync, rename, directory fsync), then its
//!    entries are committed to the index.
//! 7. After the last file: the last pack as in 6, then the sealed snapshot, then the lock
//!    is removed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::crypto::random;
use crate::error::{IoContext, Result};
use crate::hex;
use crate::index::Location;
use crate::pack::{BlobKind, PackBuilder, TARGET_SIZE};
use crate::repo::{Repository, to_json};
use crate::similarity::{Sketch, similarity, sketch, super_features};
use crate::snapshot::{BackupStats, Extent, Snapshot, SnapshotKind};
use crate::source::read_node;

/// Chunks shorter than this are not delta-encoded: the lookup costs more than it saves.
const MIN_DELTA: usize = 4096;

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The source's name, recorded in the snapshot.
    pub source: String,
    /// A tree of files, or one image.
    pub kind: SnapshotKind,
    /// The paths to read (one for an image).
    pub paths: Vec<PathBuf>,
}

/// A backup in progress: the open pack and the counts.
pub(crate) struct Writer<'r> {
    repo: &'r Repository,
    pack: PackBuilder,
    pending: HashSet<[u8; 32]>,
    sketches: Vec<([u8; 32], Sketch)>,
    marked: HashSet<[u8; 32]>,
    stats: BackupStats,
    progress: &'r mut dyn FnMut(u64),
}

impl<'r> Writer<'r> {
    /// Starts writing into `repo`; `progress` gets the bytes read so far, chunk by chunk.
    pub(crate) fn new(repo: &'r Repository, progress: &'r mut dyn FnMut(u64)) -> Result<Self> {
        Ok(Writer {
            repo,
            pack: PackBuilder::default(),
            pending: HashSet::new(),
            sketches: Vec::new(),
            marked: marked_packs(repo)?,
            stats: BackupStats::default(),
            progress,
        })
    }

    /// Writes the last pack (step 7) and returns the counts.
    pub(crate) fn finish(mut self) -> Result<BackupStats> {
        self.flush()?;
        Ok(self.stats)
    }

    /// Counts `len` bytes taken from a parent snapshot without reading them.
    pub(crate) fn reused(&mut self, len: u64) {
        self.stats.reused_bytes += len;
        (self.progress)(len);
    }

    /// The repository written to.
    pub(crate) fn repo(&self) -> &'r Repository {
        self.repo
    }

    /// Counts a hole of `len` bytes.
    pub(crate) fn hole(&mut self, len: u64) {
        self.stats.bytes += len;
        self.stats.hole_bytes += len;
        (self.progress)(len);
    }

    /// Counts a finished file.
    pub(crate) fn file_done(&mut self) {
        self.stats.files += 1;
    }

    /// Stores one chunk (steps 3 to 6) and returns its extent.
    pub(crate) fn store(&mut self, data: &[u8]) -> Result<Extent> {
        let len = data.len() as u64;
        (self.progress)(len);
        if data.iter().all(|&b| b == 0) {
            self.stats.bytes += len;
            self.stats.hole_bytes += len;
            return Ok(Extent::Hole(len));
        }
        self.stats.bytes += len;
        self.stats.chunks += 1;
        let id = self.repo.keys().chunk_id(data);
        if self.pending.contains(&id) || self.usable(&id)?.is_some() {
            self.stats.dedup_chunks += 1;
            return Ok(Extent::Chunk(hex::encode(&id)));
        }
        let (kind, payload, base) = self.encode(id, data)?;
        let sealed = self.repo.keys().seal(&payload);
        self.stats.new_chunks += 1;
        self.stats.new_bytes += len;
        self.stats.stored_bytes += sealed.len() as u64;
        self.pack.push(id, kind, &sealed, data.len(), base);
        self.pending.insert(id);
        if self.pack.len() >= TARGET_SIZE {
            self.flush()?;
        }
        Ok(Extent::Chunk(hex::encode(&id)))
    }

    /// Where chunk `id` is stored, unless its pack is marked as garbage: a chunk in a
    /// marked pack is stored again, so that the sweep may delete that pack.
    fn usable(&self, id: &[u8; 32]) -> Result<Option<Location>> {
        Ok(self
            .repo
            .index()
            .get(id)?
            .filter(|l| !self.marked.contains(&l.pack)))
    }

    /// Encodes a chunk (step 5): a zstd delta against a similar stored chunk when that is
    /// smallest, else zstd, else raw (incompressible).
    fn encode(&mut self, id: [u8; 32], data: &[u8]) -> Result<(BlobKind, Vec<u8>, [u8; 32])> {
        let config = self.repo.config();
        let level = config.compression.level;
        let root = self.repo.root();
        let compressed = zstd::bulk::compress(data, level).at(root)?;
        let (kind, plain) = if compressed.len() < data.len() {
            (BlobKind::Zstd, compressed)
        } else {
            (BlobKind::Raw, data.to_vec())
        };
        if !config.similarity.enabled || data.len() < MIN_DELTA {
            return Ok((kind, plain, [0; 32]));
        }
        let sketch = sketch(data);
        self.sketches.push((id, sketch));
        let Some(base) = self.similar_base(&sketch, config.similarity.threshold)? else {
            return Ok((kind, plain, [0; 32]));
        };
        let base_data = self.repo.read_chunk(&base)?;
        let delta = zstd::bulk::Compressor::with_dictionary(level, &base_data)
            .and_then(|mut c| c.compress(data))
            .at(root)?;
        if delta.len() >= plain.len() {
            return Ok((kind, plain, [0; 32]));
        }
        // A delta chunk is never a base (invariant 4): forget its sketch.
        self.sketches.pop();
        self.stats.delta_chunks += 1;
        self.stats.delta_saved_bytes += (plain.len() - delta.len()) as u64;
        Ok((BlobKind::Delta, delta, base))
    }

    /// A stored non-delta chunk at least `threshold` similar to `sketch`.
    fn similar_base(&self, sketch: &Sketch, threshold: f64) -> Result<Option<[u8; 32]>> {
        for feature in super_features(sketch) {
            if let Some((base, base_sketch)) = self.repo.index().similar(feature)?
                && similarity(sketch, &base_sketch) >= threshold
                && self
                    .usable(&base)?
                    .is_some_and(|l| l.entry.kind != BlobKind::Delta)
            {
                return Ok(Some(base));
            }
        }
        Ok(None)
    }

    /// Writes the open pack (step 6).
    fn flush(&mut self) -> Result<()> {
        if self.pack.is_empty() {
            return Ok(());
        }
        let (bytes, entries) = self.pack.finish(self.repo.keys());
        let id = *blake3::hash(&bytes).as_bytes();
        self.repo.write_file(&self.repo.pack_path(&id), &bytes)?;
        self.repo
            .index()
            .insert_pack(&id, &entries, &self.sketches)?;
        self.pending.clear();
        self.sketches.clear();
        Ok(())
    }
}

/// A running backup's lock file, removed when dropped.
pub(crate) struct Lock(PathBuf);

impl Lock {
    /// Writes `locks/ID` for this process.
    pub(crate) fn take(repo: &Repository) -> Result<Lock> {
        let path = repo.root().join("locks").join(hex::encode(&random::<8>()));
        let body = serde_json::json!({
            "host": hostname(),
            "pid": std::process::id(),
            "start": Utc::now(),
        });
        repo.write_file(&path, &to_json(&body))?;
        Ok(Lock(path))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The packs marked as garbage (`garbage/PACKID`).
fn marked_packs(repo: &Repository) -> Result<HashSet<[u8; 32]>> {
    let dir = repo.root().join("garbage");
    let mut marked = HashSet::new();
    for entry in std::fs::read_dir(&dir).at(&dir)? {
        if let Some(id) = entry.at(&dir)?.file_name().to_str().and_then(hex::decode32) {
            marked.insert(id);
        }
    }
    Ok(marked)
}

/// This machine's host name.
pub(crate) fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Backs up `options.paths` into `repo` and returns the saved snapshot; `progress` is
/// called with the bytes read so far, chunk by chunk.
pub fn backup(
    repo: &Repository,
    options: &BackupOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Snapshot> {
    let _lock = Lock::take(repo)?;
    let mut writer = Writer::new(repo, progress)?;
    let time = Utc::now();
    let mut roots = Vec::new();
    for path in &options.paths {
        let name = path_name(path);
        if let Some(node) = read_node(&mut writer, path, name)? {
            roots.push(node);
        }
    }
    let stats = writer.finish()?;
    let mut snapshot = Snapshot {
        version: crate::repo::VERSION,
        id: String::new(),
        time,
        host: hostname(),
        source: options.source.clone(),
        kind: options.kind,
        paths: options.paths.iter().map(|p| path_name(p)).collect(),
        roots,
        stats,
        parent: None,
        bitmap: None,
    };
    repo.save_snapshot(&mut snapshot)?;
    Ok(snapshot)
}

/// The absolute form of `path`, as text, for the snapshot.
pub(crate) fn path_name(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
}
