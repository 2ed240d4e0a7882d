//! Composition rules: order, contracts, merging, and errors that name the components.

use hypernix_compose::{ComposeError, Values, compose};
use hypernix_config::schema::composition::Composition;
use serde_json::{Value, json};

fn lib(v: Value) -> Composition {
    serde_json::from_value(v).expect("composition parses")
}

fn bp(names: &[&str]) -> Value {
    json!({ "components": names.iter().map(|n| json!({ "component": n })).collect::<Vec<_>>() })
}

fn err(c: &Composition, name: &str) -> String {
    compose(c, name, &Values::new()).unwrap_err().to_string()
}

fn secure_web() -> Composition {
    lib(json!({
        "components": {
            "nginx-base": { "type": "service", "configuration": {
                "packages": { "install": [ "nginx" ] }, "ports": [ { "internal": 80 } ] } },
            "security-hardened": { "type": "security", "configuration": {
                "files": { "/etc/security.conf": { "content": "hardened = true\n" } } } }
        },
        "blueprints": { "secure-web": bp(&["nginx-base", "security-hardened"]) }
    }))
}

#[test]
fn secure_web_composes() {
    let c = compose(&secure_web(), "secure-web", &Values::new()).unwrap();
    let aliases: Vec<_> = c.members.iter().map(|m| m.alias.as_str()).collect();
    assert_eq!(aliases, ["nginx-base", "security-hardened"]);
    assert_eq!(c.install["nginx"], "nginx-base");
    assert_eq!(c.ports[0].internal, 80);
    assert_eq!(c.ports[0].external, None);
    assert_eq!(c.files["/etc/security.conf"].content, "hardened = true\n");
    assert_eq!(c.files["/etc/security.conf"].mode, "0644");
}

#[test]
fn requirements_order_and_pull_in() {
    let c = lib(json!({
        "components": {
            "app": { "type": "service", "compatibility": { "requires": [ "sql", "base" ] } },
            "pg": { "type": "service", "compatibility": { "provides": [ "sql" ], "requires": [ "base" ] } },
            "base": { "type": "base", "compatibility": { "requires": [ "logging" ] } },
            "syslog": { "type": "monitoring", "compatibility": { "provides": [ "logging" ] } },
            "journald": { "type": "monitoring", "compatibility": { "provides": [ "logging" ] } }
        },
        "blueprints": { "b": bp(&["app", "pg"]) }
    }));
    let got = compose(&c, "b", &Values::new()).unwrap();
    let order: Vec<_> = got.members.iter().map(|m| m.alias.as_str()).collect();
    // `base` is pulled in by name, `logging` by the first provider by name (journald).
    assert_eq!(order, ["journald", "base", "pg", "app"]);
    assert!(!got.members[0].listed && !got.members[1].listed);
    assert!(got.edges.contains(&("app".into(), "pg".into())));
}

#[test]
fn cycles_and_unmet_requirements_name_the_chain() {
    let c = lib(json!({
        "components": {
            "a": { "type": "base", "compatibility": { "requires": [ "b" ] } },
            "b": { "type": "base", "compatibility": { "requires": [ "c" ] } },
            "c": { "type": "base", "compatibility": { "requires": [ "a" ] } },
            "x": { "type": "base", "compatibility": { "requires": [ "y" ] } },
            "y": { "type": "base", "compatibility": { "requires": [ "nothing" ] } }
        },
        "blueprints": { "loop": bp(&["a"]), "unmet": bp(&["x"]) }
    }));
    assert_eq!(err(&c, "loop"), "dependency cycle: a → b → c → a");
    assert_eq!(
        err(&c, "unmet"),
        "unmet requirement: x → y needs `nothing`, which no component provides"
    );
}

#[test]
fn missing_components_and_conflicts_are_named() {
    let c = lib(json!({
        "components": {
            "mysql": { "type": "service", "compatibility": { "provides": [ "sql" ] } },
            "pg": { "type": "service", "compatibility": { "conflicts": [ "sql" ] } }
        },
        "blueprints": { "both": bp(&["mysql", "pg"]), "ghost": bp(&["mysql", "nginx"]) }
    }));
    assert_eq!(
        err(&c, "both"),
        "component `pg` conflicts with `mysql` (over `sql`)"
    );
    assert_eq!(
        err(&c, "ghost"),
        "blueprint `ghost` uses unknown component `nginx`"
    );
    assert_eq!(err(&c, "nope"), "unknown blueprint `nope`");
}

