//! Snapshots: sealed JSON documents describing one backup as a tree of nodes whose contents
//! are chunk ids and holes.

use std::fs;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::random;
use crate::error::{Error, IoContext, Result, corrupt};
use crate::hex;
use crate::repo::{Repository, VERSION, to_json};

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// A tree of files.
    Tree,
    /// One disk image or block device.
    Image,
}

/// The type of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeType {
    /// A regular file, image or block device.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One piece of a file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Extent {
    /// A stored chunk, by id (hex).
    Chunk(String),
    /// A run of zero bytes, by length.
    Hole(u64),
}

/// A file, directory or link in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The name (the full source path for top-level nodes).
    pub name: String,
    /// The type.
    #[serde(rename = "type")]
    pub kind: NodeType,
    /// Unix permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Bytes of content.
    pub size: u64,
    /// Content, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Extent>,
    /// A link's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A directory's entries, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

impl Node {
    /// Calls `f` with every node and its path below `prefix`.
    pub fn walk<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Node)) {
        let path = if prefix.is_empty() {
            self.name.clone()
        } else {
            format!("{prefix}/{}", self.name)
        };
        f(&path, self);
        for child in &self.children {
            child.walk(&path, f);
        }
    }
}

/// Counts kept with a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupStats {
    /// Files read.
    pub files: u64,
    /// Logical bytes read (holes included).
    pub bytes: u64,
    /// Bytes recorded as holes.
    pub hole_bytes: u64,
    /// Chunks seen.
    pub chunks: u64,
    /// Chunks already stored (deduplicated).
    pub dedup_chunks: u64,
    /// Chunks newly stored.
    pub new_chunks: u64,
    /// Plain bytes of the new chunks.
    pub new_bytes: u64,
    /// Bytes written to packs for the new chunks.
    pub stored_bytes: u64,
    /// New chunks stored as deltas against a similar chunk.
    pub delta_chunks: u64,
    /// Bytes saved by deltas beyond what plain compression would store.
    pub delta_saved_bytes: u64,
    /// Bytes taken over from the parent snapshot without being read (incremental images).
    #[serde(default)]
    pub reused_bytes: u64,
}

/// One backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// The id (the file name; not part of the sealed document's meaning).
    #[serde(default)]
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// The host it was taken on.
    pub host: String,
    /// The source's name.
    pub source: String,
    /// Tree or image.
    pub kind: SnapshotKind,
    /// The source paths.
    pub paths: Vec<String>,
    /// Top-level nodes, one per source path.
    pub roots: Vec<Node>,
    /// What the backup did.
    pub stats: BackupStats,
    /// The snapshot an incremental image was built from (its unchanged extents reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The QEMU dirty bitmap that records the writes since this snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitmap: Option<String>,
}

impl Snapshot {
    /// Calls `f` with every node and its path.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&str, &'a Node)) {
        for root in &self.roots {
            root.walk("", f);
        }
    }

    /// Every chunk id the snapshot references, with the path of the file that uses it.
    pub fn chunk_refs(&self) -> Vec<([u8; 32], String)> {
        let mut out = Vec::new();
        self.walk(&mut |path, node| {
            for extent in &node.content {
                if let Extent::Chunk(id) = extent
                    && let Some(id) = hex::decode32(id)
                {
                    out.push((id, path.to_string()));
                }
            }
        });
        out
    }
}

/// The first bytes of a zstd frame (a version 2 snapshot; version 1's JSON starts with `{`).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Repository {
    /// Writes a snapshot and returns its new id.
    pub fn save_snapshot(&self, snapshot: &mut Snapshot) -> Result<String> {
        snapshot.id = hex::encode(&random::<16>());
        snapshot.version = self.config().version;
        let json = to_json(snapshot);
        let plain = if snapshot.version >= 2 {
            zstd::bulk::compress(&json, 3).at(self.root())?
        } else {
            json
        };
        let sealed = self.keys().seal(&plain);
        let path = self.root().join("snapshots").join(&snapshot.id);
        self.write_file(&path, &sealed)?;
        Ok(snapshot.id.clone())
    }

    /// Reads snapshot `id` (full id).
    pub fn load_snapshot(&self, id: &str) -> Result<Snapshot> {
        let path = self.root().join("snapshots").join(id);
        let sealed = fs::read(&path).at(&path)?;
        let mut plain = self.keys().open(&sealed, &path)?;
        if plain.starts_with(&ZSTD_MAGIC) {
            plain = zstd::stream::decode_all(plain.as_slice())
                .map_err(|e| corrupt(&path, format!("zstd: {e}")))?;
        }
        let mut snapshot: Snapshot = serde_json::from_slice(&plain)
            .map_err(|e| corrupt(&path, format!("not a snapshot: {e}")))?;
        if !(1..=VERSION).contains(&snapshot.version) {
            return Err(Error::Version {
                path,
                found: snapshot.version,
                known: VERSION,
            });
        }
        snapshot.id = id.to_string();
        Ok(snapshot)
    }

    /// The ids of all snapshots.
    pub fn snapshot_ids(&self) -> Result<Vec<String>> {
        let dir = self.root().join("snapshots");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let name = entry.at(&dir)?.file_name();
            if let Some(name) = name.to_str().filter(|n| hex::decode(n).is_some()) {
                ids.push(name.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// All snapshots, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>> {
        let mut all = self
            .snapshot_ids()?
            .iter()
            .map(|id| self.load_snapshot(id))
            .collect::<Result<Vec<_>>>()?;
        all.sort_by_key(|s| s.time);
        Ok(all)
    }

    /// The snapshot whose id starts with `prefix` (or the newest for `latest`).
    pub fn find_snapshot(&self, prefix: &str) -> Result<Snapshot> {
        if prefix == "latest" {
            return self
                .snapshots()?
                .pop()
                .ok_or_else(|| Error::NoSuchSnapshot(prefix.into()));
        }
        let ids: Vec<String> = self
            .snapshot_ids()?
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .collect();
        match ids.as_slice() {
            [id] if !prefix.is_empty() => self.load_snapshot(id),
            _ => Err(Error::NoSuchSnapshot(prefix.into())),
        }
    }

    /// Deletes snapshot `id`.
    pub fn forget_snapshot(&self, id: &str) -> Result<()> {
        let path = self.root().join("snapshots").join(id);
        fs::remove_file(&path).at(&path)
    }
}
