//! Integrity: `check` (structure), `check --read-data` (every blob decrypted and hashed),
//! and `repair` (the index rebuilt from the pack headers).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;

use serde::Serialize;

use crate::error::Result;
use crate::hex;
use crate::pack::{read_file_header, read_header};
use crate::repo::Repository;

/// A file of a snapshot that a problem affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Affected {
    /// The snapshot id.
    pub snapshot: String,
    /// The file's path in the snapshot.
    pub path: String,
}

/// One problem found by `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What is wrong, naming the file.
    pub what: String,
    /// The pack concerned, if any (hex id).
    pub pack: Option<String>,
    /// Snapshots and files whose data is affected.
    pub affected: Vec<Affected>,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Packs looked at.
    pub packs: usize,
    /// Snapshots looked at.
    pub snapshots: usize,
    /// Chunks verified by reading (with `read_data`).
    pub chunks_read: usize,
    /// Problems; empty when the repository is sound.
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the repository; with `read_data`, also reads and verifies every blob.
pub fn check(
    repo: &Repository,
    read_data: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    repo.forget_groups();
    // Which snapshot files use each chunk.
    let mut users: HashMap<[u8; 32], BTreeSet<Affected>> = HashMap::new();
    for id in repo.snapshot_ids()? {
        match repo.load_snapshot(&id) {
            Ok(snapshot) => {
                for (chunk, path) in snapshot.chunk_refs() {
                    users.entry(chunk).or_default().insert(Affected {
                        snapshot: id.clone(),
                        path,
                    });
                }
            }
            Err(e) => report.problems.push(Problem {
                what: e.to_string(),
                pack: None,
                affected: vec![],
            }),
        }
        report.snapshots += 1;
    }
    let index: BTreeMap<[u8; 32], _> = repo
        .index()
        .all()?
        .into_iter()
        .map(|l| (l.entry.id, l))
        .collect();
    let affected_by = |ids: &mut dyn Iterator<Item = [u8; 32]>| -> Vec<Affected> {
        let set: BTreeSet<Affected> = ids
            .filter_map(|id| users.get(&id))
            .flatten()
            .cloned()
            .collect();
        set.into_iter().collect()
    };
    let packs = repo.packs()?;
    let on_disk: BTreeSet<[u8; 32]> = packs.iter().map(|(id, _)| *id).collect();
    report.packs = packs.len();
    for (pack, path) in &packs {
        let bad = |what: String, report: &mut CheckReport| {
            let mut ids = index
                .values()
                .filter(|l| l.pack == *pack)
                .map(|l| l.entry.id);
            let affected = affected_by(&mut ids);
            report.problems.push(Problem {
                what,
                pack: Some(hex::encode(pack)),
                affected,
            });
        };
        if !read_data {
            match read_file_header(path, repo.keys()) {
                Ok(entries) => progress(entries.iter().map(|e| u64::from(e.stored_len)).sum()),
                Err(e) => bad(e.to_string(), &mut report),
            }
            continue;
        }
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                bad(format!("pack {}: {e}", path.display()), &mut report);
                continue;
            }
        };
        progress(bytes.len() as u64);
        if *blake3::hash(&bytes).as_bytes() != *pack {
            bad(
                format!(
                    "pack {} does not match its id (its content changed)",
                    path.display()
                ),
                &mut report,
            );
            continue;
        }
        let entries = match read_header(&bytes, repo.keys(), path) {
            Ok(entries) => entries,
            Err(e) => {
                bad(e.to_string(), &mut report);
                continue;
            }
        };
        for entry in entries {
            let loc = crate::index::Location { pack: *pack, entry };
            report.chunks_read += 1;
            if let Err(e) = repo.read_located(&loc) {
                let affected = affected_by(&mut std::iter::once(entry.id));
                report.problems.push(Problem {
                    what: e.to_string(),
                    pack: Some(hex::encode(pack)),
                    affected,
                });
            }
        }
    }
    for (chunk, affected) in &users {
        let missing = match index.get(chunk) {
            None => Some("is not in the index (run `hypernix backup repair`)"),
            Some(l) if !on_disk.contains(&l.pack) => Some("is in a pack that no longer exists"),
            Some(_) => None,
        };
        if let Some(why) = missing {
            report.problems.push(Problem {
                what: format!("chunk {} {why}", hex::encode(chunk)),
                pack: index.get(chunk).map(|l| hex::encode(&l.pack)),
                affected: affected.iter().cloned().collect(),
            });
        }
    }
    Ok(report)
}

/// What `repair` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Packs indexed.
    pub packs: usize,
    /// Chunks indexed.
    pub chunks: usize,
    /// Packs skipped because their header could not be read (with the reason).
    pub skipped: Vec<String>,
}

/// Rebuilds the index from the pack headers.
pub fn repair(repo: &mut Repository) -> Result<RepairReport> {
    repo.reset_index()?;
    let mut report = RepairReport::default();
    for (pack, path) in repo.packs()? {
        let entries = fs::read(&path)
            .map_err(|e| crate::error::Error::Io {
                path: path.clone(),
                source: e,
            })
            .and_then(|bytes| read_header(&bytes, repo.keys(), &path));
        match entries {
            Ok(entries) => {
                repo.index().insert_pack(&pack, &entries, &[])?;
                report.packs += 1;
                report.chunks += entries.len();
            }
            Err(e) => report.skipped.push(e.to_string()),
        }
    }
    Ok(report)
}
