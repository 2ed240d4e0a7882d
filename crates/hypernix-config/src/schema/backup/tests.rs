use serde_json::{Value, json};

use super::*;
use crate::values::Size;

fn parse(v: Value) -> Result<Backup, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn problems(v: Value) -> Vec<String> {
    let backup = parse(v).expect("parses");
    let mut problems = Problems::default();
    backup.validate(&Hypervisor::default(), &mut problems);
    problems.0.iter().map(ToString::to_string).collect()
}

/// Asserts that validating `v` reports exactly one problem, at `path`, mentioning `needle`.
fn one_problem(v: Value, path: &str, needle: &str) {
    let got = problems(v);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{path}: ")), "{got:#?}");
    assert!(got[0].contains(needle), "{got:#?}");
}

fn chunks() -> Value {
    json!({ "chunkSize": { "min": "512Ki", "avg": "1Mi", "max": "8Mi" } })
}

/// A repository `r` with `extra` merged over a minimal one.
fn repo(extra: Value) -> Value {
    let mut r = json!({ "location": "/srv/backup", "deduplication": chunks() });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    json!({ "repositories": { "r": r } })
}

#[test]
fn minimal_is_all_defaults() {
    let b = parse(json!({})).unwrap();
    assert_eq!(b, Backup::default());
    assert_eq!(b.default_repository, "default");
    assert!(problems(json!({})).is_empty());

    let b = parse(repo(json!({}))).unwrap();
    let r = &b.repositories["r"];
    assert!(r.encryption.enabled);
    assert_eq!(
        r.encryption.algorithm,
        EncryptionAlgorithm::Chacha20Poly1305
    );
    assert_eq!(r.encryption.key_derivation, KeyDerivation::Argon2id);
    assert_eq!(r.compression.algorithm, CompressionAlgorithm::Zstd);
    assert_eq!(r.compression.level, 3);
    assert!(r.compression.adaptive);
    assert_eq!(r.deduplication.algorithm, DedupAlgorithm::ContentDefined);
    assert!(r.deduplication.similarity.enabled);
    assert_eq!(r.deduplication.similarity.threshold, 0.7);
    assert_eq!(
        r.deduplication.similarity.algorithm,
        SimilarityAlgorithm::Minhash
    );
    assert_eq!(r.retention.mode, RetentionMode::Progressive);
    let p = &r.retention.progressive;
    assert_eq!(p.keep_all, Duration::secs(7 * 86_400));
    let rules: Vec<(String, String)> = p
        .rules
        .iter()
        .map(|r| (r.age.to_string(), r.interval.to_string()))
        .collect();
    // Durations print in their largest whole unit: 7d is 1w, 365d is 365d.
    assert_eq!(
        rules,
        [("1w", "1h"), ("30d", "1d"), ("90d", "1w"), ("365d", "30d")]
            .map(|(a, i)| (a.into(), i.into()))
    );
    assert_eq!(r.retention.gfs, Gfs::default());
    assert!(!r.retention.immutable.enabled);
    assert_eq!(r.retention.immutable.period, Duration::secs(30 * 86_400));

    let s: Source = serde_json::from_value(json!({})).unwrap();
    assert_eq!(s.kind, None);
    assert_eq!(s.effective_kind(), SourceKind::ComputeUnit);
    assert_eq!(s.repository, None);
    assert_eq!(b.repository_of(&s), "default");
    assert_eq!(s.strategy.mode, StrategyMode::IncrementalForever);
    assert_eq!(s.strategy.consistency, SnapshotConsistency::CrashConsistent);
    assert!(!s.schedule.continuous);
    assert_eq!(s.schedule.interval, Duration::secs(3600));
    assert_eq!(s.schedule.window, None);
}

fn full() -> Value {
    json!({
        "repositories": {
            "offsite": {
                "location": "s3://backups/hypernix",
                "encryption": { "enabled": true, "algorithm": "aes-256-gcm", "keyDerivation": "argon2id" },
                "compression": { "algorithm": "lz4", "level": 9, "adaptive": false },
                "deduplication": {
                    "algorithm": "fixed-block",
                    "chunkSize": { "min": "4Mi", "avg": "4Mi", "max": "4Mi" },
                    "similarity": { "enabled": false, "threshold": 0.9, "algorithm": "minhash" }
                },
                "retention": {
                    "mode": "grandfather-father-son",
                    "progressive": { "keepAll": "1d", "rules": [ { "age": "1d", "interval": "6h" } ] },
                    "gfs": { "last": 3, "hourly": 24, "daily": 7, "weekly": 4, "monthly": 12, "yearly": 5 },
                    "immutable": { "enabled": true, "period": "90d" }
                }
            }
        },
        "sources": {
            "web": {
                "type": "compute-unit",
                "selection": { "labels": { "tier": "frontend" }, "ids": [ "webserver" ] },
                "repository": "offsite",
                "strategy": { "mode": "incremental-forever", "consistency": "application-consistent" },
                "schedule": { "continuous": false, "interval": "6h",
                              "window": { "start": "22:00", "end": "04:00" } }
            },
            "etc": { "type": "path", "selection": { "paths": [ "/etc" ] } },
            "disks": { "type": "volume", "selection": { "ids": [ "db-data" ] }, "repository": "local" }
        },
        "defaultRepository": "local"
    })
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let b = parse(full()).unwrap();
    let r = &b.repositories["offsite"];
    assert_eq!(r.location, "s3://backups/hypernix");
    assert_eq!(r.encryption.algorithm, EncryptionAlgorithm::Aes256Gcm);
    assert_eq!(r.compression.algorithm, CompressionAlgorithm::Lz4);
    assert_eq!(r.deduplication.algorithm, DedupAlgorithm::FixedBlock);
    assert_eq!(r.deduplication.chunk_size.avg, Size::mib(4));
    assert_eq!(r.retention.mode, RetentionMode::GrandfatherFatherSon);
    assert_eq!(r.retention.gfs.yearly, Some(5));
    assert_eq!(r.retention.progressive.rules.len(), 1);
    let web = &b.sources["web"];
    assert_eq!(web.effective_kind(), SourceKind::ComputeUnit);
    assert_eq!(
        web.strategy.consistency,
        SnapshotConsistency::ApplicationConsistent
    );
    assert_eq!(
        web.schedule.window.as_ref().unwrap().end.to_string(),
        "04:00"
    );
    assert_eq!(b.repository_of(web), "offsite");
    assert_eq!(b.sources["etc"].effective_kind(), SourceKind::Path);
    assert_eq!(b.repository_of(&b.sources["etc"]), "local");
    assert_eq!(b.sources["disks"].effective_kind(), SourceKind::Volume);
    assert!(problems(full()).is_empty(), "{:#?}", problems(full()));
    let back = serde_json::to_value(&b).unwrap();
    assert_eq!(parse(back).unwrap(), b);
}

#[test]
fn examples_nix_backup_is_clean() {
    // The source names no repository and none is declared: it goes to the implicit "default".
    let v = json!({ "sources": { "production": {
        "selection": { "labels": { "tier": "frontend" } },
        "strategy": { "mode": "incremental-forever" },
        "schedule": { "continuous": true }
    } } });
    let b = parse(v.clone()).unwrap();
    let s = &b.sources["production"];
    assert_eq!(s.effective_kind(), SourceKind::ComputeUnit);
    assert!(s.schedule.continuous);
    assert_eq!(b.repository_of(s), "default");
    assert!(problems(v).is_empty());
}

#[test]
fn chunk_sizes_default_to_small_chunks() {
    let b = parse(json!({ "repositories": { "r": { "location": "/b" } } })).unwrap();
    assert_eq!(
        b.repositories["r"].deduplication.chunk_size.avg,
        Size(16 << 10)
    );
}

#[test]
fn malformed_input_names_the_attribute() {
    let cases = [
        (
            json!({ "repositories": { "r": { "deduplication": chunks() } } }),
            "repositories.r",
            "missing field `location`",
        ),
        (
            json!({ "repositories": { "r": { "location": "/b", "deduplication": { "chunkSize": { "min": "1Mi", "avg": "lots" } } } } }),
            "repositories.r.deduplication.chunkSize.avg",
            "a size",
        ),
        (
            repo(json!({ "encryption": { "algorithm": "rot13" } })),
            "repositories.r.encryption.algorithm",
            "unknown variant `rot13`",
        ),
        (
            repo(json!({ "compression": { "level": "max" } })),
            "repositories.r.compression.level",
            "invalid type",
        ),
        (
            repo(json!({ "retention": { "mode": "forever" } })),
            "repositories.r.retention.mode",
            "unknown variant `forever`",
        ),
        (
            repo(json!({ "retention": { "progressive": { "rules": [ { "age": "7d" } ] } } })),
            "repositories.r.retention.progressive.rules[0]",
            "missing field `interval`",
        ),
        (
            repo(json!({ "retention": { "gfs": { "daily": -1 } } })),
            "repositories.r.retention.gfs.daily",
            "invalid value",
        ),
        (
            repo(json!({ "mirror": true })),
            "repositories.r.mirror",
            "unknown field `mirror`",
        ),
        (
            json!({ "sources": { "s": { "type": "database" } } }),
            "sources.s.type",
            "unknown variant `database`",
        ),
        (
            json!({ "sources": { "s": { "strategy": { "mode": "full" } } } }),
            "sources.s.strategy.mode",
            "unknown variant `full`",
        ),
        (
            json!({ "sources": { "s": { "schedule": { "window": { "start": "22:00" } } } } }),
            "sources.s.schedule.window",
            "missing field `end`",
        ),
        (
            json!({ "sources": { "s": { "schedule": { "window": { "start": "25:00", "end": "01:00" } } } } }),
            "sources.s.schedule.window.start",
            "HH:MM",
        ),
        (
            json!({ "defaultRepository": 1 }),
            "defaultRepository",
            "invalid type",
        ),
    ];
    for (input, path, needle) in cases {
        let err = parse(input).unwrap_err();
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn source_repository_must_exist_unless_it_is_the_default() {
    one_problem(
        json!({ "repositories": repo(json!({}))["repositories"], "sources": { "s": { "repository": "rr" } } }),
        "hypervisor.backup.sources.s.repository",
        "unknown repository `rr`; did you mean `r`?",
    );
    one_problem(
        json!({ "sources": { "s": { "repository": "defualt" } } }),
        "hypervisor.backup.sources.s.repository",
        "did you mean `default`?",
    );
    assert!(problems(json!({ "sources": { "s": { "repository": "default" } } })).is_empty());
    assert!(
        problems(
            json!({ "defaultRepository": "nas", "sources": { "s": { "repository": "nas" } } })
        )
        .is_empty()
    );
    one_problem(
        json!({ "defaultRepository": "" }),
        "hypervisor.backup.defaultRepository",
        "is empty",
    );
}

#[test]
fn source_selection_fits_its_type() {
    let source = |s: Value| json!({ "sources": { "s": s } });
    let at = "hypervisor.backup.sources.s";
    one_problem(
        source(json!({ "selection": { "paths": [ "/etc" ], "ids": [ "web" ] } })),
        &format!("{at}.type"),
        "set type = \"path\"",
    );
    one_problem(
        source(json!({ "type": "path" })),
        &format!("{at}.selection.paths"),
        "is empty",
    );
    one_problem(
        source(
            json!({ "type": "path", "selection": { "paths": [ "/etc" ], "labels": { "a": "b" } } }),
        ),
        &format!("{at}.selection"),
        "a path source cannot",
    );
    one_problem(
        source(json!({ "type": "volume", "selection": { "paths": [ "/etc" ] } })),
        &format!("{at}.selection.paths"),
        "which a volume source cannot",
    );
    one_problem(
        source(json!({ "selection": { "paths": [ "etc" ] } })),
        &format!("{at}.selection.paths[0]"),
        "`etc` is not an absolute path",
    );
    let b = parse(source(json!({ "selection": { "paths": [ "/etc" ] } }))).unwrap();
    assert_eq!(b.sources["s"].effective_kind(), SourceKind::Path);
}

#[test]
fn source_schedule() {
    let schedule = |s: Value| json!({ "sources": { "s": { "schedule": s } } });
    one_problem(
        schedule(json!({ "interval": "0s" })),
        "hypervisor.backup.sources.s.schedule.interval",
        "longer than 0",
    );
    one_problem(
        schedule(json!({ "window": { "start": "02:00", "end": "02:00" } })),
        "hypervisor.backup.sources.s.schedule.window.end",
        "equals start (02:00)",
    );
}

#[test]
fn repository_rules() {
    let at = "hypervisor.backup.repositories.r";
    one_problem(
        repo(json!({ "location": " " })),
        &format!("{at}.location"),
        "is empty",
    );
    one_problem(
        repo(json!({ "compression": { "level": 23 } })),
        &format!("{at}.compression.level"),
        "23 is not a zstd level; use 1 to 22",
    );
    one_problem(
        repo(json!({ "compression": { "level": 0 } })),
        &format!("{at}.compression.level"),
        "use 1 to 22",
    );
    one_problem(
        repo(json!({ "compression": { "algorithm": "lz4", "level": 13 } })),
        &format!("{at}.compression.level"),
        "not a lz4 level; use 1 to 12",
    );
    assert!(
        problems(repo(
            json!({ "compression": { "algorithm": "none", "level": 99 } })
        ))
        .is_empty()
    );
    let chunk = |min: &str, avg: &str, max: &str| {
        repo(json!({ "deduplication": { "chunkSize": { "min": min, "avg": avg, "max": max } } }))
    };
    one_problem(
        chunk("0", "1Mi", "2Mi"),
        &format!("{at}.deduplication.chunkSize.min"),
        "larger than 0",
    );
    one_problem(
        chunk("2Mi", "1Mi", "4Mi"),
        &format!("{at}.deduplication.chunkSize.min"),
        "2Mi is larger than avg (1Mi)",
    );
    one_problem(
        chunk("1Mi", "2Mi", "1Mi"),
        &format!("{at}.deduplication.chunkSize.max"),
        "1Mi is smaller than avg (2Mi)",
    );
    one_problem(
        repo(
            json!({ "deduplication": { "chunkSize": chunks()["chunkSize"], "similarity": { "threshold": 1.5 } } }),
        ),
        &format!("{at}.deduplication.similarity.threshold"),
        "1.5 is out of range",
    );
    let rules = |rules: Value| repo(json!({ "retention": { "progressive": { "rules": rules } } }));
    one_problem(
        rules(json!([ { "age": "7d", "interval": "0s" } ])),
        &format!("{at}.retention.progressive.rules[0].interval"),
        "longer than 0",
    );
    one_problem(
        rules(json!([ { "age": "30d", "interval": "1d" }, { "age": "7d", "interval": "1h" } ])),
        &format!("{at}.retention.progressive.rules[1].age"),
        "not older than the previous rule's age (30d)",
    );
    one_problem(
        repo(json!({ "retention": { "mode": "grandfather-father-son", "gfs": { "daily": 0 } } })),
        &format!("{at}.retention.gfs"),
        "keeps no snapshot",
    );
    one_problem(
        repo(json!({ "retention": { "immutable": { "enabled": true, "period": "0d" } } })),
        &format!("{at}.retention.immutable.period"),
        "longer than 0",
    );
}
