//! Capabilities against a real daemon: every GraphQL operation (found by introspection) is
//! refused without a token and with a token lacking the capability; scoped tokens see and
//! act on their labels only; revocation ends a live subscription; break-glass raises an
//! alert; the audit log verifies and a tampered record is named.

mod kit;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kit::{TestDaemon, wait_until};
use serde_json::{Value, json};

const CONFIG: &str = r#"{ hypervisor = {
  compute.units = {
    web = { image = "/nonexistent/web.img"; labels.tier = "frontend"; };
    db = { image = "/nonexistent/db.img"; labels.tier = "backend"; };
  };
  security.capabilities = {
    web-operator = { resources.compute = { control = true; console = true; }; scope.labels.tier = "frontend";
                     delegation = { allowed = true; maxDepth = 1; }; };
    nothing = { };
    admin = { resources.compute = { create = true; delete = true; modify = true; }; };
  };
  security.principals = {
    alice = { type = "user"; grants = [ { capability = "web-operator"; } ]; };
    nobody = { type = "service"; grants = [ { capability = "nothing"; } ]; };
    oncall = { type = "user"; grants = [ { capability = "admin"; emergency = { breakGlass = true; notificationList = [ "sec@example.org" ]; }; } ]; };
  };
}; }"#;

fn setup() -> TestDaemon {
    let d = TestDaemon::start();
    let f = d.config("caps.nix", CONFIG);
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    d
}

