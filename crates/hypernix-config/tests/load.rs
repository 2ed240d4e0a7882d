//! Loading real files through the real Nix evaluator, merging, and every error class.

use std::path::{Path, PathBuf};

use hypernix_config::{ConfigErrors, Size, load_paths};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/design/examples.nix")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn errors_of(r: Result<hypernix_config::Config, ConfigErrors>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn has(errors: &[String], parts: &[&str]) {
    assert!(
        errors.iter().any(|e| parts.iter().all(|p| e.contains(p))),
        "no error containing {parts:?} in {errors:#?}"
    );
}

#[test]
fn the_seed_example_loads() {
    let c = load_paths(&[examples()]).unwrap();
    let units = &c.hypervisor.compute.units;
    assert_eq!(units.len(), 2);
    assert_eq!(units["webserver"].resources.compute.units, 400);
    assert_eq!(c.hypervisor.compute.tags["high-performance"].priority, 60);
    assert!(
        c.raw["compute"]["units"]["webserver"]
            .get("resources")
            .is_some()
    );
}

#[test]
fn files_merge_deeply_and_conflicts_name_both_files() {
    let d = tempfile::tempdir().unwrap();
    let a = write(
        d.path(),
        "a.nix",
        r#"{ hypervisor.compute.units.web.resources.memory.size = "2Gi"; }"#,
    );
    let b = write(
        d.path(),
        "b.json",
        r#"{"hypervisor": {"compute": {"units": {"web": {"tags": []}, "db": {}}}}}"#,
    );
    let c = load_paths(&[&a, &b]).unwrap();
    assert_eq!(
        c.hypervisor.compute.units["web"].resources.memory.size,
        Size(2 << 30)
    );
    assert!(c.hypervisor.compute.units.contains_key("db"));

    let clash = write(
        d.path(),
        "c.nix",
        r#"{ hypervisor.compute.units.web.resources.memory.size = "4Gi"; }"#,
    );
    let errors = errors_of(load_paths(&[&a, &clash]));
    has(
        &errors,
        &[
            "hypervisor.compute.units.web.resources.memory.size",
            "a.nix",
            "c.nix",
            "2Gi",
            "4Gi",
        ],
    );
}

#[test]
fn a_directory_loads_all_its_files_in_name_order() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "10-units.nix",
        r#"{ hypervisor.compute.units.a = { }; }"#,
    );
    write(
        d.path(),
        "20-more.json",
        r#"{"hypervisor": {"compute": {"units": {"b": {}}}}}"#,
    );
    write(d.path(), "notes.txt", "not configuration");
    let c = load_paths(&[d.path()]).unwrap();
    assert_eq!(c.files.len(), 2);
    assert_eq!(c.hypervisor.compute.units.len(), 2);
}

#[test]
fn module_functions_and_imports() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "tags.nix",
        r#"{ lib, ... }: { config.hypervisor.compute.tags.fast = lib.mkIf true { category = "performance"; }; }"#,
    );
    let main = write(
        d.path(),
        "main.nix",
        r#"{ config, ... }: { imports = [ ./tags.nix ]; config.hypervisor.compute.units.a.tags = [ "fast" ]; }"#,
    );
    let c = load_paths(&[main]).unwrap();
    assert!(c.hypervisor.compute.tags.contains_key("fast"));
    assert_eq!(c.hypervisor.compute.units["a"].tags, ["fast"]);
    assert_eq!(c.files.len(), 2);
}

#[test]
fn json_needs_no_nix_and_nix_without_the_evaluator_says_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let j = write(
        d.path(),
        "a.json",
        r#"{"hypervisor": {"compute": {"units": {"a": {}}}}}"#,
    );
    let n = write(d.path(), "a.nix", "{ }");
    // Run the check in a child with an empty PATH, so the evaluator cannot be found.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "no_nix_child", "--ignored", "--nocapture"])
        .env("PATH", "")
        .env("HYPERNIX_TEST_JSON", &j)
        .env("HYPERNIX_TEST_NIX", &n)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}"
    );
}

/// Run by the test above, in a child process without Nix on PATH.
#[test]
#[ignore = "a child of json_needs_no_nix_and_nix_without_the_evaluator_says_what_to_do"]
fn no_nix_child() {
    let (Ok(j), Ok(n)) = (
        std::env::var("HYPERNIX_TEST_JSON"),
        std::env::var("HYPERNIX_TEST_NIX"),
    ) else {
        return; // Only meaningful when started by the test above.
    };
    assert!(load_paths(&[j]).is_ok());
    let errors = errors_of(load_paths(&[n]));
    has(
        &errors,
        &[
            "a.nix",
            "nix-instantiate was not found",
            "apt-get install nix-bin",
            "JSON",
        ],
    );
}

