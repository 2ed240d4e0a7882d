use serde_json::{Value, json};

use super::*;

fn parse(v: Value) -> Result<Security, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn problems(v: Value) -> Vec<String> {
    let security = parse(v).expect("parses");
    let mut problems = Problems::default();
    security.validate(&mut problems);
    problems.0.iter().map(ToString::to_string).collect()
}

/// Asserts that validating `v` reports exactly one problem, at `path`, mentioning `needle`.
fn one_problem(v: Value, path: &str, needle: &str) {
    let got = problems(v);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{path}: ")), "{got:#?}");
    assert!(got[0].contains(needle), "{got:#?}");
}

/// One capability `ops` and one user `alice` with this grant.
fn with_grant(grant: Value) -> Value {
    json!({ "capabilities": { "ops": {} }, "principals": { "alice": { "type": "user", "grants": [ grant ] } } })
}

#[test]
fn minimal_is_all_defaults() {
    let s = parse(json!({})).unwrap();
    assert_eq!(s, Security::default());
    assert!(s.zero_trust.continuous.verification);
    assert_eq!(s.zero_trust.continuous.interval, Duration::secs(300));
    assert_eq!(s.defaults.session_timeout, Duration::secs(8 * 3600));
    assert!(problems(json!({})).is_empty());

    let s = parse(with_grant(json!({ "capability": "ops" }))).unwrap();
    let c = &s.capabilities["ops"];
    assert_eq!(c, &Capability::default());
    assert!(
        !c.resources.compute.console && !c.resources.storage.write && !c.resources.cluster.join
    );
    assert_eq!(c.scope, None);
    assert!(!c.delegation.allowed);
    assert_eq!(c.delegation.max_depth, 0);
    let alice = &s.principals["alice"];
    assert_eq!(alice.kind, PrincipalKind::User);
    assert!(alice.members.is_empty());
    let g = &alice.grants[0];
    assert_eq!(g.scope, None);
    assert_eq!(g.temporal, Temporal::default());
    assert!(!g.emergency.break_glass);
    let schedule: Schedule = serde_json::from_value(json!({})).unwrap();
    assert_eq!(schedule.timezone, "UTC");
}

fn full() -> Value {
    json!({
        "capabilities": {
            "operator": {
                "description": "runs the web tier",
                "operations": [ "unit.start", "unit.stop" ],
                "resources": {
                    "compute": { "create": true, "modify": true, "delete": true, "control": true,
                                 "console": true, "limits": { "maxUnits": 10 } },
                    "storage": { "read": true, "write": true, "allocate": true, "snapshot": true,
                                 "tiers": [ 0, 1 ], "quota": "100Gi" },
                    "network": { "configure": true, "attach": true, "create": true },
                    "cluster": { "join": true, "configure": true, "schedule": true }
                },
                "scope": { "labels": { "tier": "frontend" } },
                "delegation": { "allowed": true, "maxDepth": 2 }
            }
        },
        "principals": {
            "alice": { "type": "user" },
            "ci": { "type": "service" },
            "ops": {
                "type": "group",
                "members": [ "alice", "ci" ],
                "grants": [ {
                    "capability": "operator",
                    "scope": { "labels": { "env": "prod" } },
                    "temporal": {
                        "validity": { "start": "2026-01-01T00:00:00Z", "end": "2026-12-31T23:59:59+01:00",
                                      "duration": "30d" },
                        "schedule": { "timezone": "Europe/Paris", "windows": [
                            { "days": [ "monday", "tuesday", "wednesday", "thursday", "friday" ],
                              "startTime": "08:00", "endTime": "18:00" },
                            { "days": [ "saturday", "sunday" ], "startTime": "22:00", "endTime": "02:00" }
                        ] },
                        "usage": { "maxUses": 100, "rateLimit": { "requests": 10, "window": "1m" } }
                    },
                    "emergency": { "breakGlass": true, "notificationList": [ "security@example.org" ] }
                } ]
            },
            "deploy-token": { "type": "token", "grants": [ { "capability": "operator" } ] }
        },
        "zeroTrust": { "continuous": { "verification": false, "interval": "1m" } },
        "defaults": { "sessionTimeout": "1h" }
    })
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let s = parse(full()).unwrap();
    let c = &s.capabilities["operator"];
    assert_eq!(c.operations.len(), 2);
    assert_eq!(c.resources.compute.limits.max_units, Some(10));
    assert_eq!(c.resources.storage.tiers, [0, 1]);
    assert_eq!(c.resources.storage.quota, Some(Size(100 << 30)));
    assert!(c.resources.network.create && c.resources.cluster.schedule);
    assert_eq!(c.scope.as_ref().unwrap().labels["tier"], "frontend");
    assert_eq!(c.delegation.max_depth, 2);
    let ops = &s.principals["ops"];
    assert_eq!(ops.kind, PrincipalKind::Group);
    assert_eq!(ops.members, ["alice", "ci"]);
    let t = &ops.grants[0].temporal;
    assert_eq!(
        t.validity.start.unwrap().to_string(),
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(t.validity.duration, Some(Duration::secs(30 * 86_400)));
    let schedule = t.schedule.as_ref().unwrap();
    assert_eq!(schedule.windows[0].days.len(), 5);
    assert_eq!(schedule.windows[1].days, [Day::Saturday, Day::Sunday]);
    assert_eq!(schedule.windows[1].end_time.to_string(), "02:00");
    assert_eq!(
        t.usage.rate_limit.as_ref().unwrap().window,
        Duration::secs(60)
    );
    assert!(ops.grants[0].emergency.break_glass);
    assert_eq!(s.principals["deploy-token"].kind, PrincipalKind::Token);
    assert!(!s.zero_trust.continuous.verification);
    assert_eq!(s.defaults.session_timeout, Duration::secs(3600));
    assert!(problems(full()).is_empty(), "{:#?}", problems(full()));
    let back = serde_json::to_value(&s).unwrap();
    assert_eq!(parse(back).unwrap(), s);
}

#[test]
fn examples_nix_security_is_clean() {
    let v = json!({ "capabilities": { "web-operator": {
        "resources": { "compute": { "control": true, "console": true, "limits": { "maxUnits": 10 } } }
    } } });
    let s = parse(v.clone()).unwrap();
    let compute = &s.capabilities["web-operator"].resources.compute;
    assert!(compute.control && compute.console && !compute.create);
    assert_eq!(compute.limits.max_units, Some(10));
    assert!(problems(v).is_empty());
}

#[test]
fn malformed_input_names_the_attribute() {
    let cases = [
        (
            json!({ "capabilities": { "c": { "resources": { "compute": { "reboot": true } } } } }),
            "capabilities.c.resources.compute.reboot",
            "unknown field `reboot`",
        ),
        (
            json!({ "capabilities": { "c": { "resources": { "storage": { "read": "yes" } } } } }),
            "capabilities.c.resources.storage.read",
            "invalid type",
        ),
        (
            json!({ "principals": { "p": { "members": [] } } }),
            "principals.p",
            "missing field `type`",
        ),
        (
            json!({ "principals": { "p": { "type": "robot" } } }),
            "principals.p.type",
            "unknown variant `robot`",
        ),
        (
            json!({ "principals": { "p": { "type": "user", "grants": [ {} ] } } }),
            "principals.p.grants[0]",
            "missing field `capability`",
        ),
        (
            with_grant(
                json!({ "capability": "ops", "temporal": { "validity": { "start": "tomorrow" } } }),
            ),
            "principals.alice.grants[0].temporal.validity.start",
            "RFC 3339",
        ),
        (
            with_grant(
                json!({ "capability": "ops", "temporal": { "schedule": { "windows": [
                { "days": [ "funday" ], "startTime": "08:00", "endTime": "09:00" } ] } } }),
            ),
            "principals.alice.grants[0].temporal.schedule.windows[0].days[0]",
            "unknown variant `funday`",
        ),
        (
            with_grant(
                json!({ "capability": "ops", "temporal": { "schedule": { "windows": [
                { "days": [ "monday" ], "startTime": "8am", "endTime": "09:00" } ] } } }),
            ),
            "principals.alice.grants[0].temporal.schedule.windows[0].startTime",
            "HH:MM",
        ),
        (
            with_grant(
                json!({ "capability": "ops", "temporal": { "usage": { "rateLimit": { "requests": 5 } } } }),
            ),
            "principals.alice.grants[0].temporal.usage.rateLimit",
            "missing field `window`",
        ),
        (
            json!({ "defaults": { "sessionTimeout": "forever" } }),
            "defaults.sessionTimeout",
            "expected a duration",
        ),
        (
            json!({ "zeroTrust": { "enabled": true } }),
            "zeroTrust.enabled",
            "unknown field `enabled`",
        ),
    ];
    for (input, path, needle) in cases {
        let err = parse(input).unwrap_err();
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn delegation() {
    let cap = |d: Value| json!({ "capabilities": { "c": { "delegation": d } } });
    one_problem(
        cap(json!({ "allowed": true })),
        "hypervisor.security.capabilities.c.delegation.maxDepth",
        "use 1 or more",
    );
    one_problem(
        cap(json!({ "maxDepth": 3 })),
        "hypervisor.security.capabilities.c.delegation.maxDepth",
        "set allowed = true",
    );
}

#[test]
fn grants_name_capabilities() {
    one_problem(
        with_grant(json!({ "capability": "opps" })),
        "hypervisor.security.principals.alice.grants[0].capability",
        "unknown capability `opps`; did you mean `ops`?",
    );
}

#[test]
fn group_members() {
    let v = json!({ "principals": {
        "alice": { "type": "user" },
        "admins": { "type": "group", "members": [ "alice", "alicia" ] }
    } });
    one_problem(
        v,
        "hypervisor.security.principals.admins.members[1]",
        "unknown principal `alicia`; did you mean `alice`?",
    );
    one_problem(
        json!({ "principals": { "alice": { "type": "user", "members": [ "alice" ] } } }),
        "hypervisor.security.principals.alice.members",
        "only a group has members",
    );
    let got = problems(json!({ "principals": {
        "a": { "type": "group", "members": [ "b" ] },
        "b": { "type": "group", "members": [ "c" ] },
        "c": { "type": "group", "members": [ "a" ] },
        "d": { "type": "group", "members": [ "a" ] }
    } }));
    assert_eq!(
        got,
        [
            "hypervisor.security.principals.a.members: groups contain each other (a → b → c → a); \
             remove one of these memberships",
            "hypervisor.security.principals.b.members: groups contain each other (b → c → a → b); \
             remove one of these memberships",
            "hypervisor.security.principals.c.members: groups contain each other (c → a → b → c); \
             remove one of these memberships",
        ]
    );
    one_problem(
        json!({ "principals": { "g": { "type": "group", "members": [ "g" ] } } }),
        "hypervisor.security.principals.g.members",
        "(g → g)",
    );
}

#[test]
fn temporal_rules() {
    let temporal = |t: Value| with_grant(json!({ "capability": "ops", "temporal": t }));
    let base = "hypervisor.security.principals.alice.grants[0].temporal";
    one_problem(
        temporal(
            json!({ "validity": { "start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z" } }),
        ),
        &format!("{base}.validity.end"),
        "is not after start",
    );
    one_problem(
        temporal(json!({ "validity": { "duration": "0s" } })),
        &format!("{base}.validity.duration"),
        "longer than 0",
    );
    one_problem(
        temporal(json!({ "schedule": { "timezone": "" } })),
        &format!("{base}.schedule.timezone"),
        "not a time zone",
    );
    one_problem(
        temporal(
            json!({ "schedule": { "windows": [ { "startTime": "08:00", "endTime": "09:00" } ] } }),
        ),
        &format!("{base}.schedule.windows[0].days"),
        "never opens",
    );
    one_problem(
        temporal(json!({ "schedule": { "windows": [
            { "days": [ "monday" ], "startTime": "08:00", "endTime": "08:00" } ] } })),
        &format!("{base}.schedule.windows[0].endTime"),
        "equals startTime (08:00)",
    );
    one_problem(
        temporal(json!({ "usage": { "maxUses": 0 } })),
        &format!("{base}.usage.maxUses"),
        "never be used",
    );
    one_problem(
        temporal(json!({ "usage": { "rateLimit": { "requests": 0, "window": "1m" } } })),
        &format!("{base}.usage.rateLimit.requests"),
        "allow 1 or more",
    );
    one_problem(
        temporal(json!({ "usage": { "rateLimit": { "requests": 1, "window": "0s" } } })),
        &format!("{base}.usage.rateLimit.window"),
        "longer than 0",
    );
    one_problem(
        with_grant(json!({ "capability": "ops", "emergency": { "breakGlass": true } })),
        "hypervisor.security.principals.alice.grants[0].emergency.notificationList",
        "break-glass",
    );
}

#[test]
fn timings() {
    one_problem(
        json!({ "zeroTrust": { "continuous": { "interval": "0s" } } }),
        "hypervisor.security.zeroTrust.continuous.interval",
        "longer than 0",
    );
    one_problem(
        json!({ "defaults": { "sessionTimeout": "0m" } }),
        "hypervisor.security.defaults.sessionTimeout",
        "longer than 0",
    );
}
