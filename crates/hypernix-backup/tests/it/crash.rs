//! kill -9 during a backup, at random points: `check` passes and the next backup completes.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use hypernix_backup::{Repository, check};

use crate::data::{Rng, tree};
use crate::{PASSWORD, backup_tree, init};

/// How many times a backup is killed.
const KILLS: u64 = 20;

/// The child side: backs up `HNX_CRASH_SRC` into `HNX_CRASH_REPO` until killed.
#[test]
#[ignore = "helper: run as a child process by kill_9_during_backup_leaves_a_sound_repository"]
fn crash_child() {
    let (Ok(repo), Ok(src)) = (
        std::env::var("HNX_CRASH_REPO"),
        std::env::var("HNX_CRASH_SRC"),
    ) else {
        panic!("run only by kill_9_during_backup_leaves_a_sound_repository");
    };
    let repo = Repository::open(&PathBuf::from(repo), PASSWORD).unwrap();
    loop {
        backup_tree(&repo, "crash", &[&PathBuf::from(&src)]);
    }
}

#[test]
fn kill_9_during_backup_leaves_a_sound_repository() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, 11);
    let repo_path = dir.path().join("repo");
    drop(init(dir.path()));
    let mut rng = Rng::new(42);
    for round in 0..KILLS {
        // A fresh file each round, so every backup writes new packs.
        std::fs::write(src.join(format!("round-{round}")), rng.bytes(1 << 20)).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash::crash_child", "--ignored", "--nocapture"])
            .env("HNX_CRASH_REPO", &repo_path)
            .env("HNX_CRASH_SRC", &src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 900));
        child.kill().unwrap();
        child.wait().unwrap();
        let repo = Repository::open(&repo_path, PASSWORD).unwrap();
        let report = check(&repo, false, &mut |_| {}).unwrap();
        assert!(report.is_ok(), "round {round}: {report:?}");
    }
    // Each kill during a backup leaves its lock behind: proof the kills hit backups.
    let stale_locks = std::fs::read_dir(repo_path.join("locks")).unwrap().count() as u64;
    assert!(
        stale_locks >= KILLS / 2,
        "only {stale_locks} kills hit a running backup"
    );
    let repo = Repository::open(&repo_path, PASSWORD).unwrap();
    let snap = backup_tree(&repo, "after", &[&src]);
    let report = check(&repo, true, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{report:?}");
    let out = dir.path().join("out");
    hypernix_backup::restore(&repo, &snap, &out, &mut |_| {}).unwrap();
    crate::data::assert_same_tree(&src, &out.join("src"));
}
