//! Resolution against the seed example (through real Nix) and generated configurations.

use std::path::Path;

use hypernix_compute::{Action, ResolveError, Source, TagVia, plan, resolve_all};
use hypernix_config::{Config, Size};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config(v: Value) -> Config {
    let Value::Object(m) = v else {
        panic!("not an object")
    };
    Config::from_raw(m, vec![]).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(v: Value) -> Vec<String> {
    match resolve_all(&config(v)) {
        Ok(_) => panic!("expected resolution errors"),
        Err(e) => e.iter().map(ResolveError::to_string).collect(),
    }
}

fn has(errors: &[String], parts: &[&str]) {
    assert!(
        errors.iter().any(|e| parts.iter().all(|p| e.contains(p))),
        "no error containing {parts:?} in {errors:#?}"
    );
}

#[test]
fn explain_webserver_from_the_seed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/design/examples.nix");
    let c = hypernix_config::load_paths(&[path]).unwrap();
    let units = resolve_all(&c).unwrap();
    let w = &units["webserver"];
    assert_eq!((w.cpu.vcpus, w.cpu.max_vcpus), (4, 8));
    let tag = |name: &str, priority, via| Source::Tag {
        name: name.into(),
        priority,
        via,
    };
    assert_eq!(
        w.source_of("resources.compute.burst"),
        tag("high-performance", 60, None)
    );
    assert_eq!(w.source_of("resources.compute.units"), Source::Unit);
    assert_eq!(
        w.source_of("features.isolation.securityLevel"),
        tag("secure-boot", 70, None)
    );
    assert_eq!(w.memory, Size(512 << 20));
    assert_eq!(
        w.source_of("resources.memory.size"),
        Source::Policy {
            name: "web-tier".into(),
            via: vec![]
        }
    );
    assert_eq!(w.settings.workload.sla.availability, Some(0.999));
    assert_eq!(
        w.source_of("workload.sla.availability"),
        Source::Policy {
            name: "production".into(),
            via: vec![]
        }
    );
    assert_eq!(
        w.source_of("features.persistence.migration"),
        tag("production", 40, Some(TagVia::Policy("production".into())))
    );
    assert_eq!(
        w.source_of("features.persistence.stateful"),
        Source::Default
    );
    let p = &units["prod-web"];
    assert_eq!(p.settings.storage[0].tier, Some(0));
    assert_eq!(p.memory, Size(1 << 30));
}

#[test]
fn reference_and_layer_errors() {
    let e = errors(json!({"compute": {
        "tags": {"fast": {"category": "performance"}},
        "units": {"a": {"tags": ["fsat"], "policies": ["prod"]}},
        "policies": {"prd": {}}
    }}));
    has(
        &e,
        &[
            "hypervisor.compute.units.a.tags[0]",
            "unknown tag `fsat`",
            "did you mean `fast`",
        ],
    );
    has(
        &e,
        &[
            "hypervisor.compute.units.a.policies[0]",
            "unknown policy `prod`",
            "did you mean `prd`",
        ],
    );

    let e = errors(json!({"compute": {
        "policies": {"a": {"policies": ["b"]}, "b": {"policies": ["c"]}, "c": {"policies": ["a"]}},
        "units": {"u": {"policies": ["a"]}}
    }}));
    has(&e, &["cycle", "a -> b -> c -> a"]);

    let e = errors(json!({"compute": {
        "tags": {"t": {"category": "security", "values": {"tags": ["t"]}}},
        "policies": {"p": {"defaults": {"uuid": "x"}, "tags": ["nope"]}},
        "defaults": {"defaultTags": ["gone"], "resourceMultiplier": 0.0}
    }}));
    has(
        &e,
        &["hypervisor.compute.tags.t.values.tags", "cannot set `tags`"],
    );
    has(
        &e,
        &[
            "hypervisor.compute.policies.p.defaults.uuid",
            "cannot set `uuid`",
        ],
    );
    has(
        &e,
        &[
            "hypervisor.compute.policies.p.tags[0]",
            "unknown tag `nope`",
        ],
    );
    has(
        &e,
        &[
            "hypervisor.compute.defaults.defaultTags[0]",
            "unknown tag `gone`",
        ],
    );
    has(
        &e,
        &["hypervisor.compute.defaults.resourceMultiplier", "positive"],
    );

    let e = errors(
        json!({"compute": {"units": {"u": {"resources": {"compute": {"units": 400, "burst": 200}}}}}}),
    );
    has(&e, &["hypervisor.compute.units.u", "burst (200) is below"]);
}

