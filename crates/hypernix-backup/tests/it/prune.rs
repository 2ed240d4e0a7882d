//! `prune`: retention plus two-phase garbage collection, safe for a backup that reuses a
//! chunk of a marked pack.

use std::fs;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use hypernix_backup::retention::{GfsCounts, Policy};
use hypernix_backup::{PruneOptions, check, prune, restore};

use crate::data::{Rng, assert_same_tree};
use crate::{backup_tree, init};

fn keep_last_one(hours_later: i64, dry_run: bool) -> PruneOptions {
    PruneOptions {
        policy: Policy::Gfs(GfsCounts {
            last: Some(1),
            ..GfsCounts::default()
        }),
        now: Utc::now() + TimeDelta::hours(hours_later),
        dry_run,
        grace: Duration::from_secs(3_600),
    }
}

#[test]
fn prune_marks_then_deletes_and_spares_reused_packs() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    let old = Rng::new(1).bytes(2 << 20);
    fs::write(src.join("f"), &old).unwrap();
    let repo = init(dir.path());
    backup_tree(&repo, "s", &[&src]);
    fs::write(src.join("f"), Rng::new(2).bytes(2 << 20)).unwrap();
    backup_tree(&repo, "s", &[&src]);
    assert_eq!(repo.packs().unwrap().len(), 2);

    let dry = prune(&repo, &keep_last_one(2, true)).unwrap();
    assert_eq!(dry.snapshots.iter().filter(|v| !v.keep).count(), 1);
    assert_eq!(dry.marked.len(), 1);
    assert_eq!(
        repo.snapshot_ids().unwrap().len(),
        2,
        "dry run changes nothing"
    );
    assert_eq!(
        fs::read_dir(repo.root().join("garbage")).unwrap().count(),
        0
    );

    // Too young to be marked: it could belong to a running backup.
    let now = prune(&repo, &keep_last_one(0, false)).unwrap();
    assert!(now.marked.is_empty(), "{now:?}");
    assert_eq!(repo.snapshot_ids().unwrap().len(), 1);

    let marked = prune(&repo, &keep_last_one(2, false)).unwrap();
    assert_eq!(marked.marked.len(), 1, "{marked:?}");
    assert!(marked.deleted.is_empty());

    // A backup reuses the marked pack's chunks; the sweep must spare it.
    fs::write(src.join("f"), &old).unwrap();
    let reused = backup_tree(&repo, "s", &[&src]);
    assert_eq!(reused.stats.new_bytes, 0);
    let swept = prune(&repo, &keep_last_one(4, false)).unwrap();
    assert!(swept.deleted.is_empty(), "{swept:?}");
    assert_eq!(swept.unmarked, marked.marked);
    // The same run forgets the second snapshot and marks its pack.
    assert_eq!(swept.marked.len(), 1, "{swept:?}");
    let out = dir.path().join("out");
    restore(&repo, &reused, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));

    // Two hours after the mark, past the grace period, that pack is deleted.
    let deleted = prune(&repo, &keep_last_one(6, false)).unwrap();
    assert_eq!(deleted.deleted.len(), 1, "{deleted:?}");
    assert_eq!(repo.packs().unwrap().len(), 1);
    assert!(check(&repo, true, &mut |_| {}).unwrap().is_ok());
}