#[test]
fn every_error_class_names_its_path() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "bad.nix",
        r#"{
  hypervisor.compute.tags.fast = { category = "perfomance"; values.resources.compute.burst = "lots"; };
  hypervisor.compute.units.a = { resources.memry.size = "1Gi"; };
  hypervisor.compute.units.b = { resources.memory.size = "12 parsecs"; storage = [ { name = "x"; size = "1Gi"; } ]; };
  hypervisor.compute.units.c.lifecycle.healthCheck = { type = "tcp"; interval = "soon"; };
  hypervisor.compute.units.d.workload.sla.availability = "high";
  hypervisor.security.principals.ops.grants = [ { capability = "x"; temporal.validity.start = "yesterday"; temporal.schedule.windows = [ { days = [ "monday" ]; startTime = "25:00"; endTime = "26:00"; } ]; } ];
  hypervisor.storage.tierz = { };
}"#,
    );
    let errors = errors_of(load_paths(&[f]));
    has(
        &errors,
        &[
            "hypervisor.compute.tags.fast.category",
            "unknown value `perfomance`",
            "did you mean `performance`",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.tags.fast.values.resources.compute.burst",
            "\"lots\"",
            "whole number",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.a.resources.memry",
            "did you mean `memory`",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.b.resources.memory.size",
            "12 parsecs",
            "size",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.b.storage[0]",
            "`capability` is missing",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.c.lifecycle.healthCheck.interval",
            "\"soon\"",
            "duration",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.d.workload.sla.availability",
            "\"high\"",
            "number",
        ],
    );
    has(
        &errors,
        &["temporal.validity.start", "yesterday", "RFC 3339"],
    );
    has(&errors, &["startTime", "25:00", "HH:MM"]);
    has(
        &errors,
        &["hypervisor.storage.tierz", "did you mean `tiers`"],
    );
    // The category we set aside is not reported a second time as missing.
    assert!(
        !errors.iter().any(|e| e.contains("`category` is missing")),
        "{errors:#?}"
    );
}

#[test]
fn malformed_files() {
    let d = tempfile::tempdir().unwrap();
    let cases = [
        (
            "syntax.nix",
            "{ hypervisor = ",
            &["syntax.nix", "nix-instantiate failed"][..],
        ),
        (
            "throw.nix",
            r#"{ hypervisor = throw "boom"; }"#,
            &["boom"][..],
        ),
        ("list.nix", "[ 1 2 ]", &["list.nix", "attribute set"][..]),
        (
            "top.nix",
            "{ hypervisr = { }; }",
            &["top.nix", "`hypervisr`", "did you mean `hypervisor`"][..],
        ),
        (
            "scalar.json",
            r#"{"hypervisor": 3}"#,
            &["scalar.json", "expected an attribute set"][..],
        ),
        (
            "broken.json",
            r#"{"hypervisor": {"#,
            &["broken.json", "not valid JSON"][..],
        ),
        ("missing.nix", "", &[][..]),
    ];
    for (name, text, parts) in cases {
        let p = if name == "missing.nix" {
            d.path().join(name)
        } else {
            write(d.path(), name, text)
        };
        let errors = errors_of(load_paths(&[&p]));
        has(&errors, parts);
    }
}

#[test]
fn a_unit_names_an_existing_blueprint() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "bp.nix",
        r#"{
  hypervisor.composition.components.web.type = "service";
  hypervisor.composition.blueprints.secure-web.components = [ { component = "web"; } ];
  hypervisor.compute.units.a.labels.blueprint = "secure-wbe";
  hypervisor.compute.units.b.blueprint = "nope";
  hypervisor.compute.units.c.labels.blueprint = "secure-web";
}"#,
    );
    let errors = errors_of(load_paths(&[f]));
    has(
        &errors,
        &[
            "hypervisor.compute.units.a.labels.blueprint",
            "unknown blueprint `secure-wbe`",
            "did you mean `secure-web`",
        ],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.b.blueprint",
            "unknown blueprint `nope`",
        ],
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[test]
fn names_that_become_paths_are_safe() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "names.json",
        r#"{"hypervisor": {"compute": {"units": {
            "../escape": {},
            "ok": {"storage": [{"name": "../../etc/x", "capability": "fast", "size": "1Gi"}]}
        }}}}"#,
    );
    let errors = errors_of(load_paths(&[f]));
    has(
        &errors,
        &["hypervisor.compute.units.\"../escape\"", "letters, digits"],
    );
    has(
        &errors,
        &[
            "hypervisor.compute.units.ok.storage[0].name",
            "letters, digits",
        ],
    );
}