fn pair(a: Value, b: Value) -> Composition {
    lib(json!({
        "components": { "a": { "type": "service", "configuration": a },
                        "b": { "type": "service", "configuration": b } },
        "blueprints": { "ab": bp(&["a", "b"]) }
    }))
}

#[test]
fn clashes_name_both_components() {
    let cases = [
        (
            json!({ "ports": [ { "internal": 80 } ] }),
            json!({ "ports": [ { "internal": 80 } ] }),
            "both listen on guest port 80/tcp",
        ),
        (
            json!({ "ports": [ { "internal": 80, "external": 8080 } ] }),
            json!({ "ports": [ { "internal": 81, "external": 8080 } ] }),
            "both forward host port 8080",
        ),
        (
            json!({ "files": { "/etc/x": { "content": "1" } } }),
            json!({ "files": { "/etc/x": { "content": "2" } } }),
            "file /etc/x has different content",
        ),
        (
            json!({ "packages": { "install": [ "exim4" ] } }),
            json!({ "packages": { "remove": [ "exim4" ] } }),
            "package exim4 is installed by one and removed by the other",
        ),
        (
            json!({ "environment": { "MODE": "a" } }),
            json!({ "environment": { "MODE": "b" } }),
            "environment MODE is \"a\" in one and \"b\" in the other",
        ),
        (
            json!({ "volumes": [ { "name": "d", "path": "/d", "type": "persistent", "size": "1Gi" } ] }),
            json!({ "volumes": [ { "name": "e", "path": "/d", "type": "persistent", "size": "1Gi" } ] }),
            "volumes d and e both mount at /d",
        ),
    ];
    for (a, b, what) in cases {
        assert_eq!(
            err(&pair(a, b), "ab"),
            format!("components `a` and `b` clash: {what}")
        );
    }
    // The same port on another protocol, the same file twice, the same env value: fine.
    let ok = pair(
        json!({ "ports": [ { "internal": 53 } ], "files": { "/x": { "content": "1" } },
                "environment": { "K": "v" }, "packages": { "install": [ "p" ] } }),
        json!({ "ports": [ { "internal": 53, "protocol": "udp" } ], "files": { "/x": { "content": "1" } },
                "environment": { "K": "v" }, "packages": { "install": [ "p" ] } }),
    );
    let c = compose(&ok, "ab", &Values::new()).unwrap();
    assert_eq!((c.ports.len(), c.files.len(), c.install.len()), (2, 1, 1));
}

#[test]
fn resources_multiply_then_add_then_minimum_in_order() {
    let c = pair(
        json!({ "resources": { "cpu": { "multiply": 2.0, "add": 50 },
                               "memory": { "multiply": 2.0, "add": "256Mi" } } }),
        json!({ "resources": { "cpu": { "minimum": 400 }, "memory": { "minimum": "1Gi" } } }),
    );
    let c = compose(&c, "ab", &Values::new()).unwrap();
    assert_eq!(c.cpu_units(100), (400, vec!["a".into(), "b".into()]));
    assert_eq!(c.cpu_units(300), (650, vec!["a".into()]));
    assert_eq!(c.memory_bytes(512 << 20).0, 1280 << 20);
    assert_eq!(
        c.memory_bytes(128 << 20),
        (1 << 30, vec!["a".into(), "b".into()])
    );
}

#[test]
fn hooks_run_by_phase_in_dependency_order() {
    let c = lib(json!({
        "components": {
            "app": { "type": "service", "compatibility": { "requires": [ "db" ] },
                     "configuration": { "hooks": { "preInstall": "app-pre", "configure": "app-conf" } } },
            "db": { "type": "service",
                    "configuration": { "hooks": { "configure": "db-conf", "validate": "db-ok" } } }
        },
        "blueprints": { "b": bp(&["app", "db"]) }
    }));
    let got = compose(&c, "b", &Values::new()).unwrap();
    let cmds: Vec<_> = got.hooks.iter().map(|h| h.command.as_str()).collect();
    assert_eq!(cmds, ["app-pre", "db-conf", "app-conf", "db-ok"]);
}

