use serde_json::{Value, json};

use super::*;
use crate::values::Duration;

fn parse(v: Value) -> Result<Storage, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn problems(v: Value) -> Vec<String> {
    let storage = parse(v).expect("parses");
    let mut problems = Problems::default();
    storage.validate(&mut problems);
    problems.0.iter().map(ToString::to_string).collect()
}

/// Asserts that validating `v` reports exactly one problem, at `path`, mentioning `needle`.
fn one_problem(v: Value, path: &str, needle: &str) {
    let got = problems(v);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{path}: ")), "{got:#?}");
    assert!(got[0].contains(needle), "{got:#?}");
}

fn tiers() -> Value {
    json!({
        "tier-0": { "level": 0, "providers": [ { "type": "memory", "capacity": "1Gi" } ] },
        "tier-1": { "level": 1, "providers": [ { "type": "nvme-local", "capacity": "8Gi" } ] },
    })
}

#[test]
fn minimal_is_all_defaults() {
    let s = parse(json!({})).unwrap();
    assert_eq!(s, Storage::default());
    assert_eq!(s.default_tier, 1);
    assert!(s.fabric.heat_map.enable);
    assert_eq!(s.fabric.heat_map.granularity, Size::mib(1));
    let windows: Vec<Duration> = ["1h", "1d", "7d", "30d"].map(|w| w.parse().unwrap()).into();
    assert_eq!(s.fabric.heat_map.time_windows, windows);
    assert_eq!(s.fabric.heat_map.algorithm, HeatAlgorithm::ExponentialDecay);
    assert_eq!(s.fabric.heat_map.half_life, Duration::secs(3600));
    assert!(s.fabric.movement.enable);
    assert_eq!(s.fabric.movement.engine, MovementEngine::Continuous);
    assert_eq!(s.fabric.movement.bandwidth.limit, None);
    assert_eq!(s.fabric.movement.schedule.promotion_window, None);
    assert!(s.fabric.caching.layers.is_empty());
    assert!(problems(json!({})).is_empty());
}

#[test]
fn tier_defaults() {
    let s = parse(json!({ "tiers": { "t": { "level": 3 } } })).unwrap();
    let t = &s.tiers["t"];
    assert_eq!(t.level, 3);
    assert!(t.providers.is_empty());
    assert_eq!(t.characteristics, TierCharacteristics::default());
    let p = &t.policies.promotion;
    assert!(p.enabled);
    assert_eq!(p.threshold.access_frequency, 10);
    assert_eq!(p.threshold.heat_score, 0.8);
    assert_eq!(p.batch_size, Size(1 << 30));
    let d = &t.policies.demotion;
    assert!(d.enabled);
    assert_eq!(d.threshold.idle_time, Duration::secs(7 * 86_400));
    assert_eq!(d.threshold.heat_score, 0.2);
    assert!(d.exclude_patterns.is_empty());
    let layer: CacheLayer =
        serde_json::from_value(json!({ "name": "l1", "size": "1Gi", "location": "memory" }))
            .unwrap();
    assert_eq!(layer.policy, CachePolicy::Arc);
    assert_eq!(layer.write_policy, WritePolicy::WriteBack);
    let class: Classification = serde_json::from_value(json!({
        "characteristics": { "accessPattern": "random", "temperature": "hot", "compressibility": "low" }
    }))
    .unwrap();
    assert!(class.patterns.is_empty());
    assert_eq!(class.placement.preferred_tier, 1);
    assert!(class.placement.allowed_tiers.is_empty());
}

fn full() -> Value {
    json!({
        "tiers": {
            "ram": {
                "level": 0,
                "characteristics": { "latency": "< 0.1ms", "throughput": "10GB/s", "iops": "1M",
                                     "durability": 0.9, "cost": 10.0 },
                "providers": [ { "name": "dram", "type": "memory", "capacity": "4Gi" } ],
                "policies": {
                    "promotion": { "enabled": true, "threshold": { "accessFrequency": 50, "heatScore": 0.9 },
                                   "batchSize": "256Mi" },
                    "demotion": { "enabled": true, "threshold": { "idleTime": "1h", "heatScore": 0.5 },
                                  "excludePatterns": [ "*.db" ] }
                }
            },
            "disk": {
                "level": 1,
                "providers": [ { "type": "hdd-array", "capacity": "1Ti", "location": "/srv/tier1" },
                               { "type": "object", "capacity": "10Ti", "location": "s3://bucket/tier1" } ]
            }
        },
        "classifications": {
            "logs": {
                "patterns": [ "*.log" ],
                "characteristics": { "accessPattern": "append-only", "temperature": "cold",
                                     "compressibility": "high" },
                "placement": { "preferredTier": 1, "allowedTiers": [ 0, 1 ] }
            }
        },
        "fabric": {
            "heatMap": { "enable": true, "granularity": "4Mi", "timeWindows": [ "15m", "1h" ],
                         "algorithm": "sliding-window", "halfLife": "30m" },
            "movement": { "enable": true, "engine": "scheduled", "bandwidth": { "limit": "100MB/s" },
                          "schedule": { "promotionWindow": "0 * * * *", "demotionWindow": "0 2 * * *" } },
            "caching": { "layers": [
                { "name": "l1", "size": "512Mi", "location": "memory", "policy": "2q",
                  "writePolicy": "write-through" },
                { "name": "l2", "size": "64Gi", "location": "nvme", "policy": "s3fifo" }
            ] }
        },
        "defaultTier": 0
    })
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let s = parse(full()).unwrap();
    assert_eq!(s.default_tier, 0);
    let ram = &s.tiers["ram"];
    assert_eq!(ram.characteristics.durability, Some(0.9));
    assert_eq!(ram.providers[0].kind, ProviderKind::Memory);
    assert_eq!(ram.policies.promotion.batch_size, Size::mib(256));
    assert_eq!(
        ram.policies.demotion.threshold.idle_time,
        Duration::secs(3600)
    );
    let disk = &s.tiers["disk"];
    assert_eq!(
        disk.providers[1].location.as_deref(),
        Some("s3://bucket/tier1")
    );
    let logs = &s.classifications["logs"];
    assert_eq!(
        logs.characteristics.access_pattern,
        AccessPattern::AppendOnly
    );
    assert_eq!(logs.characteristics.temperature, Temperature::Cold);
    assert_eq!(logs.characteristics.compressibility, Compressibility::High);
    assert_eq!(s.fabric.heat_map.algorithm, HeatAlgorithm::SlidingWindow);
    assert_eq!(s.fabric.movement.engine, MovementEngine::Scheduled);
    assert_eq!(
        s.fabric
            .movement
            .schedule
            .demotion_window
            .as_ref()
            .map(ToString::to_string),
        Some("0 2 * * *".into())
    );
    assert_eq!(s.fabric.caching.layers[0].policy, CachePolicy::TwoQ);
    assert_eq!(s.fabric.caching.layers[1].policy, CachePolicy::S3fifo);
    assert_eq!(
        s.fabric.caching.layers[1].write_policy,
        WritePolicy::WriteBack
    );
    assert!(problems(full()).is_empty(), "{:#?}", problems(full()));
    let back = serde_json::to_value(&s).unwrap();
    assert_eq!(parse(back).unwrap(), s);
}

#[test]
fn examples_nix_storage_is_clean() {
    let v = json!({
        "tiers": {
            "tier-0": { "level": 0, "characteristics": { "latency": "< 0.1ms" },
                        "providers": [ { "type": "memory", "capacity": "1Gi" } ] },
            "tier-1": { "level": 1, "characteristics": { "latency": "< 1ms" },
                        "providers": [ { "type": "nvme-local", "capacity": "8Gi",
                                         "location": "/var/lib/hypernix/tiers/1" } ] },
            "tier-2": { "level": 2, "characteristics": { "latency": "< 10ms" },
                        "providers": [ { "type": "hdd-array", "capacity": "64Gi",
                                         "location": "/var/lib/hypernix/tiers/2" } ] }
        }
    });
    let s = parse(v.clone()).unwrap();
    assert_eq!(s.tiers.len(), 3);
    assert_eq!(s.tiers["tier-1"].providers[0].kind, ProviderKind::NvmeLocal);
    assert!(problems(v).is_empty());
}

#[test]
fn malformed_input_names_the_attribute() {
    let cases = [
        (
            json!({ "tiers": { "t": { "level": 0, "speed": "fast" } } }),
            "tiers.t.speed",
            "unknown field `speed`",
        ),
        (
            json!({ "tiers": { "t": { "level": "zero" } } }),
            "tiers.t.level",
            "invalid type",
        ),
        (
            json!({ "tiers": { "t": { "level": -1 } } }),
            "tiers.t.level",
            "invalid value",
        ),
        (
            json!({ "tiers": { "t": {} } }),
            "tiers.t",
            "missing field `level`",
        ),
        (
            json!({ "tiers": { "t": { "level": 0, "providers": [ { "type": "floppy", "capacity": "1Gi" } ] } } }),
            "tiers.t.providers[0].type",
            "unknown variant `floppy`",
        ),
        (
            json!({ "tiers": { "t": { "level": 0, "providers": [ { "type": "memory" } ] } } }),
            "tiers.t.providers[0]",
            "missing field `capacity`",
        ),
        (
            json!({ "tiers": { "t": { "level": 0, "providers": [ { "type": "memory", "capacity": "lots" } ] } } }),
            "tiers.t.providers[0].capacity",
            "expected a size",
        ),
        (
            json!({ "classifications": { "c": { "characteristics": { "accessPattern": "random", "temperature": "lukewarm", "compressibility": "low" } } } }),
            "classifications.c.characteristics.temperature",
            "unknown variant `lukewarm`",
        ),
        (
            json!({ "classifications": { "c": { "patterns": [] } } }),
            "classifications.c",
            "missing field `characteristics`",
        ),
        (
            json!({ "fabric": { "movement": { "schedule": { "promotionWindow": "nightly" } } } }),
            "fabric.movement.schedule.promotionWindow",
            "cron",
        ),
        (
            json!({ "fabric": { "heatMap": { "halfLife": 60 } } }),
            "fabric.heatMap.halfLife",
            "expected a duration",
        ),
        (
            json!({ "fabric": { "caching": { "layers": [ { "name": "l", "size": "1Gi", "location": "memory", "policy": "fifo" } ] } } }),
            "fabric.caching.layers[0].policy",
            "unknown variant `fifo`",
        ),
        (
            json!({ "defaultTier": "fast" }),
            "defaultTier",
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
fn duplicate_tier_levels() {
    let v = json!({ "tiers": { "a": { "level": 1 }, "b": { "level": 1 } } });
    one_problem(
        v,
        "hypervisor.storage.tiers.b.level",
        "also the level of tier `a`",
    );
}

#[test]
fn default_tier_must_exist_when_tiers_are_defined() {
    one_problem(
        json!({ "tiers": tiers(), "defaultTier": 2 }),
        "hypervisor.storage.defaultTier",
        "no tier has level 2 (the tier levels are 0, 1)",
    );
    // Without tiers any level goes.
    assert!(problems(json!({ "defaultTier": 7 })).is_empty());
}

#[test]
fn classification_tiers_must_exist() {
    let class = |placement: Value| {
        json!({ "tiers": tiers(), "classifications": { "db": {
            "characteristics": { "accessPattern": "random", "temperature": "hot", "compressibility": "low" },
            "placement": placement } } })
    };
    one_problem(
        class(json!({ "preferredTier": 5 })),
        "hypervisor.storage.classifications.db.placement.preferredTier",
        "no tier has level 5",
    );
    one_problem(
        class(json!({ "preferredTier": 0, "allowedTiers": [ 0, 9 ] })),
        "hypervisor.storage.classifications.db.placement.allowedTiers[1]",
        "add a tier with `level = 9`",
    );
    one_problem(
        class(json!({ "preferredTier": 0, "allowedTiers": [ 1 ] })),
        "hypervisor.storage.classifications.db.placement.preferredTier",
        "tier 0 is not among allowedTiers",
    );
}

#[test]
fn tier_ranges() {
    let tier = |t: Value| json!({ "tiers": { "t": t }, "defaultTier": 0 });
    one_problem(
        tier(json!({ "level": 0, "characteristics": { "durability": 1.5 } })),
        "hypervisor.storage.tiers.t.characteristics.durability",
        "use a number from 0 to 1",
    );
    one_problem(
        tier(json!({ "level": 0, "characteristics": { "cost": -1.0 } })),
        "hypervisor.storage.tiers.t.characteristics.cost",
        "negative",
    );
    one_problem(
        tier(json!({ "level": 0, "providers": [ { "type": "memory", "capacity": "0" } ] })),
        "hypervisor.storage.tiers.t.providers[0].capacity",
        "larger than 0",
    );
    one_problem(
        tier(
            json!({ "level": 0, "policies": { "promotion": { "threshold": { "heatScore": 2 } } } }),
        ),
        "hypervisor.storage.tiers.t.policies.promotion.threshold.heatScore",
        "2 is out of range",
    );
    one_problem(
        tier(json!({ "level": 0, "policies": { "promotion": { "batchSize": 0 } } })),
        "hypervisor.storage.tiers.t.policies.promotion.batchSize",
        "larger than 0",
    );
    one_problem(
        tier(
            json!({ "level": 0, "policies": { "demotion": { "threshold": { "heatScore": -0.1 } } } }),
        ),
        "hypervisor.storage.tiers.t.policies.demotion.threshold.heatScore",
        "out of range",
    );
    one_problem(
        tier(
            json!({ "level": 0, "policies": { "demotion": { "threshold": { "heatScore": 0.8 } } } }),
        ),
        "hypervisor.storage.tiers.t.policies.demotion.threshold.heatScore",
        "not below the promotion heat score 0.8",
    );
    // With promotion off the two thresholds need not be ordered.
    assert!(
        problems(tier(json!({ "level": 0, "policies": {
        "promotion": { "enabled": false }, "demotion": { "threshold": { "heatScore": 0.9 } } } })))
        .is_empty()
    );
}

#[test]
fn fabric_rules() {
    one_problem(
        json!({ "fabric": { "heatMap": { "granularity": "0" } } }),
        "hypervisor.storage.fabric.heatMap.granularity",
        "larger than 0",
    );
    one_problem(
        json!({ "fabric": { "heatMap": { "halfLife": "0s" } } }),
        "hypervisor.storage.fabric.heatMap.halfLife",
        "longer than 0",
    );
    one_problem(
        json!({ "fabric": { "heatMap": { "timeWindows": [ "1h", "0m" ] } } }),
        "hypervisor.storage.fabric.heatMap.timeWindows[1]",
        "longer than 0",
    );
    one_problem(
        json!({ "fabric": { "movement": { "engine": "scheduled" } } }),
        "hypervisor.storage.fabric.movement.engine",
        "set schedule.promotionWindow or schedule.demotionWindow",
    );
    let layer = |name: &str, size: &str| json!({ "name": name, "size": size, "location": "ssd" });
    one_problem(
        json!({ "fabric": { "caching": { "layers": [ layer("a", "1Gi"), layer("b", "1Gi"), layer("a", "2Gi") ] } } }),
        "hypervisor.storage.fabric.caching.layers[2].name",
        "already named `a`",
    );
    one_problem(
        json!({ "fabric": { "caching": { "layers": [ layer("a", "0") ] } } }),
        "hypervisor.storage.fabric.caching.layers[0].size",
        "larger than 0",
    );
}
