use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

/// The problems validating each of the four sections reports, from one JSON object with
/// optional `api`, `events`, `monitoring` and `migration` attributes.
fn problems(v: Value) -> Vec<String> {
    let section = |name: &str| v.get(name).cloned().unwrap_or_else(|| json!({}));
    let mut problems = Problems::default();
    parse::<Api>(section("api"))
        .unwrap()
        .validate(&mut problems);
    parse::<Events>(section("events"))
        .unwrap()
        .validate(&mut problems);
    parse::<Monitoring>(section("monitoring"))
        .unwrap()
        .validate(&mut problems);
    parse::<Migration>(section("migration"))
        .unwrap()
        .validate(&mut problems);
    problems.0.iter().map(ToString::to_string).collect()
}

/// Asserts that validating `v` reports exactly one problem, at `path`, mentioning `needle`.
fn one_problem(v: Value, path: &str, needle: &str) {
    let got = problems(v);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{path}: ")), "{got:#?}");
    assert!(got[0].contains(needle), "{got:#?}");
}

#[test]
fn minimal_is_all_defaults() {
    let api: Api = parse(json!({})).unwrap();
    assert_eq!(api.listen, "127.0.0.1:7878");
    assert_eq!(
        api.listen_addr(),
        Some(SocketAddr::from(([127, 0, 0, 1], 7878)))
    );
    assert!(api.graphiql);
    assert_eq!((api.limits.depth, api.limits.complexity), (12, 2000));
    assert_eq!(api.limits.body_size, Size::mib(1));

    let events: Events = parse(json!({})).unwrap();
    assert_eq!(events.bus, Bus::Embedded);
    assert_eq!(events.nats.url, "nats://127.0.0.1:4222");
    assert_eq!(events.nats.stream, "HYPERNIX");
    assert_eq!(events.nats.max_age, Duration::secs(86_400));

    let monitoring: Monitoring = parse(json!({})).unwrap();
    assert!(monitoring.ai.enable);
    assert!(monitoring.ai.detectors.is_empty());
    let horizons: Vec<Duration> = ["1h", "6h", "1d", "7d", "30d"]
        .map(|h| h.parse().unwrap())
        .into();
    assert_eq!(monitoring.ai.prediction.capacity.horizons, horizons);
    assert_eq!(monitoring.ai.actions.alert.cooldown, Duration::secs(300));
    let detector: Detector = parse(json!({ "metrics": [ "x" ] })).unwrap();
    assert_eq!(detector.algorithm, DetectorAlgorithm::Ensemble);
    assert_eq!(detector.sensitivity, 0.5);
    assert_eq!(detector.persistence, 3);

    let migration: Migration = parse(json!({})).unwrap();
    assert_eq!(migration.bandwidth, None);
    assert_eq!(migration.downtime_limit, Duration::millis(300));
    assert!(migration.auto_converge);
    assert_eq!(migration.compression, MigrationCompression::None);

    assert!(problems(json!({})).is_empty());
}

fn full() -> Value {
    json!({
        "api": { "listen": "[::1]:9000", "graphiql": false,
                 "limits": { "depth": 8, "complexity": 500, "bodySize": "64Ki" } },
        "events": { "bus": "nats", "nats": { "url": "tls://nats.example.org:4222", "stream": "HYPERNIX_EVENTS",
                                             "maxAge": "7d" } },
        "monitoring": { "interval": "2s", "ai": {
            "enable": true,
            "detectors": {
                "cpu": { "metrics": [ "unit_cpu_*" ], "algorithm": "ensemble", "sensitivity": 0.8, "persistence": 5 },
                "io": { "metrics": [ "unit_disk_*", "unit_net_*" ], "algorithm": "ewma", "learning": 30 },
                "mem": { "metrics": [ "unit_memory_bytes" ], "algorithm": "ewma" },
                "lat": { "metrics": [ "api_latency_*" ], "sensitivity": 0 }
            },
            "prediction": { "capacity": { "horizons": [ "30m", "12h" ] } },
            "actions": { "alert": { "cooldown": "1h" } }
        } },
        "migration": { "bandwidth": "1Gbps", "downtimeLimit": "500ms", "autoConverge": false, "compression": "zstd" }
    })
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let v = full();
    let api: Api = parse(v["api"].clone()).unwrap();
    assert_eq!(api.listen_addr().map(|a| a.port()), Some(9000));
    assert!(!api.graphiql);
    assert_eq!(api.limits.body_size, Size(64 << 10));
    let events: Events = parse(v["events"].clone()).unwrap();
    assert_eq!(events.bus, Bus::Nats);
    assert_eq!(events.nats.max_age, Duration::secs(7 * 86_400));
    let monitoring: Monitoring = parse(v["monitoring"].clone()).unwrap();
    let detectors = &monitoring.ai.detectors;
    assert_eq!(monitoring.interval, Duration::secs(2));
    assert_eq!(detectors["cpu"].algorithm, DetectorAlgorithm::Ensemble);
    assert_eq!(detectors["cpu"].persistence, 5);
    assert_eq!(detectors["io"].learning, 30);
    assert_eq!(detectors["mem"].algorithm, DetectorAlgorithm::Ewma);
    assert_eq!(detectors["mem"].learning, 150);
    assert_eq!(detectors["lat"].algorithm, DetectorAlgorithm::Ensemble);
    assert_eq!(monitoring.ai.prediction.capacity.horizons.len(), 2);
    assert_eq!(monitoring.ai.actions.alert.cooldown, Duration::secs(3600));
    let migration: Migration = parse(v["migration"].clone()).unwrap();
    assert_eq!(migration.bandwidth.as_deref(), Some("1Gbps"));
    assert_eq!(migration.compression, MigrationCompression::Zstd);
    assert!(problems(full()).is_empty(), "{:#?}", problems(full()));

    assert_eq!(
        parse::<Api>(serde_json::to_value(&api).unwrap()).unwrap(),
        api
    );
    assert_eq!(
        parse::<Events>(serde_json::to_value(&events).unwrap()).unwrap(),
        events
    );
    assert_eq!(
        parse::<Monitoring>(serde_json::to_value(&monitoring).unwrap()).unwrap(),
        monitoring
    );
    assert_eq!(
        parse::<Migration>(serde_json::to_value(&migration).unwrap()).unwrap(),
        migration
    );
}

#[test]
fn examples_nix_services_are_clean() {
    // examples.nix sets none of these sections: the defaults must validate.
    assert!(problems(json!({})).is_empty());
}

#[test]
fn malformed_input_names_the_attribute() {
    let check = |err: String, path: &str, needle: &str| {
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        assert!(err.contains(needle), "{err}");
    };
    check(
        parse::<Api>(json!({ "port": 80 })).unwrap_err(),
        "port",
        "unknown field `port`",
    );
    check(
        parse::<Api>(json!({ "listen": 7878 })).unwrap_err(),
        "listen",
        "invalid type",
    );
    check(
        parse::<Api>(json!({ "limits": { "depth": -1 } })).unwrap_err(),
        "limits.depth",
        "invalid value",
    );
    check(
        parse::<Api>(json!({ "limits": { "bodySize": "big" } })).unwrap_err(),
        "limits.bodySize",
        "expected a size",
    );
    check(
        parse::<Events>(json!({ "bus": "kafka" })).unwrap_err(),
        "bus",
        "unknown variant `kafka`",
    );
    check(
        parse::<Events>(json!({ "nats": { "maxAge": "1 day" } })).unwrap_err(),
        "nats.maxAge",
        "expected a duration",
    );
    check(
        parse::<Monitoring>(json!({ "ai": { "detectors": { "d": { "algorithm": "prophet" } } } }))
            .unwrap_err(),
        "ai.detectors.d.algorithm",
        "unknown variant `prophet`",
    );
    check(
        parse::<Monitoring>(json!({ "ai": { "detectors": { "d": { "sensitivity": "high" } } } }))
            .unwrap_err(),
        "ai.detectors.d.sensitivity",
        "invalid type",
    );
    check(
        parse::<Monitoring>(json!({ "ml": {} })).unwrap_err(),
        "ml",
        "unknown field `ml`",
    );
    check(
        parse::<Migration>(json!({ "compression": "lz4" })).unwrap_err(),
        "compression",
        "unknown variant `lz4`",
    );
    check(
        parse::<Migration>(json!({ "downtimeLimit": 300 })).unwrap_err(),
        "downtimeLimit",
        "expected a duration",
    );
}

#[test]
fn api_rules() {
    one_problem(
        json!({ "api": { "listen": "localhost" } }),
        "hypervisor.api.listen",
        "`localhost` is not an address and port",
    );
    one_problem(
        json!({ "api": { "listen": "127.0.0.1:99999" } }),
        "hypervisor.api.listen",
        "use one such as",
    );
    one_problem(
        json!({ "api": { "limits": { "depth": 0 } } }),
        "hypervisor.api.limits.depth",
        "use 1 or more",
    );
    one_problem(
        json!({ "api": { "limits": { "complexity": 0 } } }),
        "hypervisor.api.limits.complexity",
        "use 1 or more",
    );
    one_problem(
        json!({ "api": { "limits": { "bodySize": 0 } } }),
        "hypervisor.api.limits.bodySize",
        "larger than 0",
    );
}

#[test]
fn events_rules() {
    let nats = |n: Value| json!({ "events": { "nats": n } });
    one_problem(
        nats(json!({ "url": "http://127.0.0.1:4222" })),
        "hypervisor.events.nats.url",
        "not a NATS URL",
    );
    one_problem(
        nats(json!({ "url": "nats://" })),
        "hypervisor.events.nats.url",
        "not a NATS URL",
    );
    one_problem(
        nats(json!({ "stream": "hyper.nix" })),
        "hypervisor.events.nats.stream",
        "not a JetStream stream name",
    );
    one_problem(
        nats(json!({ "stream": "" })),
        "hypervisor.events.nats.stream",
        "not a JetStream stream name",
    );
    one_problem(
        nats(json!({ "maxAge": "0s" })),
        "hypervisor.events.nats.maxAge",
        "longer than 0",
    );
}

#[test]
fn monitoring_rules() {
    let detector = |d: Value| json!({ "monitoring": { "ai": { "detectors": { "d": d } } } });
    let at = "hypervisor.monitoring.ai.detectors.d";
    one_problem(
        detector(json!({})),
        &format!("{at}.metrics"),
        "list the metrics",
    );
    one_problem(
        detector(json!({ "metrics": [ "a", " " ] })),
        &format!("{at}.metrics[1]"),
        "give a metric name",
    );
    one_problem(
        detector(json!({ "metrics": [ "a" ], "sensitivity": 1.5 })),
        &format!("{at}.sensitivity"),
        "1.5 is out of range",
    );
    one_problem(
        detector(json!({ "metrics": [ "a" ], "sensitivity": -0.5 })),
        &format!("{at}.sensitivity"),
        "use a number from 0 to 1",
    );
    one_problem(
        detector(json!({ "metrics": [ "a" ], "persistence": 0 })),
        &format!("{at}.persistence"),
        "use 1 or more",
    );
    for unimplemented in ["robust-zscore", "spectral-residual", "isolation-forest"] {
        one_problem(
            detector(json!({ "metrics": [ "a" ], "algorithm": unimplemented })),
            &format!("{at}.algorithm"),
            &format!("`{unimplemented}` has no implementation yet; use \"ensemble\""),
        );
    }
    one_problem(
        json!({ "monitoring": { "interval": "0s" } }),
        "hypervisor.monitoring.interval",
        "longer than 0",
    );
    one_problem(
        json!({ "monitoring": { "ai": { "prediction": { "capacity": { "horizons": [ "1h", "0s" ] } } } } }),
        "hypervisor.monitoring.ai.prediction.capacity.horizons[1]",
        "longer than 0",
    );
}

#[test]
fn migration_rules() {
    for ok in ["1Gbps", "2.5Gbit", "100MB/s", "512 Mbps"] {
        assert!(
            problems(json!({ "migration": { "bandwidth": ok } })).is_empty(),
            "{ok}"
        );
    }
    for bad in ["fast", "", "0Gbps", "Gbps", "1 G b p s"] {
        one_problem(
            json!({ "migration": { "bandwidth": bad } }),
            "hypervisor.migration.bandwidth",
            "is not a rate",
        );
    }
    one_problem(
        json!({ "migration": { "downtimeLimit": "0ms" } }),
        "hypervisor.migration.downtimeLimit",
        "longer than 0",
    );
}
