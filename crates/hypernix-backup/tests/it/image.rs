//! Image snapshots from a block source: a full read, then incrementals that read only the
//! changed ranges (widened to whole chunks) and reuse the rest of the parent.

use hypernix_backup::{
    BlockSource, ChunkerParams, Error, ImageOptions, InitOptions, Repository, backup_image,
};

use crate::{PASSWORD, options};

/// A disk in memory.
struct Memory(Vec<u8>);

impl BlockSource for Memory {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let at = offset as usize;
        buf.copy_from_slice(&self.0[at..at + buf.len()]);
        Ok(())
    }
}

/// Deterministic noise (xorshift), incompressible enough to make real chunks.
fn fill(buf: &mut [u8], mut seed: u64) {
    for b in buf {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
}

fn small_chunks() -> InitOptions {
    InitOptions {
        chunker: ChunkerParams {
            min: 64 << 10,
            avg: 256 << 10,
            max: 1 << 20,
        },
        ..options()
    }
}

fn restored(repo: &Repository, id: &str, dir: &std::path::Path) -> Vec<u8> {
    let snap = repo.find_snapshot(id).unwrap();
    let target = dir.join(format!("restored-{id}"));
    hypernix_backup::restore(repo, &snap, &target, &mut |_| {}).unwrap();
    std::fs::read(target).unwrap()
}

const MIB: usize = 1 << 20;

#[test]
fn incremental_image_reads_only_changed_chunks_and_restores_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(&dir.path().join("repo"), PASSWORD, &small_chunks()).unwrap();
    let mut disk = Memory(vec![0; 24 * MIB]);
    fill(&mut disk.0[2 * MIB..10 * MIB], 1);
    fill(&mut disk.0[20 * MIB..21 * MIB], 2);
    let full = ImageOptions {
        source: "vm/disk0".into(),
        path: "vm/disk0".into(),
        parent: None,
        changed: vec![
            (2 * MIB as u64, 10 * MIB as u64),
            (20 * MIB as u64, 21 * MIB as u64),
        ],
        bitmap: Some("b1".into()),
    };
    let first = backup_image(&repo, &full, &mut disk, &mut |_| {}).unwrap();
    assert_eq!(
        first.stats.bytes,
        9 * MIB as u64,
        "only the allocated ranges are read"
    );
    assert_eq!(first.stats.reused_bytes, 15 * MIB as u64);
    assert_eq!(restored(&repo, &first.id, dir.path()), disk.0);

    // A 4 KiB write inside data, 1 MiB into a hole, and a range zeroed.
    fill(&mut disk.0[5 * MIB + 100..5 * MIB + 4196], 3);
    fill(&mut disk.0[15 * MIB..16 * MIB], 4);
    disk.0[20 * MIB..20 * MIB + MIB / 2].fill(0);
    let changed = vec![
        (5 * MIB as u64 + 100, 5 * MIB as u64 + 4196),
        (15 * MIB as u64, 16 * MIB as u64),
        (20 * MIB as u64, 20 * MIB as u64 + MIB as u64 / 2),
    ];
    let incremental = ImageOptions {
        parent: Some(first.clone()),
        changed,
        bitmap: Some("b2".into()),
        ..full.clone()
    };
    let second = backup_image(&repo, &incremental, &mut disk, &mut |_| {}).unwrap();
    assert_eq!(second.parent.as_deref(), Some(first.id.as_str()));
    assert_eq!(second.bitmap.as_deref(), Some("b2"));
    assert_eq!(
        second.stats.bytes + second.stats.reused_bytes,
        24 * MIB as u64
    );
    // Each changed range widens by at most one chunk (1 MiB) on either side.
    let bound = (4096 + MIB + MIB / 2 + 6 * MIB) as u64;
    assert!(
        second.stats.bytes <= bound,
        "read {} bytes for ~1.5 MiB of changes",
        second.stats.bytes
    );
    assert!(second.stats.new_chunks >= 2, "{:?}", second.stats);
    assert_eq!(restored(&repo, &second.id, dir.path()), disk.0);
    // The parent still restores as it was.
    let mut before = vec![0; 24 * MIB];
    fill(&mut before[2 * MIB..10 * MIB], 1);
    fill(&mut before[20 * MIB..21 * MIB], 2);
    assert_eq!(restored(&repo, &first.id, dir.path()), before);

    // Nothing changed: nothing is read.
    let third = backup_image(
        &repo,
        &ImageOptions {
            parent: Some(second.clone()),
            changed: vec![],
            ..full.clone()
        },
        &mut disk,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(third.stats.bytes, 0);
    assert_eq!(restored(&repo, &third.id, dir.path()), disk.0);
    assert!(
        hypernix_backup::check(&repo, true, &mut |_| {})
            .unwrap()
            .problems
            .is_empty()
    );
}

#[test]
fn a_parent_of_another_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repository::init(&dir.path().join("repo"), PASSWORD, &small_chunks()).unwrap();
    let mut disk = Memory(vec![7; 2 * MIB]);
    let options = ImageOptions {
        source: "vm/disk0".into(),
        path: "vm/disk0".into(),
        parent: None,
        changed: vec![(0, 2 * MIB as u64)],
        bitmap: None,
    };
    let first = backup_image(&repo, &options, &mut disk, &mut |_| {}).unwrap();
    let mut grown = Memory(vec![7; 3 * MIB]);
    let err = backup_image(
        &repo,
        &ImageOptions {
            parent: Some(first),
            ..options
        },
        &mut grown,
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::Parent { .. }), "{err}");
    assert!(err.to_string().contains("take a full backup"), "{err}");
}
