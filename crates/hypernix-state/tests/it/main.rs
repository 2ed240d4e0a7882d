//! The state store's tests, one binary: round trips, atomicity, reopening, malformed
//! files, and durability across `kill -9`.

mod atomicity;
mod durability;
mod malformed;
mod reopen;
mod roundtrip;

use hypernix_state::RedbStore;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tempfile::TempDir;

/// Set in a re-executed test binary to the database its child test should open.
pub const CHILD_DB: &str = "HYPERNIX_STATE_TEST_CHILD_DB";

/// A fresh directory and the path of a state file inside it (not yet created).
pub fn scratch() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    (dir, path)
}

/// A new store in a fresh directory.
pub fn new_store() -> (TempDir, RedbStore) {
    let (dir, path) = scratch();
    let store = RedbStore::open(&path).unwrap();
    (dir, store)
}

/// Re-runs this test binary as a child process that runs only the ignored test `test`,
/// with [`CHILD_DB`] set to `db`, its stdin and stdout piped to us.
pub fn spawn_child(test: &str, db: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}
