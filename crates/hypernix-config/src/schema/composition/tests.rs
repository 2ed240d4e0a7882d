use serde_json::{Value, json};

use super::*;
use crate::schema::compute::Architecture;
use crate::values::Size;

fn parse(v: Value) -> Result<Composition, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn problems(v: Value) -> Vec<String> {
    let composition = parse(v).expect("parses");
    let mut problems = Problems::default();
    composition.validate(&mut problems);
    problems.0.iter().map(ToString::to_string).collect()
}

/// Asserts that validating `v` reports exactly one problem, at `path`, mentioning `needle`.
fn one_problem(v: Value, path: &str, needle: &str) {
    let got = problems(v);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{path}: ")), "{got:#?}");
    assert!(got[0].contains(needle), "{got:#?}");
}

/// Components `db` (output `url`) and `app` (input `dbUrl`, required; input `workers`).
fn wired(blueprint: Value) -> Value {
    json!({
        "components": {
            "db": { "type": "service", "interface": { "outputs": { "url": { "type": "string", "value": "postgres://db" } } } },
            "app": { "type": "runtime", "interface": { "inputs": {
                "dbUrl": { "type": "string", "required": true },
                "workers": { "type": "int", "default": 4 }
            } } }
        },
        "blueprints": { "bp": blueprint }
    })
}

/// A component `c` with `configuration` set.
fn configured(configuration: Value) -> Value {
    json!({ "components": { "c": { "type": "base", "configuration": configuration } } })
}

#[test]
fn minimal_is_all_defaults() {
    let c = parse(json!({})).unwrap();
    assert_eq!(c, Composition::default());
    assert!(problems(json!({})).is_empty());

    let c = parse(json!({ "components": { "x": { "type": "base" } },
                          "blueprints": { "b": { "components": [ { "component": "x" } ] } } }))
    .unwrap();
    let x = &c.components["x"];
    assert_eq!(x.version, "1.0.0");
    assert_eq!(x.kind, ComponentKind::Base);
    assert_eq!(x.compatibility.architectures, [Architecture::X86_64]);
    assert!(x.compatibility.requires.is_empty());
    let r = &x.configuration.resources;
    assert_eq!((r.cpu.add, r.cpu.multiply, r.cpu.minimum), (0, 1.0, 0));
    assert_eq!(
        (r.memory.add, r.memory.multiply, r.memory.minimum),
        (Size(0), 1.0, Size(0))
    );
    assert_eq!(x.configuration.hooks, Hooks::default());
    assert_eq!(x.interface, Interface::default());
    let b = &c.blueprints["b"];
    assert_eq!(b.components[0].alias(), "x");
    assert!(b.components[0].inputs.is_empty());
    let port: Port = serde_json::from_value(json!({ "internal": 80 })).unwrap();
    assert_eq!((port.external, port.protocol), (None, Protocol::Tcp));
    let file: File = serde_json::from_value(json!({ "content": "" })).unwrap();
    assert_eq!(
        (file.mode.as_str(), file.owner.as_str(), file.group.as_str()),
        ("0644", "root", "root")
    );
    let parameter: Parameter = serde_json::from_value(json!({})).unwrap();
    assert_eq!(parameter.kind, "string");
    assert_eq!(parameter.default, None);
}

fn full() -> Value {
    json!({
        "components": {
            "postgres": {
                "version": "15.2.0",
                "type": "service",
                "compatibility": { "architectures": [ "x86_64", "aarch64" ], "requires": [ "base" ],
                                   "conflicts": [ "mysql" ], "provides": [ "sql" ] },
                "configuration": {
                    "resources": { "cpu": { "add": 100, "multiply": 1.5, "minimum": 200 },
                                   "memory": { "add": "512Mi", "multiply": 2.0, "minimum": "1Gi" } },
                    "environment": { "PGDATA": "/var/lib/postgresql" },
                    "ports": [ { "internal": 5432, "external": 15432, "protocol": "tcp" },
                               { "internal": 5432, "protocol": "udp" } ],
                    "volumes": [ { "name": "data", "path": "/var/lib/postgresql", "type": "persistent", "size": "10Gi" },
                                 { "name": "secrets", "path": "/run/secrets", "type": "secret" } ],
                    "files": { "/etc/postgresql/extra.conf": { "content": "max_connections = 100\n", "mode": "0640",
                                                               "owner": "postgres", "group": "postgres" } },
                    "packages": { "install": [ "postgresql" ], "remove": [ "mariadb-server" ] },
                    "hooks": { "preInstall": "true", "postInstall": "true", "configure": "true", "validate": "pg_isready" }
                },
                "interface": {
                    "inputs": { "password": { "type": "string", "required": true },
                                "maxConnections": { "type": "int", "default": 100 } },
                    "outputs": { "url": { "type": "string", "value": "postgres://localhost:5432" } },
                    "events": [ "ready" ]
                }
            },
            "web": { "type": "framework", "interface": { "inputs": { "databaseUrl": { "type": "string", "required": true } } } }
        },
        "blueprints": {
            "app": {
                "components": [ { "component": "postgres", "alias": "db", "inputs": { "password": "secret" } },
                                { "component": "web" } ],
                "parameters": { "domain": { "type": "string", "default": "example.org", "validation": "^[a-z.]+$" } },
                "connections": [ { "from": "db.url", "to": "web.databaseUrl" } ]
            }
        }
    })
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let c = parse(full()).unwrap();
    let pg = &c.components["postgres"];
    assert_eq!(pg.kind, ComponentKind::Service);
    assert_eq!(
        pg.compatibility.architectures,
        [Architecture::X86_64, Architecture::Aarch64]
    );
    let conf = &pg.configuration;
    assert_eq!(conf.resources.cpu.add, 100);
    assert_eq!(conf.resources.memory.minimum, Size(1 << 30));
    assert_eq!(conf.ports[1].protocol, Protocol::Udp);
    assert_eq!(conf.volumes[0].kind, VolumeKind::Persistent);
    assert_eq!(conf.volumes[1].size, None);
    assert_eq!(conf.files["/etc/postgresql/extra.conf"].mode, "0640");
    assert_eq!(conf.hooks.validate.as_deref(), Some("pg_isready"));
    assert!(pg.interface.inputs["password"].required);
    assert_eq!(
        pg.interface.inputs["maxConnections"].default,
        Some(json!(100))
    );
    assert_eq!(pg.interface.outputs["url"].kind, "string");
    let app = &c.blueprints["app"];
    assert_eq!(app.components[0].alias(), "db");
    assert_eq!(app.components[1].alias(), "web");
    assert_eq!(app.parameters["domain"].default, Some(json!("example.org")));
    assert_eq!(app.connections[0].to, "web.databaseUrl");
    assert!(problems(full()).is_empty(), "{:#?}", problems(full()));
    let back = serde_json::to_value(&c).unwrap();
    assert_eq!(parse(back).unwrap(), c);
}

#[test]
fn examples_nix_composition_is_clean() {
    let v = json!({
        "components": {
            "nginx-base": { "type": "service", "configuration": {
                "packages": { "install": [ "nginx" ] }, "ports": [ { "internal": 80 } ] } },
            "security-hardened": { "type": "security", "configuration": {
                "files": { "/etc/security.conf": { "content": "hardened = true\n" } } } }
        },
        "blueprints": { "secure-web": { "components": [ { "component": "nginx-base" }, { "component": "security-hardened" } ] } }
    });
    let c = parse(v.clone()).unwrap();
    assert_eq!(
        c.components["nginx-base"].configuration.ports[0].internal,
        80
    );
    assert_eq!(
        c.components["security-hardened"].configuration.files["/etc/security.conf"].mode,
        "0644"
    );
    let got = problems(v);
    assert!(got.is_empty(), "{got:#?}");
}

#[test]
fn malformed_input_names_the_attribute() {
    let cases = [
        (
            json!({ "components": { "c": {} } }),
            "components.c",
            "missing field `type`",
        ),
        (
            json!({ "components": { "c": { "type": "plugin" } } }),
            "components.c.type",
            "unknown variant `plugin`",
        ),
        (
            json!({ "components": { "c": { "type": "base", "owner": "me" } } }),
            "components.c.owner",
            "unknown field `owner`",
        ),
        (
            json!({ "components": { "c": { "type": "base", "compatibility": { "architectures": [ "riscv64" ] } } } }),
            "components.c.compatibility.architectures[0]",
            "unknown variant `riscv64`",
        ),
        (
            configured(json!({ "ports": [ { "internal": 70000 } ] })),
            "components.c.configuration.ports[0].internal",
            "invalid value",
        ),
        (
            configured(json!({ "ports": [ { "internal": 53, "protocol": "sctp" } ] })),
            "components.c.configuration.ports[0].protocol",
            "unknown variant `sctp`",
        ),
        (
            configured(json!({ "volumes": [ { "name": "v", "path": "/v" } ] })),
            "components.c.configuration.volumes[0]",
            "missing field `type`",
        ),
        (
            configured(json!({ "files": { "/etc/x": { "mode": "0600" } } })),
            "components.c.configuration.files./etc/x",
            "missing field `content`",
        ),
        (
            configured(json!({ "resources": { "memory": { "add": "lots" } } })),
            "components.c.configuration.resources.memory.add",
            "expected a size",
        ),
        (
            configured(json!({ "environment": { "A": 1 } })),
            "components.c.configuration.environment.A",
            "invalid type",
        ),
        (
            json!({ "components": { "c": { "type": "base", "interface": { "outputs": { "o": { "type": "string" } } } } } }),
            "components.c.interface.outputs.o",
            "missing field `value`",
        ),
        (
            json!({ "blueprints": { "b": { "components": [ { "alias": "x" } ] } } }),
            "blueprints.b.components[0]",
            "missing field `component`",
        ),
        (
            json!({ "blueprints": { "b": { "connections": [ { "from": "a.b" } ] } } }),
            "blueprints.b.connections[0]",
            "missing field `to`",
        ),
    ];
    for (input, path, needle) in cases {
        let err = parse(input).unwrap_err();
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn component_rules() {
    let at = "hypervisor.composition.components.c";
    one_problem(
        json!({ "components": { "c": { "type": "base", "version": "1.0" } } }),
        &format!("{at}.version"),
        "use MAJOR.MINOR.PATCH",
    );
    assert!(
        problems(json!({ "components": { "c": { "type": "base", "version": "2.1.0-rc.1" } } }))
            .is_empty()
    );
    one_problem(
        json!({ "components": { "c": { "type": "base", "compatibility": { "architectures": [] } } } }),
        &format!("{at}.compatibility.architectures"),
        "runs nowhere",
    );
    let conf = format!("{at}.configuration");
    one_problem(
        configured(json!({ "resources": { "cpu": { "multiply": -1 } } })),
        &format!("{conf}.resources.cpu.multiply"),
        "negative",
    );
    one_problem(
        configured(json!({ "environment": { "1X": "y" } })),
        &format!("{conf}.environment.\"1X\""),
        "not an environment variable name",
    );
    one_problem(
        configured(json!({ "ports": [ { "internal": 0 } ] })),
        &format!("{conf}.ports[0].internal"),
        "use a port from 1 to 65535",
    );
    one_problem(
        configured(
            json!({ "ports": [ { "internal": 80 }, { "internal": 80, "external": 8080 } ] }),
        ),
        &format!("{conf}.ports[1].internal"),
        "port 80 is listed twice",
    );
    one_problem(
        configured(json!({ "ports": [ { "internal": 80, "external": 0 } ] })),
        &format!("{conf}.ports[0].external"),
        "leave it unset",
    );
    let volume =
        |name: &str, path: &str| json!({ "name": name, "path": path, "type": "ephemeral" });
    one_problem(
        configured(json!({ "volumes": [ volume("v", "/a"), volume("v", "/b") ] })),
        &format!("{conf}.volumes[1].name"),
        "already named `v`",
    );
    one_problem(
        configured(json!({ "volumes": [ volume("v", "data") ] })),
        &format!("{conf}.volumes[0].path"),
        "not an absolute path",
    );
    one_problem(
        configured(
            json!({ "volumes": [ { "name": "v", "path": "/v", "type": "config", "size": "0" } ] }),
        ),
        &format!("{conf}.volumes[0].size"),
        "larger than 0",
    );
    one_problem(
        configured(json!({ "files": { "etc/x": { "content": "" } } })),
        &format!("{conf}.files.\"etc/x\""),
        "not an absolute path",
    );
    one_problem(
        configured(json!({ "files": { "/etc/x": { "content": "", "mode": "rw-r--r--" } } })),
        &format!("{conf}.files.\"/etc/x\".mode"),
        "not an octal mode",
    );
    one_problem(
        configured(json!({ "files": { "/etc/x": { "content": "", "owner": "" } } })),
        &format!("{conf}.files.\"/etc/x\".owner"),
        "is empty",
    );
}

#[test]
fn blueprint_components_must_exist() {
    one_problem(
        json!({ "components": { "nginx-base": { "type": "service" } },
                "blueprints": { "b": { "components": [ { "component": "nginx-bsae" } ] } } }),
        "hypervisor.composition.blueprints.b.components[0].component",
        "unknown component `nginx-bsae`; did you mean `nginx-base`?",
    );
    one_problem(
        json!({ "blueprints": { "b": {} } }),
        "hypervisor.composition.blueprints.b.components",
        "is empty",
    );
}

#[test]
fn blueprint_aliases_are_unique_and_dotless() {
    let at = "hypervisor.composition.blueprints.bp";
    let v = json!({ "components": { "x": { "type": "base" } }, "blueprints": { "bp": { "components": [
        { "component": "x" }, { "component": "x" } ] } } });
    one_problem(
        v,
        &format!("{at}.components[1].component"),
        "alias `x` is already used by components[0]",
    );
    let v = json!({ "components": { "x": { "type": "base" } }, "blueprints": { "bp": { "components": [
        { "component": "x", "alias": "one" }, { "component": "x", "alias": "one" } ] } } });
    one_problem(
        v,
        &format!("{at}.components[1].alias"),
        "give this one its own alias",
    );
    let v = json!({ "components": { "x": { "type": "base" } }, "blueprints": { "bp": { "components": [
        { "component": "x", "alias": "a.b" } ] } } });
    one_problem(
        v,
        &format!("{at}.components[0].alias"),
        "set an alias without a dot",
    );
    let v = json!({ "components": { "x": { "type": "base" } }, "blueprints": { "bp": { "components": [
        { "component": "x", "alias": "one" }, { "component": "x", "alias": "two" } ] } } });
    assert!(problems(v).is_empty());
}

#[test]
fn blueprint_inputs_and_connections() {
    let at = "hypervisor.composition.blueprints.bp";
    let both = |connections: Value, app_inputs: Value| {
        wired(
            json!({ "components": [ { "component": "db" }, { "component": "app", "inputs": app_inputs } ],
                      "connections": connections }),
        )
    };
    assert!(
        problems(both(
            json!([ { "from": "db.url", "to": "app.dbUrl" } ]),
            json!({})
        ))
        .is_empty()
    );
    assert!(problems(both(json!([]), json!({ "dbUrl": "x", "workers": 2 }))).is_empty());
    one_problem(
        both(json!([]), json!({})),
        &format!("{at}.components[1]"),
        "needs input `dbUrl`; set inputs.dbUrl or connect an output to `app.dbUrl`",
    );
    let got = problems(both(json!([]), json!({ "dbUrl": "x", "wrokers": 2 })));
    assert_eq!(
        got,
        [format!(
            "{at}.components[1].inputs.wrokers: unknown `app` input `wrokers`; did you mean `workers`?"
        )]
    );
    one_problem(
        both(json!([ { "from": "db", "to": "app.dbUrl" } ]), json!({})),
        &format!("{at}.connections[0].from"),
        "`db` is not written alias.output",
    );
    one_problem(
        both(
            json!([ { "from": "dbb.url", "to": "app.dbUrl" } ]),
            json!({}),
        ),
        &format!("{at}.connections[0].from"),
        "unknown alias `dbb`; did you mean `db`?",
    );
    one_problem(
        both(
            json!([ { "from": "db.uri", "to": "app.dbUrl" } ]),
            json!({}),
        ),
        &format!("{at}.connections[0].from"),
        "unknown `db` output `uri`; did you mean `url`?",
    );
    let got = problems(both(
        json!([ { "from": "db.url", "to": "app.dburl" } ]),
        json!({}),
    ));
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with(&format!(
            "{at}.connections[0].to: unknown `app` input `dburl`; did you mean `dbUrl`?"
        )),
        "{got:#?}"
    );
    assert!(got[1].contains("needs input `dbUrl`"), "{got:#?}");
    one_problem(
        both(
            json!([ { "from": "db.url", "to": "app.dbUrl" }, { "from": "db.url", "to": "app.dbUrl" } ]),
            json!({}),
        ),
        &format!("{at}.connections[1].to"),
        "already fed by connections[0]",
    );
    one_problem(
        both(
            json!([ { "from": "db.url", "to": "app.dbUrl" } ]),
            json!({ "dbUrl": "x" }),
        ),
        &format!("{at}.connections[0].to"),
        "also set in components[1].inputs",
    );
}

#[test]
fn blueprint_conflicts() {
    let v = json!({
        "components": {
            "mysql": { "type": "service", "compatibility": { "provides": [ "sql" ] } },
            "pg": { "type": "service", "compatibility": { "conflicts": [ "sql" ] } }
        },
        "blueprints": { "b": { "components": [ { "component": "mysql" }, { "component": "pg" } ] } }
    });
    one_problem(
        v,
        "hypervisor.composition.blueprints.b.components[1]",
        "component `pg` conflicts with `sql`, which components[0] (`mysql`) brings",
    );
}
