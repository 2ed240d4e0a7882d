//! `storage.classifications` and demotion exclusions: where a volume's extents may go.

use hypernix_config::schema::storage::{AccessPattern, Temperature};
use hypernix_storage::cache::PolicyKind;
use hypernix_storage::classify::{ClassHints, Rules, VolumeClass};
use hypernix_storage::{Store, StoreConfig, StoreOptions, TierMedium, TierSpec};

use crate::kit::{G, tier, two_tiers};

fn open(rules: Rules) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        rules,
        ..StoreOptions::default()
    };
    let s = Store::open_with(dir.path(), &two_tiers(), &options).unwrap();
    (dir, s)
}

#[test]
fn a_classified_volume_is_pinned_to_its_allowed_tiers() {
    let (_d, s) = open(Rules {
        classes: vec![VolumeClass {
            name: "db".into(),
            patterns: vec!["db-*".into()],
            preferred: 0,
            allowed: vec![0],
            hints: ClassHints::default(),
        }],
        ..Rules::default()
    });
    s.create_volume("db-1", 8 * G).unwrap();
    s.create_volume("web", 8 * G).unwrap();
    for e in 0..4 {
        s.write("db-1", e * G, b"x", false).unwrap();
    }
    s.write("web", 0, b"y", false).unwrap();
    let t = s.tier_stats();
    assert_eq!(
        (t[0].extents, t[1].extents),
        (4, 1),
        "db-1 on fast, web on slow"
    );
    // fast (4 slots) is full and db-1 may not spill to slow.
    let e = s.write("db-1", 5 * G, b"x", false).unwrap_err().to_string();
    assert!(e.contains("every tier is full"), "{e}");
    // Cold for days: the pinned extents are never planned off their tier.
    s.advance_clock(30 * 86_400);
    let mut b = [0u8; 1];
    for _ in 0..10 {
        s.read("web", 0, &mut b).unwrap();
    }
    assert!(
        s.plan_moves().iter().all(|m| m.volume != "db-1"),
        "{:?}",
        s.plan_moves()
    );
}

#[test]
fn excluded_volumes_are_not_demoted() {
    let (_d, s) = open(Rules {
        no_demotion: [("fast".to_string(), vec!["keep-*".to_string()])].into(),
        ..Rules::default()
    });
    s.create_volume("keep-a", 4 * G).unwrap();
    s.create_volume("other", 4 * G).unwrap();
    s.write("keep-a", 0, b"k", false).unwrap();
    s.write("other", 0, b"o", false).unwrap();
    assert!(s.move_extent("keep-a", 0, "fast").unwrap());
    assert!(s.move_extent("other", 0, "fast").unwrap());
    s.advance_clock(30 * 86_400);
    let mut b = [0u8; 1];
    s.create_volume("hot", 4 * G).unwrap();
    s.write("hot", 0, b"h", false).unwrap();
    for _ in 0..10 {
        s.read("hot", 0, &mut b).unwrap();
    }
    let demoted: Vec<_> = s
        .plan_moves()
        .into_iter()
        .filter(|m| m.to == "slow")
        .map(|m| m.volume)
        .collect();
    assert_eq!(demoted, ["other"]);
}

#[test]
fn a_pinned_volume_is_placed_on_its_tier_and_never_moved() {
    let (_d, s) = open(Rules::default());
    s.create_volume("p", 8 * G).unwrap();
    s.create_volume("q", 8 * G).unwrap();
    let e = s.pin_volume("p", 7).unwrap_err().to_string();
    assert!(e.contains("level 7"), "{e}");
    s.pin_volume("p", 0).unwrap();
    s.pin_volume("q", 1).unwrap();
    s.write("p", 0, b"p", false).unwrap();
    s.write("q", 0, b"q", false).unwrap();
    let t = s.tier_stats();
    assert_eq!(
        (t[0].extents, t[1].extents),
        (1, 1),
        "p on fast (not the default), q on slow"
    );
    // p goes cold for days, q is read hot: neither is planned off its tier.
    s.advance_clock(30 * 86_400);
    let mut b = [0u8; 1];
    for _ in 0..20 {
        s.read("q", 0, &mut b).unwrap();
    }
    assert_eq!(s.plan_moves(), vec![]);
}

#[test]
fn hot_and_cold_classes_start_on_the_fastest_and_slowest_tier() {
    let class = |pattern: &str, temperature| VolumeClass {
        name: pattern.into(),
        patterns: vec![pattern.into()],
        preferred: 1,
        allowed: vec![],
        hints: ClassHints {
            temperature: Some(temperature),
            ..ClassHints::default()
        },
    };
    let (_d, s) = open(Rules {
        classes: vec![
            class("cold-*", Temperature::Cold),
            class("hot-*", Temperature::Hot),
        ],
        ..Rules::default()
    });
    s.create_volume("hot-1", 8 * G).unwrap();
    s.create_volume("cold-1", 8 * G).unwrap();
    s.write("hot-1", 0, b"h", false).unwrap();
    s.write("cold-1", 0, b"c", false).unwrap();
    let t = s.tier_stats();
    assert_eq!(
        (t[0].extents, t[1].extents),
        (1, 1),
        "hot-1 on fast, cold-1 on slow"
    );
    // cold-1 read hot is still never promoted above its preferred level.
    let mut b = [0u8; 1];
    for _ in 0..20 {
        s.read("cold-1", 0, &mut b).unwrap();
    }
    assert!(s.plan_moves().iter().all(|m| m.volume != "cold-1"));
}

#[test]
fn append_only_volumes_bypass_the_memory_cache() {
    let config = StoreConfig {
        granularity: G,
        tiers: vec![
            TierSpec {
                name: "ram".into(),
                level: 0,
                medium: TierMedium::Memory,
                capacity: 2 * G,
                promote: None,
                demote: None,
            },
            tier("disk", 1, 64),
        ],
        default_level: 1,
        half_life: std::time::Duration::from_secs(3600),
    };
    let mut options = StoreOptions {
        rules: Rules {
            classes: vec![VolumeClass {
                name: "logs".into(),
                patterns: vec!["log-*".into()],
                preferred: 1,
                allowed: vec![],
                hints: ClassHints {
                    access: Some(AccessPattern::AppendOnly),
                    ..ClassHints::default()
                },
            }],
            ..Rules::default()
        },
        ..StoreOptions::default()
    };
    options.cache.policy = PolicyKind::Lru;
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), &config, &options).unwrap();
    let mut b = [0u8; 1];
    for v in ["log-1", "db"] {
        s.create_volume(v, 8 * G).unwrap();
        s.write(v, 0, b"x", false).unwrap();
        for _ in 0..5 {
            s.read(v, 0, &mut b).unwrap();
        }
    }
    let t = s.tier_stats();
    // LRU admits on the first miss: db's 4 later reads hit ram, log-1's never do.
    assert_eq!((t[0].reads, t[0].extents, t[1].reads), (4, 1, 6), "{t:?}");
}
