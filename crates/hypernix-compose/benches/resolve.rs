//! Composing a 200-component blueprint from a library of 2,000 components.

use criterion::{Criterion, criterion_group, criterion_main};
use hypernix_compose::{Values, compose};
use hypernix_config::schema::composition::{Composition, Port};
use serde_json::json;

/// 2,000 components; `c{i}` requires up to three of `f{i-10}`, `f{i-70}`, `f{i-310}`, provides
/// `f{i}`, listens on port 1000+i and writes one file. The blueprint lists
/// every tenth (`c0`, `c10`, …), whose requirements are all listed too.
fn library() -> Composition {
    let mut components = serde_json::Map::new();
    for i in 0..2000u32 {
        let requires: Vec<String> = [10, 70, 310]
            .iter()
            .filter(|&&d| i >= d)
            .map(|d| format!("f{}", i - d))
            .collect();
        components.insert(
            format!("c{i}"),
            json!({
                "type": "service",
                "compatibility": { "requires": requires, "provides": [format!("f{i}")] },
                "configuration": {
                    "resources": { "memory": { "add": "1Mi" } },
                    "environment": { format!("C{i}"): "on" },
                    "files": { format!("/etc/c{i}.conf"): { "content": format!("c = {i}\n") } },
                    "packages": { "install": [format!("pkg{i}")] }
                }
            }),
        );
    }
    let listed: Vec<_> = (0..200)
        .map(|k| json!({ "component": format!("c{}", k * 10) }))
        .collect();
    let mut c: Composition = serde_json::from_value(json!({
        "components": components,
        "blueprints": { "big": { "components": listed } }
    }))
    .expect("library parses");
    // Ports kept apart from the JSON to keep the generator short.
    for (i, comp) in c.components.values_mut().enumerate() {
        comp.configuration.ports.push(Port {
            internal: 1000 + i as u16,
            external: None,
            protocol: Default::default(),
        });
    }
    c
}

fn bench(c: &mut Criterion) {
    let lib = library();
    let composed = compose(&lib, "big", &Values::new()).expect("composes");
    assert_eq!(composed.members.len(), 200);
    c.bench_function("compose 200-of-2000", |b| {
        b.iter(|| compose(&lib, "big", &Values::new()).expect("composes"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
