//! The memory tier of a durable store as a read cache: hits counted, writes kept coherent,
//! freed extents dropped, counters saved across a reopen.

use hypernix_storage::cache::PolicyKind;
use hypernix_storage::{CacheWrite, Store, StoreConfig, StoreOptions, TierMedium, TierSpec};

use crate::kit::{G, tier};

/// A memory tier of 2 extents over a directory tier of 64.
fn cached() -> StoreConfig {
    StoreConfig {
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
    }
}

fn options(policy: PolicyKind, write: CacheWrite) -> StoreOptions {
    let mut o = StoreOptions::default();
    o.cache.policy = policy;
    o.cache.write = write;
    o
}

fn read(s: &Store, at: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    s.read("v", at, &mut b).unwrap();
    b
}

#[test]
fn reads_hit_the_memory_tier_and_writes_stay_coherent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(
        dir.path(),
        &cached(),
        &options(PolicyKind::Lru, CacheWrite::Through),
    )
    .unwrap();
    s.create_volume("v", 8 * G).unwrap();
    for e in 0..4u64 {
        s.write("v", e * G, &[e as u8 + 1; 512], false).unwrap();
    }
    // LRU admits on the first miss: 1 miss then 4 hits.
    for _ in 0..5 {
        assert_eq!(read(&s, 100, 8), [1; 8]);
    }
    let stats = s.tier_stats();
    assert_eq!((stats[0].name.as_str(), stats[0].reads), ("ram", 4));
    assert_eq!((stats[1].reads, stats[0].extents), (1, 1));
    assert!((stats[0].hit_ratio - 0.8).abs() < 1e-9, "{stats:?}");
    // Write-through: a write lands in the cached copy too.
    s.write("v", 200, &[9; 4], false).unwrap();
    assert_eq!(read(&s, 198, 8), [1, 1, 9, 9, 9, 9, 1, 1]);
    // A whole-extent zero write frees the extent: the copy must not survive it.
    s.write("v", 0, &vec![0; G as usize], false).unwrap();
    assert_eq!(read(&s, 100, 8), [0; 8]);
    s.write("v", 0, &[5; 16], false).unwrap();
    assert_eq!(read(&s, 0, 4), [5; 4]);
    // Shrinking zeroes the cut-off tail of a cached extent.
    assert_eq!(read(&s, G + 100, 2), [2, 2]);
    s.resize_volume("v", G + 50).unwrap();
    s.resize_volume("v", 2 * G).unwrap();
    assert_eq!(read(&s, G + 48, 4), [2, 2, 0, 0]);
    // Only 2 extents fit.
    for e in [0u64, 1, 0, 1] {
        read(&s, e * G, 1);
    }
    assert!(s.tier_stats()[0].extents <= 2);
    s.save_counters().unwrap();
    let reads = s.tier_stats()[0].reads;
    drop(s);
    let s = Store::open(dir.path(), &cached()).unwrap();
    assert_eq!(s.tier_stats()[0].reads, reads, "counters survive a reopen");
    assert_eq!(s.fsck().unwrap().problems, Vec::<String>::new());
}

#[test]
fn write_around_drops_the_copy_and_tinylfu_turns_cold_extents_away() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(
        dir.path(),
        &cached(),
        &options(PolicyKind::Tinylfu, CacheWrite::Around),
    )
    .unwrap();
    s.create_volume("v", 64 * G).unwrap();
    for e in 0..32u64 {
        s.write("v", e * G, &[e as u8 + 1; 64], false).unwrap();
    }
    // Extents 0 and 1 are hot: one sits in main (1 slot), the other in the window (1 slot).
    // A scan of cold extents pushes the window's out but must not push main's out.
    for _ in 0..20 {
        read(&s, 0, 1);
        read(&s, G, 1);
    }
    let before = s.tier_stats()[0].reads;
    for e in 2..32u64 {
        read(&s, e * G, 1);
    }
    read(&s, 0, 1);
    read(&s, G, 1);
    assert_eq!(
        s.tier_stats()[0].reads,
        before + 1,
        "the hot extent in main survived the scan"
    );
    s.write("v", 10, &[7; 2], false).unwrap();
    assert_eq!(read(&s, 9, 4), [1, 7, 7, 1]);
}

#[test]
fn unsupported_cache_settings_are_errors_naming_the_attribute() {
    use hypernix_config::schema::storage::Storage;
    let storage = |layer: serde_json::Value| -> Storage {
        serde_json::from_value(
            serde_json::json!({ "fabric": { "caching": { "layers": [layer] } } }),
        )
        .unwrap()
    };
    let layer = |policy: &str, write: &str, location: &str| {
        serde_json::json!({ "name": "c", "size": "1Gi", "location": location,
                            "policy": policy, "writePolicy": write })
    };
    let ok = StoreOptions::from_config(&storage(layer("arc", "write-around", "memory"))).unwrap();
    assert_eq!(ok.cache.policy, PolicyKind::Arc);
    assert_eq!(ok.cache.write, CacheWrite::Around);
    assert_eq!(ok.cache.capacity, Some(1 << 30));
    for (l, needle) in [
        (layer("lfu", "write-through", "memory"), "layers.0.policy"),
        (layer("arc", "write-back", "memory"), "layers.0.writePolicy"),
        (layer("arc", "write-through", "nvme"), "layers.0.location"),
    ] {
        let e = StoreOptions::from_config(&storage(l))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e}");
    }
    for (fabric, needle) in [
        (
            serde_json::json!({ "heatMap": { "enable": false } }),
            "heatMap.enable",
        ),
        (
            serde_json::json!({ "heatMap": { "algorithm": "sliding-window" } }),
            "heatMap.algorithm",
        ),
        (
            serde_json::json!({ "heatMap": { "timeWindows": ["1m", "1h", "1d", "7d", "30d"] } }),
            "heatMap.timeWindows",
        ),
    ] {
        let s: Storage = serde_json::from_value(serde_json::json!({ "fabric": fabric })).unwrap();
        let e = StoreOptions::from_config(&s).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
    }
    // A memory layer with no memory tier to hold it.
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions::from_config(&storage(layer("arc", "write-through", "memory"))).unwrap();
    let e = Store::open_with(dir.path(), &StoreConfig::single_disk(1 << 30), &o)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no memory tier"), "{e}");
}
