//! Read-only views: repository statistics and the difference between two snapshots.

use std::collections::BTreeMap;
use std::fs;

use serde::Serialize;

use crate::error::Result;
use crate::repo::Repository;
use crate::snapshot::{Node, NodeType, Snapshot};

/// Totals over a repository.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoStats {
    /// Snapshots.
    pub snapshots: usize,
    /// Pack files.
    pub packs: usize,
    /// Bytes of all packs: the repository's data size.
    pub pack_bytes: u64,
    /// Indexed chunks.
    pub chunks: usize,
    /// Plain bytes of the indexed chunks.
    pub chunk_bytes: u64,
    /// Logical bytes of all snapshots (what a restore of each would write, holes included).
    pub logical_bytes: u64,
    /// Chunks stored as deltas.
    pub delta_chunks: u64,
    /// Bytes saved by deltas beyond plain compression, over all backups.
    pub delta_saved_bytes: u64,
}

/// Computes repository statistics.
pub fn stats(repo: &Repository) -> Result<RepoStats> {
    let mut s = RepoStats::default();
    for (_, path) in repo.packs()? {
        s.packs += 1;
        s.pack_bytes += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    }
    for l in repo.index().all()? {
        s.chunks += 1;
        s.chunk_bytes += u64::from(l.entry.plain_len);
    }
    for snap in repo.snapshots()? {
        s.snapshots += 1;
        s.logical_bytes += snap.stats.bytes;
        s.delta_chunks += snap.stats.delta_chunks;
        s.delta_saved_bytes += snap.stats.delta_saved_bytes;
    }
    Ok(s)
}

/// How a path differs between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// Only in the second.
    Added,
    /// Only in the first.
    Removed,
    /// In both, with different content, type, mode or target.
    Modified,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The path.
    pub path: String,
    /// How it differs.
    pub kind: ChangeKind,
}

/// The paths that differ from snapshot `a` to snapshot `b`, sorted by path.
pub fn diff(a: &Snapshot, b: &Snapshot) -> Vec<Change> {
    fn nodes(s: &Snapshot) -> BTreeMap<String, &Node> {
        let mut out = BTreeMap::new();
        s.walk(&mut |path, node| {
            out.insert(path.to_string(), node);
        });
        out
    }
    let (na, nb) = (nodes(a), nodes(b));
    let same = |x: &Node, y: &Node| {
        x.kind == y.kind
            && x.mode == y.mode
            && x.target == y.target
            && (x.kind == NodeType::Dir || (x.size == y.size && x.content == y.content))
    };
    let mut out: Vec<Change> = Vec::new();
    for (path, x) in &na {
        match nb.get(path) {
            None => out.push(Change {
                path: path.clone(),
                kind: ChangeKind::Removed,
            }),
            Some(y) if !same(x, y) => out.push(Change {
                path: path.clone(),
                kind: ChangeKind::Modified,
            }),
            Some(_) => {}
        }
    }
    for path in nb.keys().filter(|p| !na.contains_key(*p)) {
        out.push(Change {
            path: path.clone(),
            kind: ChangeKind::Added,
        });
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    out
}
