//! The backup write path.
//!
//! 1. Open the repository (config, key, index) and write `locks/ID`.
//! 2. Walk the source; find each file's data regions with `SEEK_DATA`/`SEEK_HOLE`.
//! 3. Cut each region with FastCDC; an all-zero chunk becomes a hole.
//! 4. Hash the chunk with the keyed BLAKE3 id key; a known id is only recorded (dedup),
//!    unless its pack is marked as garbage, when it is stored again.
//! 5. Otherwise a delta against a similar chunk, when it pays, is sealed and appended to the
//!    open pack; any other chunk joins the open group.
//! 6. A group of 2 MiB is compressed as one zstd frame, sealed and appended (raw chunks,
//!    one blob each, when it does not compress). A full pack is written atomically (tmp,
//!    fsync, rename, directory fsync), then its entries are committed to the index.
//! 7. After the last file: the last pack as in 6, then the sealed snapshot, then the lock
//!    is removed.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::compress::{Compressor, Encoded};
use crate::crypto::random;
use crate::error::{IoContext, Result};
use crate::hex;
use crate::index::Location;
use crate::pack::{BlobKind, GROUP_SIZE, PackBuilder, TARGET_SIZE};
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
    /// The open group's chunks, one after the other, and their ids and lengths.
    group: Vec<u8>,
    members: Vec<([u8; 32], usize)>,
    /// The group size; 0 in a version 1 repository, where every chunk is its own blob.
    group_size: usize,
    /// Closed groups being compressed, oldest first: their members and plaintext bytes.
    compressor: Compressor,
    in_flight: VecDeque<Vec<([u8; 32], usize)>>,
    in_flight_bytes: usize,
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
            pack: PackBuilder::new(repo.config().version),
            group: Vec::new(),
            members: Vec::new(),
            group_size: if repo.config().version >= 2 {
                GROUP_SIZE
            } else {
                0
            },
            compressor: Compressor::new(repo.keys().clone(), repo.config().compression.level),
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
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
        self.repo.index().compact()?;
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
        self.stats.new_chunks += 1;
        self.stats.new_bytes += len;
        self.pending.insert(id);
        if let Some((delta, base)) = self.delta(id, data)? {
            let sealed = self.repo.keys().seal(&delta);
            self.stats.stored_bytes += sealed.len() as u64;
            self.pack
                .push(id, BlobKind::Delta, &sealed, data.len(), base);
        } else {
            self.group.extend_from_slice(data);
            self.members.push((id, data.len()));
            if self.group.len() >= self.group_size {
                self.close_group()?;
            }
        }
        if self.pack.len() + self.group.len() + self.in_flight_bytes >= TARGET_SIZE {
            self.flush()?;
        }
        Ok(Extent::Chunk(hex::encode(&id)))
    }

    /// Hands the open group to the compression thread, and appends the results of older
    /// groups to the pack, keeping at most one group in flight besides this one (step 6).
    fn close_group(&mut self) -> Result<()> {
        if self.members.is_empty() {
            return Ok(());
        }
        self.in_flight_bytes += self.group.len();
        self.compressor.submit(std::mem::take(&mut self.group));
        self.in_flight.push_back(std::mem::take(&mut self.members));
        while self.in_flight.len() > 1 {
            self.append_oldest()?;
        }
        Ok(())
    }

    /// Appends the oldest group in flight to the pack: one zstd blob for the group, or
    /// one raw blob per chunk when it did not compress.
    fn append_oldest(&mut self) -> Result<()> {
        let Some(members) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let plain: usize = members.iter().map(|m| m.1).sum();
        self.in_flight_bytes -= plain;
        match self.compressor.next().at(self.repo.root())? {
            Encoded::Sealed(sealed) => {
                self.stats.stored_bytes += sealed.len() as u64;
                self.pack
                    .push_group(BlobKind::Zstd, &sealed, &members, [0; 32]);
            }
            Encoded::Raw(group) => {
                let mut start = 0;
                for &(id, len) in &members {
                    let sealed = self.repo.keys().seal(&group[start..start + len]);
                    self.stats.stored_bytes += sealed.len() as u64;
                    self.pack.push(id, BlobKind::Raw, &sealed, len, [0; 32]);
                    start += len;
                }
            }
        }
        Ok(())
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

    /// A zstd delta of a chunk against a similar stored chunk, and that chunk's id, when it
    /// is smaller than the chunk compressed alone (step 5).
    fn delta(&mut self, id: [u8; 32], data: &[u8]) -> Result<Option<(Vec<u8>, [u8; 32])>> {
        let config = self.repo.config();
        if !config.similarity.enabled || data.len() < MIN_DELTA {
            return Ok(None);
        }
        let level = config.compression.level;
        let root = self.repo.root();
        let sketch = sketch(data);
        self.sketches.push((id, sketch));
        let Some((base, base_data)) = self.similar_base(&sketch, config.similarity.threshold)?
        else {
            return Ok(None);
        };
        let delta = zstd::bulk::Compressor::with_dictionary(level, &base_data)
            .and_then(|mut c| c.compress(data))
            .at(root)?;
        let alone = zstd::bulk::compress(data, level)
            .at(root)?
            .len()
            .min(data.len());
        if delta.len() >= alone {
            return Ok(None);
        }
        // A delta chunk is never a base (invariant 4): forget its sketch.
        self.sketches.pop();
        self.stats.delta_chunks += 1;
        self.stats.delta_saved_bytes += (alone - delta.len()) as u64;
        Ok(Some((delta, base)))
    }

    /// A stored non-delta chunk at least `threshold` similar to `sketch`, and its
    /// plaintext (whose sketch is computed again here rather than kept in the index).
    fn similar_base(&self, sketch: &Sketch, threshold: f64) -> Result<Option<([u8; 32], Vec<u8>)>> {
        let mut tried = Vec::new();
        for feature in super_features(sketch) {
            let Some(base) = self.repo.index().similar(feature)? else {
                continue;
            };
            if tried.contains(&base) {
                continue;
            }
            tried.push(base);
            let Some(loc) = self.usable(&base)? else {
                continue;
            };
            if loc.entry.kind == BlobKind::Delta {
                continue;
            }
            let data = self.repo.read_located(&loc)?;
            if similarity(sketch, &crate::similarity::sketch(&data)) >= threshold {
                return Ok(Some((base, data)));
            }
        }
        Ok(None)
    }

    /// Writes the open pack (step 6).
    fn flush(&mut self) -> Result<()> {
        self.close_group()?;
        while !self.in_flight.is_empty() {
            self.append_oldest()?;
        }
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
