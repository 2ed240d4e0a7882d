//! Version 2's groups: new chunks compressed together in one blob, and version 1
//! repositories still read and written in their own layout.

use std::fs;

use hypernix_backup::pack::read_file_header;
use hypernix_backup::{Repository, check, restore};

use crate::data::{Rng, assert_same_tree};
use crate::{PASSWORD, backup_tree, init};

/// `n` bytes of log-like text: compressible, and different in every chunk.
fn text(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "GET",
        "POST",
        "/index.html",
        "200",
        "404",
        "nginx",
        "ok",
        "-",
    ];
    let mut out = Vec::with_capacity(n + 64);
    while out.len() < n {
        let line = format!(
            "{} {} {} {}\n",
            rng.next() % 100_000,
            WORDS[(rng.next() % 8) as usize],
            WORDS[(rng.next() % 8) as usize],
            rng.next() % 1000
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn small_chunks_share_a_group_and_a_flipped_byte_names_every_file_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut rng = Rng::new(6);
    fs::write(src.join("a.log"), text(&mut rng, 300 << 10)).unwrap();
    fs::write(src.join("b.log"), text(&mut rng, 300 << 10)).unwrap();
    let repo = init(dir.path());
    let snap = backup_tree(&repo, "logs", &[&src]);
    let packs = repo.packs().unwrap();
    assert_eq!(packs.len(), 1);
    let (_, path) = &packs[0];
    let entries = read_file_header(path, repo.keys()).unwrap();
    assert!(entries.len() > 4, "16 KiB chunks: {}", entries.len());
    assert!(
        entries.iter().all(|e| e.offset == entries[0].offset),
        "600 KiB of new chunks make one group: {entries:?}"
    );
    assert!(entries.iter().any(|e| e.start > 0));
    let out = dir.path().join("out");
    restore(&repo, &snap, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));
    assert!(check(&repo, true, &mut |_| {}).unwrap().is_ok());

    let mut bytes = fs::read(path).unwrap();
    bytes[entries[0].offset as usize + 100] ^= 0x40;
    fs::write(path, &bytes).unwrap();
    // The same process: the group decoded above must not hide the damage.
    let report = check(&repo, true, &mut |_| {}).unwrap();
    for file in ["/src/a.log", "/src/b.log"] {
        assert!(
            report
                .problems
                .iter()
                .flat_map(|p| &p.affected)
                .any(|a| a.snapshot == snap.id && a.path.ends_with(file)),
            "{file} is named: {report:?}"
        );
    }
}

#[test]
fn version_1_repository_is_read_and_written_in_its_layout() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    crate::data::tree(&src, 3);
    fs::write(src.join("a.log"), text(&mut Rng::new(1), 200 << 10)).unwrap();
    drop(init(dir.path()));
    let root = dir.path().join("repo");
    let config = fs::read_to_string(root.join("config")).unwrap();
    fs::write(
        root.join("config"),
        config.replace("\"version\": 2", "\"version\": 1"),
    )
    .unwrap();
    let repo = Repository::open(&root, PASSWORD).unwrap();
    let snap = backup_tree(&repo, "files", &[&src]);
    assert_eq!(snap.version, 1);
    drop(repo);
    let reopened = Repository::open(&root, PASSWORD).unwrap();
    for (_, path) in reopened.packs().unwrap() {
        assert_eq!(&fs::read(&path).unwrap()[..8], b"HNXPACK1");
        let entries = read_file_header(&path, reopened.keys()).unwrap();
        assert!(entries.iter().all(|e| e.start == 0), "one chunk per blob");
    }
    let loaded = reopened.find_snapshot("latest").unwrap();
    let out = dir.path().join("out");
    restore(&reopened, &loaded, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));
    assert!(check(&reopened, true, &mut |_| {}).unwrap().is_ok());
}
