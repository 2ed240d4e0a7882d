//! Similar chunks are stored as zstd deltas against a stored base; the saving is reported.

use std::fs;

use hypernix_backup::{Repository, SimilarityParams, check, restore};

use crate::data::{Rng, assert_same_tree};
use crate::{PASSWORD, backup_tree, options};

/// Backs up a file, then a copy with one byte changed every 200 KiB; returns the second
/// backup's stats after restoring and checking it.
fn edited_twice(enabled: bool) -> hypernix_backup::BackupStats {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let mut data = Rng::new(21).bytes(6 << 20);
    fs::write(src.join("disk"), &data).unwrap();
    let mut init = options();
    init.similarity = SimilarityParams {
        enabled,
        threshold: 0.7,
    };
    let repo = Repository::init(&dir.path().join("repo"), PASSWORD, &init).unwrap();
    backup_tree(&repo, "s", &[&src]);
    for i in (100_000..data.len()).step_by(200 << 10) {
        data[i] ^= 0x5a;
    }
    fs::write(src.join("disk"), &data).unwrap();
    let second = backup_tree(&repo, "s", &[&src]);
    let out = dir.path().join("out");
    restore(&repo, &second, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));
    assert!(check(&repo, true, &mut |_| {}).unwrap().is_ok());
    second.stats
}

#[test]
fn edited_chunks_become_small_deltas() {
    let with = edited_twice(true);
    assert!(
        with.new_chunks > 0 && with.delta_chunks == with.new_chunks,
        "{with:?}"
    );
    assert!(with.stored_bytes * 8 < with.new_bytes, "{with:?}");
    assert!(with.delta_saved_bytes > with.new_bytes / 2, "{with:?}");
    let without = edited_twice(false);
    assert_eq!(without.delta_chunks, 0);
    assert!(
        without.stored_bytes >= without.new_bytes,
        "random data does not compress"
    );
}
