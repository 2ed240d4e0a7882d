//! Wrong passwords, damaged and garbage repository files: clear errors, never a panic.

use std::fs;

use hypernix_backup::{Error, Repository, check, restore};

use crate::data::tree;
use crate::{PASSWORD, backup_tree, init};

#[test]
fn wrong_password_is_named() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path());
    let err = Repository::open(&dir.path().join("repo"), b"wrong").unwrap_err();
    assert!(matches!(err, Error::WrongPassword(_)), "{err}");
    assert!(err.to_string().contains("wrong password"), "{err}");
}

#[test]
fn missing_and_garbage_config_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Repository::open(dir.path(), PASSWORD).unwrap_err();
    assert!(matches!(err, Error::NotARepository(_)), "{err}");
    init(dir.path());
    let repo = dir.path().join("repo");
    let config = fs::read(repo.join("config")).unwrap();
    fs::write(repo.join("config"), &config[..config.len() / 2]).unwrap();
    let err = Repository::open(&repo, PASSWORD).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    let newer = String::from_utf8(config.clone())
        .unwrap()
        .replace("\"version\": 2", "\"version\": 9");
    fs::write(repo.join("config"), newer).unwrap();
    let err = Repository::open(&repo, PASSWORD).unwrap_err();
    assert!(matches!(err, Error::Version { found: 9, .. }), "{err}");
    fs::write(repo.join("config"), &config).unwrap();
    for garbage in [
        &b""[..],
        b"{}",
        b"\xff\xfe garbage",
        br#"{"kdf":"argon2id","m_kib":64,"t":1,"p":1,"salt":"zz","wrapped":"00"}"#,
    ] {
        fs::write(repo.join("keys/master"), garbage).unwrap();
        let err = Repository::open(&repo, PASSWORD).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("keys/master"), "{err}");
    }
}

#[test]
fn truncated_and_garbage_packs_and_snapshots_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    tree(&src, 2);
    let repo = init(dir.path());
    let snap = backup_tree(&repo, "files", &[&src]);
    let packs = repo.packs().unwrap();
    let (_, first) = &packs[0];
    let bytes = fs::read(first).unwrap();
    fs::write(first, &bytes[..bytes.len() / 3]).unwrap();
    let stray = repo.root().join("data/00").join("0".repeat(64));
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"garbage, not a pack").unwrap();
    let first_id = Some(hypernix_backup::hex::encode(&packs[0].0));
    for read_data in [false, true] {
        let report = check(&repo, read_data, &mut |_| {}).unwrap();
        let truncated = report.problems.iter().find(|p| p.pack == first_id);
        assert!(
            truncated.is_some_and(|p| !p.affected.is_empty()),
            "{report:?}"
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.pack == Some("0".repeat(64))),
            "{report:?}"
        );
    }
    let err = restore(&repo, &snap, &dir.path().join("out"), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { .. } | Error::Io { .. }),
        "{err}"
    );

    fs::write(
        repo.root().join("snapshots").join(&snap.id),
        b"\x00\x01garbage",
    )
    .unwrap();
    let err = repo.load_snapshot(&snap.id).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(!check(&repo, false, &mut |_| {}).unwrap().is_ok());
}

#[test]
fn flipped_byte_names_pack_snapshot_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("victim.bin"),
        crate::data::Rng::new(9).bytes(2 << 20),
    )
    .unwrap();
    let repo = init(dir.path());
    let snap = backup_tree(&repo, "files", &[&src]);
    let packs = repo.packs().unwrap();
    assert_eq!(packs.len(), 1);
    let (pack, path) = &packs[0];
    let mut bytes = fs::read(path).unwrap();
    bytes[1000] ^= 0x40;
    fs::write(path, &bytes).unwrap();
    assert!(
        check(&repo, false, &mut |_| {}).unwrap().is_ok(),
        "structure is intact"
    );
    let report = check(&repo, true, &mut |_| {}).unwrap();
    let problem = report.problems.first().expect("a problem");
    assert_eq!(
        problem.pack.as_deref(),
        Some(hypernix_backup::hex::encode(pack).as_str())
    );
    assert!(
        problem
            .affected
            .iter()
            .any(|a| a.snapshot == snap.id && a.path.ends_with("/src/victim.bin")),
        "{problem:?}"
    );
}

#[test]
fn settings_this_version_cannot_honour_are_refused() {
    use hypernix_backup::InitOptions;
    use hypernix_config::schema::backup::{CompressionAlgorithm, Repository as Settings};
    let json = r#"{"location": "/srv/backup", "deduplication": {"chunkSize": {"min": "64Ki", "avg": "256Ki", "max": "1Mi"}}}"#;
    let mut settings: Settings = serde_json::from_str(json).unwrap();
    let options = InitOptions::try_from(&settings).unwrap();
    assert_eq!(
        (
            options.chunker.min,
            options.chunker.avg,
            options.chunker.max
        ),
        (64 << 10, 256 << 10, 1 << 20)
    );
    settings.compression.algorithm = CompressionAlgorithm::Lz4;
    let err = InitOptions::try_from(&settings).unwrap_err();
    assert!(err.to_string().contains("compression.algorithm"), "{err}");
}