#[test]
fn policy_constraints() {
    let base = |units: u32, constraints: Value| {
        json!({"compute": {
            "policies": {"small": {"constraints": constraints}},
            "units": {"u": {"policies": ["small"], "resources": {"compute": {"units": units}, "memory": {"size": "2Gi"}}}}
        }})
    };
    let ok = base(
        200,
        json!({"resources": {"compute": {"units": {"max": 400}}, "memory": {"size": {"max": "4Gi"}}}}),
    );
    assert!(resolve_all(&config(ok)).is_ok());
    let e = errors(base(
        800,
        json!({"resources": {"compute": {"units": {"max": 400}}}}),
    ));
    has(
        &e,
        &[
            "hypervisor.compute.units.u",
            "resources.compute.units",
            "800",
            "max 400",
            "`small`",
        ],
    );
    let e = errors(base(
        200,
        json!({"resources": {"memory": {"size": {"max": "1Gi"}}}}),
    ));
    has(&e, &["resources.memory.size", "max \"1Gi\""]);
    let e = errors(base(
        200,
        json!({"workload": {"type": {"oneOf": ["batch"]}}}),
    ));
    has(&e, &["workload.type", "oneOf"]);
    let e = errors(base(200, json!({"resources": {"memroy": {"max": 1}}})));
    has(
        &e,
        &["constraints.resources.memroy", "did you mean `memory`"],
    );
    let e = errors(base(
        200,
        json!({"resources": {"compute": {"units": {"max": "lots"}}}}),
    ));
    has(
        &e,
        &[
            "constraints.resources.compute.units.max",
            "number, size or duration",
        ],
    );
    let e = errors(base(
        200,
        json!({"resources": {"compute": {"units": {"atMost": 3}}}}),
    ));
    has(
        &e,
        &[
            "constraints.resources.compute.units.atMost",
            "expected { min; max; oneOf; }",
        ],
    );
}

#[test]
fn nested_policies_apply_included_first() {
    let c = config(json!({"compute": {
        "policies": {
            "base": {"defaults": {"resources": {"memory": {"size": "1Gi"}}, "labels": {"a": "base"}}},
            "prod": {"policies": ["base"], "defaults": {"labels": {"a": "prod"}}}
        },
        "units": {"u": {"policies": ["prod"]}}
    }}));
    let u = &resolve_all(&c).unwrap()["u"];
    assert_eq!(u.policies, ["base", "prod"]);
    assert_eq!(u.settings.labels["a"], "prod");
    assert_eq!(
        u.source_of("resources.memory.size"),
        Source::Policy {
            name: "base".into(),
            via: vec!["prod".into()]
        }
    );
    assert_eq!(u.overrides.len(), 1);
}

/// A generated configuration: tags and policies setting random fields, one unit.
fn arb_config() -> impl Strategy<Value = (Value, Vec<(&'static str, Value)>)> {
    let field = prop_oneof![
        (1u32..64).prop_map(|g| ("resources.memory.size", json!(format!("{g}Gi")))),
        (1u32..16).prop_map(|b| ("resources.compute.burst", json!(b * 100 + 800))),
        prop_oneof![Just("standard"), Just("hardened")]
            .prop_map(|l| ("features.isolation.securityLevel", json!(l))),
        (0u32..3).prop_map(|v| ("labels.team", json!(format!("t{v}")))),
        (0u32..1000).prop_map(|a| ("workload.sla.availability", json!(f64::from(a) / 1000.0))),
    ];
    let fields = prop::collection::vec(field, 0..4);
    (
        prop::collection::vec((-5i64..5, fields.clone()), 1..6),
        prop::collection::vec(
            (prop::collection::vec(0usize..6, 0..3), fields.clone()),
            0..4,
        ),
        prop::collection::vec(0usize..6, 0..4),
        prop::collection::vec(0usize..4, 0..3),
        fields,
    )
        .prop_map(|(tags, policies, unit_tags, unit_policies, own)| {
            let mut t = serde_json::Map::new();
            for (i, (priority, fs)) in tags.iter().enumerate() {
                t.insert(
                    format!("t{i}"),
                    json!({"category": "workload", "priority": priority, "values": nest(fs)}),
                );
            }
            let n = tags.len();
            let mut p = serde_json::Map::new();
            for (i, (ts, fs)) in policies.iter().enumerate() {
                let ts: Vec<String> = ts.iter().map(|x| format!("t{}", x % n)).collect();
                p.insert(format!("p{i}"), json!({"tags": ts, "defaults": nest(fs)}));
            }
            let ut: Vec<String> = unit_tags.iter().map(|x| format!("t{}", x % n)).collect();
            let up: Vec<String> = if policies.is_empty() {
                vec![]
            } else {
                unit_policies
                    .iter()
                    .map(|x| format!("p{}", x % policies.len()))
                    .collect()
            };
            let mut unit = nest(&own);
            unit["tags"] = json!(ut);
            unit["policies"] = json!(up);
            (
                json!({"compute": {"tags": t, "policies": p, "units": {"u": unit}}}),
                own,
            )
        })
}

fn nest(fields: &[(&str, Value)]) -> Value {
    let mut v = json!({});
    for (path, value) in fields {
        let mut at = &mut v;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert(json!({}));
        }
        at[parts[parts.len() - 1]] = value.clone();
    }
    v
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, p| &v[p])
}

