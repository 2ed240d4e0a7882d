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
fn prune_marks_then_deletes_after_the_grace_period() {
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

    // A backup does not reuse chunks of a marked pack: it stores them again.
    fs::write(src.join("f"), &old).unwrap();
    let again = backup_tree(&repo, "s", &[&src]);
    assert_eq!(again.stats.new_bytes, 2 << 20, "{:?}", again.stats);

    // Past the grace period the marked pack goes; the second snapshot's pack is marked.
    let swept = prune(&repo, &keep_last_one(4, false)).unwrap();
    assert_eq!(swept.deleted, marked.marked, "{swept:?}");
    assert_eq!(swept.marked.len(), 1, "{swept:?}");
    let out = dir.path().join("out");
    restore(&repo, &again, &out, &mut |_| {}).unwrap();
    assert_same_tree(&src, &out.join("src"));
    assert!(check(&repo, true, &mut |_| {}).unwrap().is_ok());

    // A backup of another host that began before that mark, still running: no deletion.
    let lock = repo.root().join("locks/elsewhere");
    let started = (Utc::now() + TimeDelta::hours(3)).to_rfc3339();
    let body = format!(r#"{{"host":"another-host","pid":1,"start":"{started}"}}"#);
    fs::write(&lock, body).unwrap();
    let blocked = prune(&repo, &keep_last_one(6, false)).unwrap();
    assert!(blocked.deleted.is_empty(), "{blocked:?}");
    fs::remove_file(&lock).unwrap();
    let deleted = prune(&repo, &keep_last_one(6, false)).unwrap();
    assert_eq!(deleted.deleted, swept.marked, "{deleted:?}");
    assert_eq!(repo.packs().unwrap().len(), 1);
    assert!(check(&repo, true, &mut |_| {}).unwrap().is_ok());
}

#[test]
fn a_marked_pack_that_is_referenced_again_is_unmarked() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), Rng::new(4).bytes(1 << 20)).unwrap();
    let repo = init(dir.path());
    backup_tree(&repo, "s", &[&src]);
    // As a prune elsewhere might have marked it while this backup was running.
    let (pack, _) = repo.packs().unwrap()[0];
    let name = hypernix_backup::hex::encode(&pack);
    fs::write(
        repo.root().join("garbage").join(&name),
        Utc::now().to_rfc3339(),
    )
    .unwrap();
    let report = prune(&repo, &keep_last_one(48, false)).unwrap();
    assert_eq!(report.unmarked, vec![name]);
    assert!(report.deleted.is_empty());
    assert_eq!(
        fs::read_dir(repo.root().join("garbage")).unwrap().count(),
        0
    );
}