fn issue(d: &TestDaemon, principal: &str) -> String {
    d.json(&["caps", "issue", principal, "--json"])["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// POSTs `query` with `token` (none when `None`); returns the JSON answer.
fn post(d: &TestDaemon, token: Option<&str>, query: &str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.post(&format!("http://{}/graphql", d.api));
    if let Some(t) = token {
        req = req.header("authorization", &format!("Bearer {t}"));
    }
    req.send_json(json!({ "query": query }))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

/// Runs the CLI with `token` instead of the root credential.
fn cli_as(d: &TestDaemon, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(kit::bin())
        .arg("--api")
        .arg(&d.api)
        .env("HYPERNIX_TOKEN", token)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_operation_is_refused_without_a_token_or_the_capability() {
    let d = setup();
    let nobody = issue(&d, "nobody");
    let schema = post(
        &d,
        None,
        "{ __schema { queryType { fields { name } } mutationType { fields { name } } \
         subscriptionType { fields { name } } } }",
    );
    let mut checked = 0;
    for (root, keyword) in [
        ("queryType", "query"),
        ("mutationType", "mutation"),
        ("subscriptionType", "subscription"),
    ] {
        let fields = schema["data"]["__schema"][root]["fields"]
            .as_array()
            .unwrap();
        assert!(!fields.is_empty(), "{root}");
        for f in fields {
            let name = f["name"].as_str().unwrap();
            for (who, token) in [("no token", None), ("nobody", Some(nobody.as_str()))] {
                let v = post(&d, token, &format!("{keyword} {{ {name} }}"));
                assert_eq!(
                    v["errors"][0]["extensions"]["code"], "FORBIDDEN",
                    "{keyword} {name} with {who}: {v}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} operations checked");
    // Each refusal is audited with its reason (the log is written behind the requests).
    let state = d.state().to_str().unwrap().to_string();
    wait_until(Duration::from_secs(10), "every denial audited", || {
        let audit = d.json(&["audit", "show", "--json", "--state-dir", &state]);
        let denied = audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["record"]["allowed"] == false && r["record"]["reason"].is_string())
            .count();
        (denied >= checked).then_some(())
    });
}

#[test]
fn scoped_tokens_see_and_act_on_their_labels_only() {
    let d = setup();
    let alice = issue(&d, "alice");
    let out = cli_as(&d, &alice, &["units", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let units: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = units
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
    let out = cli_as(&d, &alice, &["unit", "stop", "db"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the token's label scope"), "{err}");
    assert!(
        cli_as(&d, &alice, &["unit", "stop", "web"])
            .status
            .success()
    );
    // Garbage and a token narrowed away from stop.
    let out = cli_as(&d, "garbage", &["units"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("malformed"),
        "{out:?}"
    );
    let narrowed = String::from_utf8(
        cli_as(
            &d,
            &alice,
            &["caps", "attenuate", &alice, "--operation", "unit.list"],
        )
        .stdout,
    )
    .unwrap();
    let out = cli_as(&d, narrowed.trim(), &["unit", "start", "web"]);
    assert!(!out.status.success());
    assert!(cli_as(&d, narrowed.trim(), &["units"]).status.success());
}

#[test]
fn revocation_closes_a_live_subscription_within_a_second_or_two() {
    let d = setup();
    let alice = issue(&d, "alice");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hypernix-api/tests/node");
    let mut node = Command::new("node")
        .arg(dir.join("subscribe.mjs"))
        .arg(format!("ws://{}/graphql", d.api))
        .arg("subscription { events { id kind } }")
        .env("HYPERNIX_TOKEN", &alice)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let stderr = node.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "subscribed");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        node.try_wait().unwrap().is_none(),
        "the subscription ended early"
    );
    let out = d.cli(&["caps", "revoke", &alice]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = Instant::now();
    let status = wait_until(Duration::from_secs(10), "the subscription to close", || {
        node.try_wait().unwrap()
    });
    let took = revoked.elapsed();
    assert!(status.success(), "the client saw the subscription complete");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    let out = cli_as(&d, &alice, &["units"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked"),
        "{out:?}"
    );
}

#[test]
fn break_glass_raises_an_alert_and_is_audited_with_its_reason() {
    let d = setup();
    let oncall = issue(&d, "oncall");
    let out = cli_as(&d, &oncall, &["unit", "stop", "web"]);
    assert!(
        !out.status.success(),
        "a break-glass grant is not usable directly"
    );
    let out = cli_as(
        &d,
        &oncall,
        &["caps", "break-glass", "--reason", "db on fire", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let emergency: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = emergency["token"].as_str().unwrap();
    let alerts = d.events("security.alert");
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["payload"]["reason"], "db on fire");
    assert_eq!(alerts[0]["payload"]["notify"][0], "sec@example.org");
    let f = d.config("more.json", r#"{"image": "/nonexistent/x.img"}"#);
    let settings = std::fs::read_to_string(f).unwrap();
    let v = post(
        &d,
        Some(token),
        &format!(
            "mutation {{ createComputeUnit(name: \"extra\", settings: {}) {{ name }} }}",
            serde_json::to_string(&settings).unwrap()
        ),
    );
    assert!(
        v["errors"].is_null() || v["errors"][0]["extensions"]["code"] != "FORBIDDEN",
        "{v}"
    );
    let state = d.state().to_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(10),
        "the emergency action audited",
        || {
            let audit = d.json(&["audit", "show", "--json", "--state-dir", &state]);
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|r| {
                    r["record"]["principal"] == "oncall"
                        && r["record"]["operation"] == "unit.create"
                        && r["record"]["reason"]
                            .as_str()
                            .is_some_and(|x| x.contains("db on fire"))
                })
                .then_some(())
        },
    );
}

#[test]
fn the_audit_log_verifies_and_a_tampered_record_is_named() {
    let d = setup();
    d.json(&["units", "--json"]);
    let state = d.state().to_str().unwrap().to_string();
    let ok = d.cli(&["audit", "verify", "--state-dir", &state]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let path = d.state().join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"allowed\":true", "\"allowed\":false", 1);
    std::fs::write(&path, tampered).unwrap();
    let bad = d.cli(&["audit", "verify", "--state-dir", &state]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("record 1 was modified"), "{err}");
}

#[test]
fn a_rotated_root_key_keeps_old_tokens_for_the_grace_period_only() {
    let d = setup();
    let alice = issue(&d, "alice");
    let old_root = d.token();
    let out = d.cli(&["caps", "rotate", "--grace", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_root = d.token();
    assert_ne!(old_root, new_root, "the root credential is reissued");
    assert!(
        cli_as(&d, &alice, &["units"]).status.success(),
        "within the grace period"
    );
    assert!(cli_as(&d, &new_root, &["units"]).status.success());
    let fresh = issue(&d, "alice");
    let out = cli_as(&d, &new_root, &["caps", "rotate", "--grace", "0s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stale in [&alice, &fresh, &old_root] {
        let out = cli_as(&d, stale, &["units"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("root key"), "{err}");
    }
    assert!(
        d.cli(&["units"]).status.success(),
        "the reissued root credential works"
    );
}

#[test]
fn each_bad_token_is_refused_with_its_reason_and_audited() {
    use chrono::Datelike;
    let d = TestDaemon::start();
    // A window on a day three days away (UTC) is closed now, whatever the day.
    let closed_day = (chrono::Utc::now() + chrono::Duration::days(3))
        .weekday()
        .to_string()
        .to_lowercase();
    let closed_day = match closed_day.as_str() {
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        "sat" => "saturday",
        _ => "sunday",
    };
    let grant = |name: &str, cap: &str, temporal: &str| {
        format!(
            "{name} = {{ type = \"user\"; grants = [ {{ capability = \"{cap}\"; {temporal} }} ]; }};"
        )
    };
    let config = format!(
        r#"{{ hypervisor = {{
  compute.units.web = {{ image = "/nonexistent/web.img"; labels.tier = "frontend"; }};
  compute.units.db = {{ image = "/nonexistent/db.img"; labels.tier = "backend"; }};
  security.capabilities = {{
    op = {{ resources.compute.control = true; scope.labels.tier = "frontend"; delegation = {{ allowed = true; maxDepth = 1; }}; }};
    solo = {{ resources.compute.control = true; }};
    none-at-all = {{ resources.compute = {{ control = true; limits.maxUnits = 0; }}; }};
  }};
  security.principals = {{
    {}
    {}
    {}
    {}
    {}
    {}
  }};
}}; }}"#,
        grant("alice", "op", ""),
        grant("solo", "solo", ""),
        grant("zero", "none-at-all", ""),
        grant(
            "late",
            "solo",
            "temporal.validity.end = \"2020-01-01T00:00:00Z\";"
        ),
        grant(
            "early",
            "solo",
            "temporal.validity.start = \"2099-01-01T00:00:00Z\";"
        ),
        grant(
            "offhours",
            "solo",
            &format!(
                "temporal.schedule = {{ timezone = \"UTC\"; windows = [ {{ days = [ \"{closed_day}\" ]; startTime = \"00:00\"; endTime = \"23:59\"; }} ]; }};"
            )
        ),
    );
    let f = d.config("bad.nix", &config);
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let alice = issue(&d, "alice");
    let attenuate = |t: &str| {
        let out = cli_as(&d, t, &["caps", "attenuate", t]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let revoked = issue(&d, "alice");
    assert!(d.cli(&["caps", "revoke", &revoked]).status.success());
    let mut tampered = alice.clone().into_bytes();
    let i = tampered.len() - 10;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign_keys = hypernix_caps::KeyRing::open_or_init(foreign_dir.path()).unwrap();
    let foreign = hypernix_caps::token::root(&foreign_keys, chrono::Utc::now())
        .unwrap()
        .token;
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("garbage", "not a token at all".into(), "web", "malformed"),
        (
            "truncated",
            alice[..alice.len() / 2].to_string(),
            "web",
            "malformed",
        ),
        (
            "tampered",
            String::from_utf8(tampered).unwrap(),
            "web",
            "malformed",
        ),
        (
            "another root key",
            foreign,
            "web",
            "signature does not verify",
        ),
        ("expired", issue(&d, "late"), "web", "expired"),
        ("not yet valid", issue(&d, "early"), "web", "not valid yet"),
        (
            "outside the schedule",
            issue(&d, "offhours"),
            "web",
            "outside the grant's schedule",
        ),
        (
            "over delegation depth",
            attenuate(&attenuate(&alice)),
            "web",
            "delegated 2 times",
        ),
        (
            "delegation not allowed",
            attenuate(&issue(&d, "solo")),
            "web",
            "may not be delegated",
        ),
        ("revoked", revoked, "web", "has been revoked"),
        (
            "wrong label scope",
            alice.clone(),
            "db",
            "outside the token's label scope",
        ),
        (
            "over maxUnits",
            issue(&d, "zero"),
            "web",
            "over the capability's maxUnits",
        ),
    ];
    for (what, token, unit, reason) in &cases {
        let v = post(
            &d,
            Some(token),
            &format!(
                "mutation {{ controlComputeUnit(name: \"{unit}\", action: STOP) {{ name }} }}"
            ),
        );
        let message = v["errors"][0]["message"].as_str().unwrap_or_default();
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "FORBIDDEN",
            "{what}: {v}"
        );
        assert!(message.contains(reason), "{what}: {message}");
    }
    let state = d.state().to_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(10),
        "every refusal audited with its reason",
        || {
            let audit = d.json(&["audit", "show", "--json", "--state-dir", &state]);
            let records = audit.as_array().unwrap();
            cases
                .iter()
                .all(|(_, _, _, reason)| {
                    records.iter().any(|r| {
                        r["record"]["allowed"] == false
                            && r["record"]["operation"] == "unit.stop"
                            && r["record"]["reason"]
                                .as_str()
                                .is_some_and(|x| x.contains(reason))
                    })
                })
                .then_some(())
        },
    );
}
