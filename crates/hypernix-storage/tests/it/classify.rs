//! `storage.classifications` and demotion exclusions: where a volume's extents may go.

use hypernix_storage::classify::{Rules, VolumeClass};
use hypernix_storage::{Store, StoreOptions};

use crate::kit::{G, two_tiers};

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
