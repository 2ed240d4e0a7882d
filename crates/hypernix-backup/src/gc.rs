//! `prune`: forget the snapshots a retention policy drops, then collect unreferenced packs
//! in two phases (docs/backup-format.md, "Garbage collection beside a concurrent backup").
//!
//! 1. Group snapshots by source and apply the policy to each group; forget the dropped ones.
//! 2. Collect the chunks the remaining snapshots reference (and the bases of their deltas).
//! 3. Sweep: a marked pack that became referenced is unmarked; one marked longer than the
//!    grace period ago, still unreferenced, with no live backup older than its mark, is
//!    deleted with its index entries.
//! 4. Mark: an unreferenced, unmarked pack older than the grace period gets `garbage/PACKID`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::hex;
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::retention::{Policy, select};
use crate::write::hostname;

/// How `prune` runs.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Which snapshots to keep.
    pub policy: Policy,
    /// The time the policy is applied at.
    pub now: DateTime<Utc>,
    /// Report only; change nothing.
    pub dry_run: bool,
    /// How long a pack stays marked before deletion, and how old an unreferenced pack must
    /// be before it is marked.
    pub grace: Duration,
}

/// One snapshot's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotVerdict {
    /// The snapshot id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
    /// Kept or forgotten.
    pub keep: bool,
    /// Why.
    pub reason: String,
}

/// What `prune` did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Every snapshot's verdict.
    pub snapshots: Vec<SnapshotVerdict>,
    /// Packs newly marked unreferenced.
    pub marked: Vec<String>,
    /// Marked packs deleted.
    pub deleted: Vec<String>,
    /// Marked packs referenced again, so unmarked.
    pub unmarked: Vec<String>,
    /// Bytes of the deleted packs.
    pub deleted_bytes: u64,
}

/// A running backup's lock file.
#[derive(Debug, Deserialize)]
struct LockInfo {
    host: String,
    pid: u32,
    start: DateTime<Utc>,
}

/// Applies the policy and collects garbage.
pub fn prune(repo: &Repository, options: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    let snapshots = repo.snapshots()?;
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in snapshots.iter().enumerate() {
        groups.entry(&s.source).or_default().push(i);
    }
    let mut keep = vec![true; snapshots.len()];
    for members in groups.values() {
        let times: Vec<_> = members.iter().map(|&i| snapshots[i].time).collect();
        for d in select(&times, options.now, &options.policy) {
            let s = &snapshots[members[d.index]];
            keep[members[d.index]] = d.keep;
            report.snapshots.push(SnapshotVerdict {
                id: s.id.clone(),
                source: s.source.clone(),
                time: s.time,
                keep: d.keep,
                reason: d.reason,
            });
        }
    }
    report.snapshots.sort_by_key(|v| v.time);
    if !options.dry_run {
        for (s, _) in snapshots.iter().zip(&keep).filter(|(_, k)| !**k) {
            repo.forget_snapshot(&s.id)?;
        }
    }
    let used = used_packs(
        repo,
        snapshots
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(s, _)| s),
    )?;
    sweep(repo, options, &used, &mut report)?;
    mark(repo, options, &used, &mut report)?;
    Ok(report)
}

/// The packs holding a chunk that a kept snapshot references, or the base of one.
fn used_packs<'a>(
    repo: &Repository,
    kept: impl Iterator<Item = &'a crate::Snapshot>,
) -> Result<HashSet<[u8; 32]>> {
    let mut chunks = HashSet::new();
    for s in kept {
        chunks.extend(s.chunk_refs().into_iter().map(|(id, _)| id));
    }
    let index = repo.index().all()?;
    let bases: Vec<[u8; 32]> = index
        .iter()
        .filter(|l| l.entry.kind == BlobKind::Delta && chunks.contains(&l.entry.id))
        .map(|l| l.entry.base)
        .collect();
    chunks.extend(bases);
    Ok(index
        .iter()
        .filter(|l| chunks.contains(&l.entry.id))
        .map(|l| l.pack)
        .collect())
}

/// Phase two: delete or unmark marked packs.
fn sweep(
    repo: &Repository,
    options: &PruneOptions,
    used: &HashSet<[u8; 32]>,
    report: &mut PruneReport,
) -> Result<()> {
    let dir = repo.root().join("garbage");
    let locks = live_locks(repo, options.dry_run)?;
    let mut doomed = Vec::new();
    for entry in fs::read_dir(&dir).at(&dir)? {
        let path = entry.at(&dir)?.path();
        let Some(pack) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(hex::decode32)
        else {
            continue;
        };
        let name = hex::encode(&pack);
        if used.contains(&pack) {
            report.unmarked.push(name);
            if !options.dry_run {
                fs::remove_file(&path).at(&path)?;
            }
            continue;
        }
        // An unreadable mark counts as made now: it only delays deletion.
        let marked_at = fs::read_to_string(&path)
            .ok()
            .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
            .map_or(options.now, |t| t.with_timezone(&Utc));
        let expired = (options.now - marked_at)
            .to_std()
            .is_ok_and(|age| age >= options.grace);
        if !expired || locks.iter().any(|start| *start <= marked_at) {
            continue;
        }
        let pack_path = repo.pack_path(&pack);
        report.deleted_bytes += fs::metadata(&pack_path).map(|m| m.len()).unwrap_or(0);
        report.deleted.push(name);
        if !options.dry_run {
            match fs::remove_file(&pack_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&pack_path),
                _ => {}
            }
            fs::remove_file(&path).at(&path)?;
        }
        doomed.push(pack);
    }
    if !options.dry_run && !doomed.is_empty() {
        repo.index().remove_packs(&doomed)?;
    }
    Ok(())
}

/// Phase one: mark unreferenced packs older than the grace period.
fn mark(
    repo: &Repository,
    options: &PruneOptions,
    used: &HashSet<[u8; 32]>,
    report: &mut PruneReport,
) -> Result<()> {
    for (pack, path) in repo.packs()? {
        let name = hex::encode(&pack);
        let mark = repo.root().join("garbage").join(&name);
        if used.contains(&pack) || mark.exists() || report.deleted.contains(&name) {
            continue;
        }
        let modified: DateTime<Utc> = fs::metadata(&path)
            .and_then(|m| m.modified())
            .at(&path)?
            .into();
        if (options.now - modified)
            .to_std()
            .is_ok_and(|age| age >= options.grace)
        {
            report.marked.push(name);
            if !options.dry_run {
                repo.write_file(&mark, options.now.to_rfc3339().as_bytes())?;
            }
        }
    }
    Ok(())
}

/// Start times of backups that may still be running; stale locks of this host are removed.
fn live_locks(repo: &Repository, dry_run: bool) -> Result<Vec<DateTime<Utc>>> {
    let dir = repo.root().join("locks");
    let me = hostname();
    let mut starts = Vec::new();
    for entry in fs::read_dir(&dir).at(&dir)? {
        let path = entry.at(&dir)?.path();
        let Some(info) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<LockInfo>(&b).ok())
        else {
            continue;
        };
        if info.host == me && !Path::new(&format!("/proc/{}", info.pid)).exists() {
            if !dry_run {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        starts.push(info.start);
    }
    Ok(starts)
}
