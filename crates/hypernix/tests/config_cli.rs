//! `hypernix config ...` as a user runs it: the real binary, real files, real Nix.

use std::path::{Path, PathBuf};

mod kit;

use kit::{examples, hypernix, text};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn check_the_seed_example() {
    let out = hypernix(&["config", "check", &examples()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: 1 file(s), 2 unit(s)"),
        "{}",
        text(&out.stdout)
    );
    let out = hypernix(&["config", "check", "--json", &examples()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["units"], 2);
}

#[test]
fn explain_webserver_names_every_source() {
    let out = hypernix(&["config", "explain", "webserver", &examples()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let row = |field: &str| -> String {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .unwrap_or_else(|| panic!("no row {field} in\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("vcpus"), "vcpus 4 unit");
    assert_eq!(
        row("maxVcpus"),
        "maxVcpus 8 tag high-performance (priority 60)"
    );
    assert_eq!(
        row("features.isolation.securityLevel"),
        "features.isolation.securityLevel hardened tag secure-boot (priority 70)"
    );
    assert_eq!(
        row("resources.memory.size"),
        "resources.memory.size 512Mi policy web-tier"
    );
    assert_eq!(
        row("workload.sla.availability"),
        "workload.sla.availability 0.999 policy production"
    );
    assert_eq!(
        row("features.persistence.migration"),
        "features.persistence.migration live tag production (priority 40, via policy production)"
    );

    let out = hypernix(&["config", "explain", "--json", "webserver", &examples()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cpu"]["vcpus"], 4);
    assert_eq!(v["cpu"]["maxVcpus"], 8);
    let burst = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "resources.compute.burst")
        .unwrap();
    assert_eq!(
        burst["source"],
        serde_json::json!({"kind": "tag", "name": "high-performance", "priority": 60})
    );
}

#[test]
fn errors_exit_1_and_list_every_one_on_stderr() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "bad.nix",
        r#"{ hypervisor.compute.units.a = { resources.memry = { }; workload.type = "batchy"; }; }"#,
    );
    let out = hypernix(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("2 errors in the configuration:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `memory`") && stderr.contains("`batchy`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let out = hypernix(&["config", "check", "--json", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 2);

    let out = hypernix(&["config", "explain", "webservr", &examples()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("did you mean `webserver`"));
}

#[test]
fn plan_lists_changed_units_with_live_and_restart_fields() {
    let d = tempfile::tempdir().unwrap();
    let unit = |mem: &str, burst: u32| {
        format!(
            r#"{{ hypervisor.compute.tags.big = {{ category = "performance"; values.resources.memory.size = "{mem}"; }};
                 hypervisor.compute.units.a = {{ tags = [ "big" ]; resources.compute.burst = {burst}; }};
                 hypervisor.compute.units.b = {{ tags = [ "big" ]; }};
                 hypervisor.compute.units.c = {{ }}; }}"#
        )
    };
    let old = write(d.path(), "old.nix", &unit("2Gi", 400));
    let new = write(d.path(), "new.nix", &unit("1Gi", 800));
    let out = hypernix(&[
        "config",
        "plan",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("-/+ a (restart)"), "{stdout}");
    assert!(stdout.contains("~ b (update live)"), "{stdout}");
    assert!(!stdout.contains(" c "), "{stdout}");
    assert!(
        stdout.contains("Plan: 0 to create, 1 to restart, 1 to update live, 0 to destroy."),
        "{stdout}"
    );

    let out = hypernix(&[
        "config",
        "plan",
        "--json",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let units: Vec<&str> = v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect();
    assert_eq!(units, ["a", "b"]);
}

#[test]
fn usage_errors_exit_2_and_completions_print() {
    assert_eq!(hypernix(&["config", "frobnicate"]).status.code(), Some(2));
    assert_eq!(hypernix(&["config", "check"]).status.code(), Some(2));
    let out = hypernix(&["completions", "bash"]);
    assert!(out.status.success() && text(&out.stdout).contains("hypernix"));
}
