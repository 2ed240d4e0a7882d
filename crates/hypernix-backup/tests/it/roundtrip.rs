//! Backups restore bit-identical with holes kept; dedup across sources; incrementals.

use std::fs;
use std::os::unix::fs::FileExt;

use hypernix_backup::{BackupOptions, Repository, SnapshotKind, backup, check, restore};

use crate::data::{Rng, allocated, assert_same_tree, sparse_file, tree};
use crate::{PASSWORD, backup_tree, init};

#[test]
fn tree_restores_bit_identical_and_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, 1);
    let repo = init(dir.path());
    let snap = backup_tree(&repo, "files", &[&src]);
    assert!(snap.stats.hole_bytes >= 20 << 20, "{:?}", snap.stats);
    drop(repo);

    let reopened = Repository::open(&dir.path().join("repo"), PASSWORD).unwrap();
    let loaded = reopened.find_snapshot(&snap.id[..8]).unwrap();
    let out = dir.path().join("out");
    restore(&reopened, &loaded, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));
    let sparse = out.join("src/sparse.img");
    assert!(
        allocated(&sparse) <= 4 << 20,
        "restored sparse file allocates {}",
        allocated(&sparse)
    );
    assert!(check(&reopened, true, &mut |_| {}).unwrap().is_ok());
}

#[test]
fn disk_image_of_64_mib_restores_with_holes() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let mut rng = Rng::new(7);
    let islands = [
        (0, 65_536),
        (5 << 20, 1 << 20),
        (31 << 20, 3_000_000),
        ((64 << 20) - 4096, 4096),
    ];
    sparse_file(&image, 64 << 20, &islands, &mut rng);
    let repo = init(dir.path());
    let options = BackupOptions {
        source: "vm-disk".into(),
        kind: SnapshotKind::Image,
        paths: vec![image.clone()],
    };
    let snap = backup(&repo, &options, &mut |_| {}).unwrap();
    let out = dir.path().join("restored.img");
    restore(&repo, &snap, &out, &mut |_| {}).unwrap();
    assert!(fs::read(&image).unwrap() == fs::read(&out).unwrap());
    assert_eq!(fs::metadata(&out).unwrap().len(), 64 << 20);
    assert!(
        allocated(&out) <= 12 << 20,
        "restored image allocates {}",
        allocated(&out)
    );
}

#[test]
fn two_sources_share_one_dedup_domain() {
    let dir = tempfile::tempdir().unwrap();
    let shared = Rng::new(3).bytes(6 << 20);
    for name in ["a", "b"] {
        fs::create_dir_all(dir.path().join(name)).unwrap();
        fs::write(dir.path().join(name).join("big"), &shared).unwrap();
    }
    let repo = init(dir.path());
    let first = backup_tree(&repo, "a", &[&dir.path().join("a")]);
    let second = backup_tree(&repo, "b", &[&dir.path().join("b")]);
    assert!(first.stats.new_bytes >= 6 << 20);
    assert_eq!(second.stats.new_bytes, 0, "{:?}", second.stats);
    assert_eq!(second.stats.dedup_chunks, second.stats.chunks);
}

#[test]
fn incremental_backup_stores_little() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let path = src.join("disk");
    fs::write(&path, Rng::new(5).bytes(32 << 20)).unwrap();
    let repo = init(dir.path());
    let first = backup_tree(&repo, "s", &[&src]);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"changed!", 17 << 20).unwrap();
    let second = backup_tree(&repo, "s", &[&src]);
    assert!(
        second.stats.new_bytes * 4 < first.stats.new_bytes,
        "second backup stored {} of {}",
        second.stats.new_bytes,
        first.stats.new_bytes
    );
    let out = dir.path().join("out");
    restore(&repo, &second, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));
}