fn wired(out_type: &str, in_type: &str, inputs: Value) -> Composition {
    lib(json!({
        "components": {
            "db": { "type": "service", "interface": {
                "inputs": { "port": { "type": "int", "default": 5432 } },
                "outputs": { "url": { "type": out_type, "value": "pg://db:${input.port}/${param.name}" } } } },
            "web": { "type": "framework", "interface": {
                "inputs": { "dbUrl": { "type": in_type, "required": true },
                            "workers": { "type": "int", "default": 2 } } },
                "configuration": { "environment": { "DB": "${input.dbUrl}", "W": "${input.workers}" } } }
        },
        "blueprints": { "app": {
            "components": [ { "component": "web", "inputs": inputs }, { "component": "db" } ],
            "parameters": { "name": { "type": "string", "default": "shop", "validation": "[a-z]+" } },
            "connections": [ { "from": "db.url", "to": "web.dbUrl" } ] } }
    }))
}

#[test]
fn connections_feed_inputs_and_are_checked_by_type() {
    let c = wired("string", "string", json!({}));
    let got = compose(&c, "app", &Values::new()).unwrap();
    assert_eq!(got.environment["DB"].value, "pg://db:5432/shop");
    assert_eq!(got.environment["W"].value, "2");
    assert_eq!(got.outputs["db.url"], "pg://db:5432/shop");
    let params: Values = [("name".to_string(), json!("books"))].into();
    let got = compose(&c, "app", &params).unwrap();
    assert_eq!(got.environment["DB"].value, "pg://db:5432/books");

    assert_eq!(
        err(&wired("string", "url", json!({})), "app"),
        "connection db.url → web.dbUrl: output type `string` does not match input type `url`"
    );
    assert_eq!(
        err(
            &wired("string", "string", json!({ "workers": "many" })),
            "app"
        ),
        "component `web`: input `workers` is \"many\", not of type `int`"
    );
    let bad: Values = [("name".to_string(), json!("Bad Name"))].into();
    assert_eq!(
        compose(&c, "app", &bad).unwrap_err().to_string(),
        "parameter `name`: \"Bad Name\" does not match `[a-z]+`"
    );
}

#[test]
fn required_inputs_must_be_given() {
    let c = lib(json!({
        "components": { "web": { "type": "framework", "interface": {
            "inputs": { "dbUrl": { "type": "string", "required": true } } } } },
        "blueprints": { "b": bp(&["web"]) }
    }));
    let e = compose(&c, "b", &Values::new()).unwrap_err();
    assert!(matches!(e, ComposeError::Contract { ref component, .. } if component == "web"));
    assert!(e.to_string().contains("needs input `dbUrl`"), "{e}");
}

#[test]
fn volumes_need_what_their_kind_needs_and_name_the_component() {
    let one = |volume: Value| {
        lib(json!({
            "components": { "store": { "type": "storage",
                                       "configuration": { "volumes": [ volume ] } } },
            "blueprints": { "b": bp(&["store"]) }
        }))
    };
    let cases = [
        (
            json!({ "name": "data", "path": "/srv/data", "type": "persistent" }),
            "component `store`: volume data: a persistent volume needs a size",
        ),
        (
            json!({ "name": "conf", "path": "/etc/app", "type": "config", "size": "1Mi" }),
            "component `store`: volume conf: a config volume is a directory and takes no size",
        ),
        (
            json!({ "name": "a-name-far-too-long", "path": "/x", "type": "ephemeral" }),
            "volume name `a-name-far-too-long`",
        ),
        (
            json!({ "name": "d", "path": "/srv/it's", "type": "ephemeral" }),
            "path `/srv/it's` must be an absolute directory",
        ),
        (
            json!({ "name": "d", "path": "srv", "type": "ephemeral" }),
            "path `srv` must be an absolute directory",
        ),
    ];
    for (volume, want) in cases {
        let e = err(&one(volume.clone()), "b");
        assert!(e.contains(want), "{volume}: {e}");
    }
    let fine = one(
        json!({ "name": "data", "path": "/srv/data", "type": "persistent",
                           "size": "64Mi" }),
    );
    assert_eq!(
        compose(&fine, "b", &Values::new()).unwrap().volumes[0].size,
        Some(64 << 20)
    );
}