proptest! {
    #[test]
    fn resolution_is_deterministic_and_the_unit_wins((raw, own) in arb_config()) {
        let c = config(raw.clone());
        let a = resolve_all(&c).unwrap();
        let b = resolve_all(&config(raw)).unwrap();
        prop_assert_eq!(serde_json::to_value(&a).unwrap(), serde_json::to_value(&b).unwrap());
        let u = &a["u"];
        let settings = serde_json::to_value(&u.settings).unwrap();
        // The last value the unit gives a field is the one it has.
        let expected = nest(&own);
        for (path, _) in &own {
            prop_assert_eq!(get(&settings, path), get(&expected, path), "{}", path);
            prop_assert_eq!(u.source_of(path), Source::Unit);
        }
    }

    #[test]
    fn a_tag_change_plans_exactly_the_units_using_it(uses in prop::collection::vec(any::<bool>(), 1..20)) {
        let make = |size: &str| {
            let mut units = serde_json::Map::new();
            for (i, used) in uses.iter().enumerate() {
                let tags = if *used { json!(["big", "other"]) } else { json!(["other"]) };
                units.insert(format!("u{i:02}"), json!({"tags": tags}));
            }
            config(json!({"compute": {
                "tags": {
                    "big": {"category": "performance", "values": {"resources": {"memory": {"size": size}}}},
                    "other": {"category": "workload", "values": {"labels": {"x": "y"}}}
                },
                "units": units
            }}))
        };
        let old = resolve_all(&make("2Gi")).unwrap();
        let new = resolve_all(&make("4Gi")).unwrap();
        let p = plan(&old, &new);
        let planned: Vec<&str> = p.units.iter().map(|u| u.unit.as_str()).collect();
        let expected: Vec<String> = uses.iter().enumerate().filter(|(_, u)| **u).map(|(i, _)| format!("u{i:02}")).collect();
        prop_assert_eq!(planned, expected.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert!(p.units.iter().all(|u| u.action == Action::Restart));
        // Shrinking the same memory is a balloon change, applied live.
        let back = plan(&new, &old);
        prop_assert!(back.units.iter().all(|u| u.action == Action::ApplyLive));
        prop_assert_eq!(back.units.len(), expected.len());
    }
}

#[test]
fn plan_classifies_live_and_restart_changes() {
    let make = |units: u32, burst: u32, label: &str, arch: &str| {
        config(json!({"compute": {"units": {
            "a": {"labels": {"v": label}, "resources": {"compute": {"units": units, "burst": burst, "architecture": arch}}},
            "gone": {}
        }}}))
    };
    let old = resolve_all(&make(200, 800, "1", "x86_64")).unwrap();
    let live = resolve_all(&make(400, 800, "2", "x86_64")).unwrap();
    let p = plan(&old, &live);
    assert_eq!(p.units.len(), 1);
    assert_eq!(p.units[0].action, Action::ApplyLive);
    assert!(
        p.units[0]
            .fields
            .iter()
            .any(|f| f.path == "resources.compute.units" && f.reason.contains("hotplug"))
    );
    let restart = resolve_all(&make(400, 1600, "1", "aarch64")).unwrap();
    let p = plan(&old, &restart);
    assert_eq!(p.units[0].action, Action::Restart);
    let burst = p.units[0]
        .fields
        .iter()
        .find(|f| f.path == "resources.compute.burst")
        .unwrap();
    assert!(!burst.live && burst.reason.contains("fixed at boot"));
    let mut fewer = config(json!({"compute": {"units": {"new": {}}}}));
    fewer.files.clear();
    let p = plan(&old, &resolve_all(&fewer).unwrap());
    let actions: Vec<Action> = p.units.iter().map(|u| u.action).collect();
    assert_eq!(actions, [Action::Destroy, Action::Destroy, Action::Create]);
}
