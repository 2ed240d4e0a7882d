//! The integration tests of hypernix-backup: one binary, one module per concern.

mod crash;
mod data;
mod errors;
mod group;
mod image;
mod nbd;
mod prune;
mod roundtrip;
mod similar;

use std::path::Path;

use hypernix_backup::{BackupOptions, InitOptions, KdfParams, Repository, Snapshot, SnapshotKind};

/// The password every test repository uses.
pub const PASSWORD: &[u8] = b"correct horse battery staple";

/// Init options with cheap argon2id costs, so tests spend their time on data.
pub fn options() -> InitOptions {
    InitOptions {
        kdf: KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        ..InitOptions::default()
    }
}

/// A new repository at `dir/repo`.
pub fn init(dir: &Path) -> Repository {
    Repository::init(&dir.join("repo"), PASSWORD, &options()).expect("init")
}

/// Backs up `paths` as a tree.
pub fn backup_tree(repo: &Repository, source: &str, paths: &[&Path]) -> Snapshot {
    let options = BackupOptions {
        source: source.into(),
        kind: SnapshotKind::Tree,
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
    };
    hypernix_backup::backup(repo, &options, &mut |_| {}).expect("backup")
}
