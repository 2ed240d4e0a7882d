//! Resolving 10,000 units over 200 tags and 50 policies (target < 200 ms), and the
//! Nix evaluation of the same configuration, measured separately.

use std::hint::black_box;
use std::process::Command;

use criterion::{Criterion, criterion_group, criterion_main};
use hypernix_config::Config;
use serde_json::{Map, Value, json};

const UNITS: usize = 10_000;
const TAGS: usize = 200;
const POLICIES: usize = 50;

/// A deterministic configuration of the benchmark's size. With `distinct`, no two units
/// list the same tags (the worst case: nothing merged can be shared between units).
fn generate(distinct: bool) -> Value {
    let mut tags = Map::new();
    for i in 0..TAGS {
        let values = match i % 4 {
            0 => json!({"resources": {"memory": {"size": format!("{}Mi", 256 * (1 + i % 8))}}}),
            1 => {
                json!({"resources": {"compute": {"burst": 800 + 100 * (i % 8)}}, "labels": {"perf": format!("p{i}")}})
            }
            2 => {
                json!({"features": {"isolation": {"securityLevel": "hardened"}}, "workload": {"sla": {"availability": 0.99}}})
            }
            _ => {
                json!({"features": {"persistence": {"migration": "live"}}, "labels": {"tier": format!("t{}", i % 5)}})
            }
        };
        let category = ["performance", "security", "lifecycle", "workload"][i % 4];
        tags.insert(
            format!("tag-{i}"),
            json!({"category": category, "priority": (i * 7) % 100, "values": values}),
        );
    }
    let mut policies = Map::new();
    for i in 0..POLICIES {
        let include: Vec<String> = if i % 5 == 0 {
            vec![]
        } else {
            vec![format!("policy-{}", i - 1)]
        };
        policies.insert(
            format!("policy-{i}"),
            json!({
                "tags": [format!("tag-{}", (i * 3) % TAGS), format!("tag-{}", (i * 3 + 1) % TAGS)],
                "policies": include,
                "defaults": {"workload": {"sla": {"availability": 0.9 + (i % 10) as f64 / 100.0}}, "labels": {"policy": format!("p{i}")}},
            }),
        );
    }
    let mut units = Map::new();
    for i in 0..UNITS {
        units.insert(
            format!("unit-{i:05}"),
            json!({
                "tags": if distinct {
                    json!([format!("tag-{}", i % TAGS), format!("tag-{}", (i / TAGS + i % TAGS + 1) % TAGS)])
                } else {
                    json!([format!("tag-{}", i % TAGS), format!("tag-{}", (i * 13) % TAGS), format!("tag-{}", (i * 29) % TAGS)])
                },
                "policies": [format!("policy-{}", i % POLICIES)],
                "resources": {"compute": {"units": 100 * (1 + i % 4)}},
                "labels": {"app": format!("app-{}", i % 100)},
            }),
        );
    }
    json!({"compute": {"tags": tags, "policies": policies, "units": units}})
}

/// Nix syntax for a JSON value, so the evaluator parses a real attribute set.
fn to_nix(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push_str("{ ");
            for (k, v) in m {
                out.push_str(&format!("{k:?} = "));
                to_nix(v, out);
                out.push_str("; ");
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push_str("[ ");
            for v in a {
                to_nix(v, out);
                out.push(' ');
            }
            out.push(']');
        }
        Value::String(s) => out.push_str(&format!("{s:?}")),
        other => out.push_str(&other.to_string()),
    }
}

fn bench(c: &mut Criterion) {
    let raw = generate(false);
    let Value::Object(hv) = raw.clone() else {
        unreachable!()
    };
    let config = Config::from_raw(hv.clone(), vec![]).expect("generated configuration is valid");
    let mut g = c.benchmark_group("compute");
    g.sample_size(10);
    g.bench_function("resolve 10000 units, 200 tags, 50 policies", |b| {
        b.iter(|| hypernix_compute::resolve_all(black_box(&config)).unwrap())
    });
    let Value::Object(distinct) = generate(true) else {
        unreachable!()
    };
    let distinct = Config::from_raw(distinct, vec![]).expect("generated configuration is valid");
    g.bench_function("resolve 10000 units, every tag list distinct", |b| {
        b.iter(|| hypernix_compute::resolve_all(black_box(&distinct)).unwrap())
    });
    g.bench_function("type and validate 10000 units", |b| {
        b.iter(|| Config::from_raw(black_box(hv.clone()), vec![]).unwrap())
    });
    let dir = std::env::temp_dir().join(format!("hypernix-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("units.nix");
    let mut text = String::from("{ hypervisor = ");
    to_nix(&raw, &mut text);
    text.push_str("; }\n");
    std::fs::write(&file, text).unwrap();
    g.bench_function("nix-instantiate of the same configuration", |b| {
        b.iter(|| {
            let out = Command::new("nix-instantiate")
                .args(["--eval", "--strict", "--json"])
                .arg(&file)
                .output()
                .expect("nix-instantiate runs");
            assert!(out.status.success());
        })
    });
    g.bench_function("load_paths end to end (Nix, typing, validation)", |b| {
        b.iter(|| hypernix_config::load_paths(&[&file]).unwrap())
    });
    g.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group!(benches, bench);
criterion_main!(benches);
