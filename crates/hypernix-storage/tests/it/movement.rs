//! `storage.fabric.movement`: the bandwidth limit spaces moves out, the scheduled engine
//! opens promotions and demotions only in their cron windows, settings that cannot be
//! honoured are errors.

use std::time::Instant;

use chrono::{TimeZone, Utc};
use hypernix_storage::Store;
use hypernix_storage::schedule::{CronSpec, Engine, Movement};

use crate::kit::{G, store, two_tiers};

/// A store with 8 written extents on `slow`, 0..3 hot.
fn heated() -> (tempfile::TempDir, Store) {
    let (d, s) = store(&two_tiers());
    s.create_volume("v", 16 * G).unwrap();
    for e in 0..8u64 {
        s.write("v", e * G, &[e as u8 + 1; 100], false).unwrap();
    }
    let mut buf = [0u8; 16];
    for _ in 0..10 {
        for e in 0..3u64 {
            s.read("v", e * G, &mut buf).unwrap();
        }
    }
    (d, s)
}

#[test]
fn the_bandwidth_limit_spaces_moves_out() {
    let (_d, s) = heated();
    // 128 KiB/s with 64 KiB extents: the 2nd move may start at 0.5 s, the 3rd at 1 s.
    let m = Movement {
        bandwidth: Some(2 * G),
        ..Movement::default()
    };
    let start = Instant::now();
    let r = s.rebalance_with(&m, Utc::now()).unwrap();
    let took = start.elapsed().as_secs_f64();
    assert_eq!((r.promoted, r.demoted), (3, 0));
    assert!(
        took >= 0.95,
        "3 moves of 64 KiB at 128 KiB/s took only {took} s"
    );
    assert_eq!(s.tier_stats()[0].moves_in, 3);
}

#[test]
fn scheduled_moves_wait_for_their_windows() {
    let (_d, s) = heated();
    let m = Movement {
        engine: Engine::Scheduled {
            promotion: Some(Box::new(CronSpec::parse("0 2 * * *").unwrap())),
            demotion: None,
        },
        ..Movement::default()
    };
    let outside = Utc.with_ymd_and_hms(2026, 11, 26, 2, 1, 0).unwrap();
    let inside = Utc.with_ymd_and_hms(2026, 11, 26, 2, 0, 30).unwrap();
    assert_eq!(s.rebalance_with(&m, outside).unwrap().promoted, 0);
    assert_eq!(s.tier_stats()[0].extents, 0);
    assert_eq!(s.rebalance_with(&m, inside).unwrap().promoted, 3);
    // Cold and idle now (extent 5 is the hot one), but demotions have no window: they stay.
    s.advance_clock(20 * 3600);
    let mut buf = [0u8; 16];
    for _ in 0..10 {
        s.read("v", 5 * G, &mut buf).unwrap();
    }
    let planned = s.plan_moves();
    assert_eq!(
        planned.iter().filter(|m| m.to == "slow").count(),
        3,
        "{planned:?}"
    );
    let r = s.rebalance_with(&m, inside).unwrap();
    assert_eq!((r.promoted, r.demoted), (1, 0));
    assert_eq!(s.tier_stats()[0].extents, 4);
    let off = Movement {
        engine: Engine::Off,
        ..Movement::default()
    };
    // Continuous: demoted at once.
    assert_eq!(s.rebalance_with(&off, inside).unwrap().demoted, 0);
    let r = s.rebalance_with(&Movement::default(), outside).unwrap();
    assert_eq!(r.demoted, 3);
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn movement_settings_that_cannot_be_honoured_are_errors() {
    use hypernix_config::schema::storage::Movement as Config;
    let parse = |v: serde_json::Value| {
        let c: Config = serde_json::from_value(v).unwrap();
        Movement::from_config(&c).map_err(|e| e.to_string())
    };
    let ok = parse(
        serde_json::json!({ "engine": "scheduled", "bandwidth": { "limit": "100Mi/s" },
                                       "schedule": { "demotionWindow": "30 3 * * 0" } }),
    )
    .unwrap();
    assert_eq!(ok.bandwidth, Some(100 << 20));
    assert!(matches!(
        ok.engine,
        Engine::Scheduled {
            promotion: None,
            demotion: Some(_)
        }
    ));
    assert_eq!(
        parse(serde_json::json!({ "enable": false }))
            .unwrap()
            .engine,
        Engine::Off
    );
    for (v, needle) in [
        (
            serde_json::json!({ "engine": "triggered" }),
            "movement.engine",
        ),
        (
            serde_json::json!({ "bandwidth": { "limit": "fast" } }),
            "bandwidth.limit",
        ),
        (
            serde_json::json!({ "engine": "scheduled", "schedule": { "promotionWindow": "0 25 * * *" } }),
            "schedule.promotionWindow",
        ),
    ] {
        let e = parse(v).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }
}
