//! The web console (issue 10) in a real browser: Debian's headless Chromium, driven by
//! playwright-core (`tests/ui/console.mjs`), against a daemon running the quickstart's two
//! units (`examples/quickstart.nix`) with storage tiers and a disk for `beta`. The units
//! page lists both, a stop click stops `alpha` and the page shows it live, a unit created
//! meanwhile appears on it, the console page
//! shows `beta`'s readiness line and takes keys, the storage page draws the heat map of the
//! disk those keys wrote and lists a placement round's moves live, the backups page lists
//! the snapshot of that disk, the other pages render, and nothing is fetched from another
//! origin. Screenshots go to `$CARGO_TARGET_TMPDIR/ui-artifacts/`.

mod kit;

use std::path::{Path, PathBuf};
use std::process::Command;

use kit::{TestDaemon, heavy};
use serde_json::Value;

/// Debian's Chromium (`apt-get install chromium`; scripts/install-deps.sh installs it).
fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    assert!(
        path.exists(),
        "{} is missing: the web console's test needs Debian's chromium \
         (apt-get install chromium, or scripts/install-deps.sh); set CHROMIUM to use another",
        path.display()
    );
    path
}

/// The folder of the browser script, with playwright-core installed.
fn script_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Storage tiers inside the state directory (extents move only when asked), a 32 MiB disk
/// for unit `beta`, and a backup source for it (its first run follows the apply).
fn storage(d: &TestDaemon) -> PathBuf {
    let state = d.state().display();
    d.config(
        "storage.nix",
        &format!(
            r#"{{
  hypervisor.storage.tiers = {{
    fast = {{ level = 0; providers = [ {{ type = "nvme-local"; capacity = "64Mi"; location = "{state}/tiers/fast"; }} ]; }};
    slow = {{ level = 1; providers = [ {{ type = "hdd-array"; capacity = "256Mi"; location = "{state}/tiers/slow"; }} ]; }};
  }};
  hypervisor.storage.fabric.movement.engine = "triggered";
  hypervisor.compute.units.beta.storage = [ {{ name = "data"; capability = "block"; size = "32Mi"; }} ];
  hypervisor.backup.repositories.default = {{ location = "{state}/repo"; encryption.enabled = false; }};
  hypervisor.backup.sources.vms = {{ selection.ids = [ "beta" ]; schedule = {{ interval = "24h"; }}; }};
}}"#
        ),
    )
}

/// The step named `name` of the script's output.
fn step<'a>(steps: &'a [Value], name: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
}

#[test]
fn console_in_chromium_lists_stops_attaches_and_draws_the_heat_map() {
    let chromium = chromium();
    let dir = script_dir();
    let _g = heavy();
    let d = TestDaemon::start();
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.nix");
    let extra = storage(&d);
    d.json(&[
        "apply",
        "--json",
        quickstart.to_str().unwrap(),
        extra.to_str().unwrap(),
    ]);
    d.wait_ready("alpha");
    d.wait_ready("beta");

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-artifacts");
    let out = Command::new("node")
        .arg(dir.join("console.mjs"))
        .arg(format!("http://{}", d.api))
        .args(["alpha", "beta", hypernix_vmm::guest::READY_MARKER])
        .arg(&artifacts)
        .env("HYPERNIX_TOKEN", d.token())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = kit::text(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the browser script failed:\n{stdout}\n{}\n{}",
        kit::text(&out.stderr),
        d.log()
    );
    let steps: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        !steps.iter().any(|s| s["step"] == "pageerror"),
        "script errors in the page: {steps:?}"
    );

    let units = step(&steps, "units")["units"].as_array().unwrap().clone();
    for name in ["alpha", "beta"] {
        let u = units
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {units:?}"));
        assert_eq!(u["state"], "RUNNING", "{u}");
        assert_eq!(u["actions"], serde_json::json!(["stop"]), "{u}");
    }

    let stopped = step(&steps, "stopped");
    assert_eq!(stopped["state"], "STOPPED", "{stopped}");
    assert_eq!(stopped["startOffered"], 1, "{stopped}");
    assert_eq!(stopped["server"], "STOPPED", "{stopped}");
    step(&steps, "created");

    assert!(step(&steps, "unit")["fields"].as_u64().unwrap() > 5);
    assert_eq!(step(&steps, "console")["typed"], true);

    let heat = step(&steps, "heatmap");
    assert!(heat["width"].as_u64().unwrap() > 0, "{heat}");
    assert!(heat["allocated"].as_u64().unwrap() > 0, "{heat}");
    assert!(heat["colours"].as_u64().unwrap() >= 3, "{heat}");

    // The extents written are promoted by the placement round, and the page lists each
    // move as it happens.
    let moves = step(&steps, "moves");
    let moved = moves["moved"].as_array().unwrap();
    assert!(!moved.is_empty(), "{moves}");
    assert_eq!(
        moves["shown"].as_array().unwrap().len(),
        moved.len(),
        "{moves}"
    );

    let backups = step(&steps, "backups");
    assert!(backups["snapshots"].as_u64().unwrap() >= 1, "{backups}");

    for s in steps.iter().filter(|s| s["step"] == "page") {
        assert!(s["error"].is_null(), "{s}");
    }
    let requests = step(&steps, "requests");
    assert_eq!(requests["foreign"], serde_json::json!([]), "{requests}");
    for shot in [
        "02-units.png",
        "03-stopped.png",
        "05-console.png",
        "06-storage.png",
    ] {
        assert!(artifacts.join(shot).exists(), "{shot} missing");
    }
}

/// 1,000 units that never boot: each asks for an aarch64 guest, which this host refuses
/// before starting QEMU (state FAILED), with a tag and its own labels.
fn thousand_units(d: &TestDaemon) -> PathBuf {
    let mut text = String::from(
        "{\n  hypervisor.compute.tags.small = { category = \"performance\"; priority = 40; \
         values.resources.memory.size = \"256Mi\"; };\n  hypervisor.compute.units = {\n",
    );
    for i in 0..1000 {
        text.push_str(&format!(
            "    u{i:04} = {{ resources.compute.architecture = \"aarch64\"; tags = [ \"small\" ]; \
             labels = {{ app = \"bench\"; idx = \"{i}\"; }}; }};\n"
        ));
    }
    text.push_str("  };\n}\n");
    d.config("thousand.nix", &text)
}

/// The units page with 1,000 units, loaded 10 times in Chromium, shows every row each
/// time. The load time it prints is a measurement, not a check (timing targets live in
/// BENCHMARKS.md, "Web console (issue 10)", measured with the same script).
#[test]
fn units_page_shows_1000_units() {
    let chromium = chromium();
    let dir = script_dir();
    let _g = heavy();
    let d = TestDaemon::start();
    let f = thousand_units(&d);
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    assert_eq!(d.units().len(), 1000);
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-artifacts");
    let out = Command::new("node")
        .arg(dir.join("bench.mjs"))
        .arg(format!("http://{}", d.api))
        .args(["1000", "10"])
        .arg(&artifacts)
        .env("HYPERNIX_TOKEN", d.token())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = kit::text(&out.stdout);
    assert!(
        out.status.success(),
        "the benchmark script failed:\n{stdout}\n{}",
        kit::text(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("units page, 1,000 units: {result}");
    let samples = result["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 10, "{result}");
    for s in samples {
        assert_eq!(s["rows"], 1000, "{s}");
    }
}
