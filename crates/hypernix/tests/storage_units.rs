//! Unit disks on tiered volumes served by the daemon over NBD: a real guest writes and
//! reads back its disk across a VM restart; real NBD clients (nbdinfo, qemu-img, nbdcopy,
//! qemu-io) read the daemon's export; placement moves a hot extent and the GraphQL API
//! reports tiers, volumes, heat and the move; bad storage settings fail the unit clearly.

mod kit;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kit::{Console, TestDaemon, heavy, wait_until};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// Two directory tiers inside the state directory, `extra` settings, and unit `db` with
/// disk `data` of `size` (no unit when `None`).
fn config(d: &TestDaemon, size: Option<&str>, extra: &str) -> PathBuf {
    let state = d.state().display();
    let unit = match size {
        Some(size) => format!(
            r#"hypervisor.compute.units.db = {{
    resources.memory.size = "256Mi";
    storage = [ {{ name = "data"; capability = "block"; size = "{size}"; }} ];
  }};"#
        ),
        None => String::new(),
    };
    d.config(
        "c.nix",
        &format!(
            r#"{{
  hypervisor.storage.tiers = {{
    fast = {{ level = 0; providers = [ {{ type = "nvme-local"; capacity = "64Mi"; location = "{state}/tiers/fast"; }} ]; }};
    slow = {{ level = 1; providers = [ {{ type = "hdd-array"; capacity = "256Mi"; location = "{state}/tiers/slow"; }} ]; }};
  }};
  {extra}
  {unit}
}}"#
        ),
    )
}

fn apply(d: &TestDaemon, file: &Path) -> Value {
    d.json(&["apply", "--json", file.to_str().unwrap()])
}

fn pid(u: &Value) -> u64 {
    u["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {u}"))
}

fn socket(d: &TestDaemon) -> String {
    d.state().join("run/nbd.sock").display().to_string()
}

fn uri(d: &TestDaemon, volume: &str) -> String {
    format!("nbd+unix:///{volume}?socket={}", socket(d))
}

/// Runs a host command, panicking with its stderr when it fails.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Types `command` on the unit's console once its shell answers, and returns the first
/// 32-hex-digit value printed after `key=`. The command must print the key split (as
/// `K""EY=`) so that the terminal's echo of the command does not match.
fn console_value(d: &TestDaemon, unit: &str, command: &str, key: &str) -> String {
    let out = Console::open(d, unit).run(command);
    let needle = format!("{key}=");
    out.match_indices(&needle)
        .find_map(|(i, _)| {
            let v: String = out[i + needle.len()..].chars().take(32).collect();
            (v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit())).then_some(v)
        })
        .unwrap_or_else(|| panic!("no {needle} value in {out:?}"))
}

/// The md5 of bytes [1 MiB, 4 MiB) of the guest's disk, read past the page cache.
fn guest_readback(d: &TestDaemon) -> String {
    console_value(
        d,
        "db",
        "echo 3 > /proc/sys/vm/drop_caches; echo R\"\"SUM=$(dd if=/dev/vda bs=1M skip=1 count=3 2>/dev/null | md5sum)",
        "RSUM",
    )
}

/// Writes 3 MiB of random bytes at 1 MiB of the guest's disk; returns their md5.
fn guest_write(d: &TestDaemon) -> String {
    console_value(
        d,
        "db",
        "head -c 3145728 /dev/urandom > /tmp/p; dd if=/tmp/p of=/dev/vda bs=1M seek=1 conv=fsync 2>/dev/null; sync; echo W\"\"SUM=$(md5sum < /tmp/p)",
        "WSUM",
    )
}

#[test]
fn a_guest_disk_on_a_tiered_volume_keeps_its_data_across_a_vm_restart() {
    let _g = heavy();
    let mut d = TestDaemon::start();
    apply(&d, &config(&d, Some("64Mi"), ""));
    let before = pid(&d.wait_ready("db"));
    let qemu_cmdline = std::fs::read(format!("/proc/{before}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&qemu_cmdline).contains("driver=nbd"),
        "QEMU attaches the disk over NBD"
    );
    assert!(
        !d.state().join("disks/db/data.raw").exists(),
        "no sparse file"
    );

    let written = guest_write(&d);
    assert_eq!(guest_readback(&d), written);

    // Real NBD clients read the daemon's export while the guest runs.
    let info: Value = serde_json::from_str(&run(
        "qemu-img",
        &["info", "--output=json", &uri(&d, "db.data")],
    ))
    .unwrap();
    assert_eq!(info["virtual-size"], 64 * MIB);
    let list = run("nbdinfo", &["--list", "--json", &uri(&d, "")]);
    assert!(list.contains("\"db.data\""), "{list}");
    // BLOCK_STATUS: the three written extents hold data, the rest are holes.
    let map = run("nbdinfo", &["--map", &uri(&d, "db.data")]);
    let data: Vec<(u64, u64)> = map
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|r| r.last() == Some(&"data"))
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(data, [(MIB, 3 * MIB)], "{map}");
    let host_sum = run(
        "sh",
        &[
            "-c",
            &format!(
                "nbdcopy '{}' - | dd bs=1M skip=1 count=3 iflag=fullblock 2>/dev/null | md5sum",
                uri(&d, "db.data")
            ),
        ],
    );
    assert_eq!(
        &host_sum[..32],
        written,
        "nbdcopy reads what the guest wrote"
    );

    // The continuous placement engine promotes a hot extent on its own.
    let moved = heat_and_wait_for_a_move(&d, Duration::from_secs(30));
    assert_eq!(moved[0]["subject"], "volume/db.data");
    assert_eq!(moved[0]["payload"]["to"], "fast");

    // A VM restart: a new QEMU attaches the same volume and reads the same bytes.
    d.json(&["unit", "restart", "--json", "db"]);
    let after = pid(&d.wait_ready("db"));
    assert_ne!(before, after, "a new QEMU");
    assert_eq!(guest_readback(&d), written);

    // A daemon restart: the VM keeps running, and its next disk requests reconnect to
    // the new daemon's socket.
    d.kill9();
    d.restart();
    assert_eq!(pid(&d.unit("db")), after, "re-attached");
    assert_eq!(guest_readback(&d), written);
    assert!(
        d.events("unit.warning").is_empty(),
        "{:?}",
        d.events("unit.warning")
    );
}

#[test]
fn placement_moves_a_hot_extent_and_graphql_reports_tiers_volumes_heat_and_the_move() {
    let _g = heavy();
    let d = TestDaemon::start();
    let triggered = r#"hypervisor.storage.fabric.movement.engine = "triggered";"#;
    apply(&d, &config(&d, Some("64Mi"), triggered));
    d.wait_ready("db");
    let written = guest_write(&d);
    let volumes = gql(
        &d,
        "{ volumes { name size allocatedExtents allocatedBytes } }",
        "volumes",
    )
    .unwrap();
    assert_eq!(
        volumes,
        json!([{ "name": "db.data", "size": 64 * MIB, "allocatedExtents": 3, "allocatedBytes": 3 * MIB }])
    );

    // Subscribe to data movement, then make extent 1 hot with 200 reads from qemu-io.
    let events = gql(&d, "{ events(limit: 10000) { id } }", "events").unwrap();
    let after = events.as_array().unwrap().last().unwrap()["id"].clone();
    let (mut node, lines) = node_subscribe(
        &d,
        "subscription($a: Int) { dataMovement(volume: \"db.data\", after: $a) { volume extent from to bytes } }",
        json!({ "a": after }),
    );
    let target = uri(&d, "db.data");
    let mut args = vec!["-f", "raw", "-r", target.as_str()];
    for _ in 0..200 {
        args.extend(["-c", "read 1M 64k"]);
    }
    run("qemu-io", &args);
    let heat = gql(
        &d,
        "{ heatMap(volume: \"db.data\") { granularity extents { extent offset tier level heat } } }",
        "heatMap",
    )
    .unwrap();
    let extents = heat["extents"].as_array().unwrap();
    assert_eq!(extents.len(), 3, "{heat}");
    assert!(extents.iter().all(|e| e["tier"] == "slow"), "{heat}");
    assert!(
        extents[0]["heat"].as_f64().unwrap() > 2.0 * extents[1]["heat"].as_f64().unwrap(),
        "extent 1 is hottest: {heat}"
    );

    let moved = gql(
        &d,
        "mutation { rebalanceStorage { volume extent from to bytes } }",
        "rebalanceStorage",
    )
    .unwrap();
    let hot =
        json!({ "volume": "db.data", "extent": 1, "from": "slow", "to": "fast", "bytes": MIB });
    assert!(moved.as_array().unwrap().contains(&hot), "{moved}");
    let seen = wait_until(Duration::from_secs(20), "dataMovement", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["data"]["dataMovement"].clone())
            .find(|m| m["extent"] == 1)
    });
    let _ = node.kill();
    let _ = node.wait();
    assert_eq!(seen, hot);
    let event = d
        .events("storage.moved")
        .into_iter()
        .find(|e| e["payload"]["extent"] == 1)
        .expect("a storage.moved event");
    assert_eq!(event["subject"], "volume/db.data");

    let tiers = gql(
        &d,
        "{ storageTiers { name level durable capacity used extents hitRatio moves movedIn movedOut } }",
        "storageTiers",
    )
    .unwrap();
    assert_eq!(tiers[0]["name"], "fast");
    assert_eq!(tiers[0]["capacity"], 64 * MIB);
    assert!(tiers[0]["extents"].as_u64().unwrap() >= 1, "{tiers}");
    assert!(tiers[0]["movedIn"].as_u64().unwrap() >= 1, "{tiers}");
    assert_eq!(tiers[1]["name"], "slow");
    assert_eq!(
        tiers[0]["extents"].as_u64().unwrap() + tiers[1]["extents"].as_u64().unwrap(),
        3
    );
    let heat = gql(
        &d,
        "{ heatMap(volume: \"db.data\") { extents { extent tier } } }",
        "heatMap",
    )
    .unwrap();
    assert_eq!(heat["extents"][0], json!({ "extent": 1, "tier": "fast" }));
    // The guest reads the same bytes from the moved extent.
    assert_eq!(guest_readback(&d), written);

    // Growth resizes the volume (a restart); a smaller size never shrinks it.
    apply(&d, &config(&d, Some("96Mi"), triggered));
    d.wait_ready("db");
    let size = |d: &TestDaemon| {
        gql(d, "{ volume(name: \"db.data\") { size } }", "volume").unwrap()["size"].clone()
    };
    assert_eq!(size(&d), 96 * MIB);
    assert_eq!(guest_readback(&d), written);
    apply(&d, &config(&d, Some("32Mi"), triggered));
    d.wait_ready("db");
    assert_eq!(size(&d), 96 * MIB);
    let warnings = d.events("unit.warning");
    assert!(
        warnings.iter().any(|w| w["payload"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("never shrink")),
        "{warnings:?}"
    );

    // Deleting the unit keeps its volume; deleting the volume then frees it.
    let refused = gql(
        &d,
        "mutation { deleteVolume(name: \"db.data\") }",
        "deleteVolume",
    );
    assert!(
        refused.unwrap_err().contains("remove the disk"),
        "refused while in use"
    );
    apply(&d, &config(&d, None, triggered));
    assert!(d.units().is_empty());
    assert_eq!(size(&d), 96 * MIB, "the volume outlives its unit");
    let deleted = gql(
        &d,
        "mutation { deleteVolume(name: \"db.data\") }",
        "deleteVolume",
    );
    assert_eq!(deleted, Ok(json!(true)));
    let volumes = gql(&d, "{ volumes { name } }", "volumes").unwrap();
    assert_eq!(volumes, json!([]));
}

#[test]
fn bad_storage_settings_fail_the_unit_with_the_reason() {
    let d = TestDaemon::start();
    // A tier asked for with no tiers configured.
    let f = d.config(
        "a.nix",
        r#"{ hypervisor.compute.units.a = { resources.memory.size = "256Mi"; storage = [ { name = "root"; capability = "fast"; size = "1Gi"; tier = 0; } ]; }; }"#,
    );
    apply(&d, &f);
    let u = d.wait_unit("a", Duration::from_secs(20), "failed", |u| {
        u["state"] == "FAILED"
    });
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("hypervisor.storage.tiers is empty"),
        "{u}"
    );

    // A level no tier has.
    let state = d.state().display();
    let f = d.config(
        "b.nix",
        &format!(
            r#"{{ hypervisor.storage.tiers.t1 = {{ level = 1; providers = [ {{ type = "ssd-array"; capacity = "64Mi"; location = "{state}/t1"; }} ]; }};
                 hypervisor.compute.units.a = {{ resources.memory.size = "256Mi"; storage = [ {{ name = "root"; capability = "fast"; size = "16Mi"; tier = 3; }} ]; }}; }}"#
        ),
    );
    apply(&d, &f);
    let u = d.wait_unit("a", Duration::from_secs(20), "failed", |u| {
        u["state"] == "FAILED" && u["reason"].as_str().unwrap_or("").contains("tier 3")
    });
    assert!(u["reason"].as_str().unwrap().contains("levels: 1"), "{u}");
    assert!(d.state().join("run/nbd.sock").exists());
}

#[test]
fn an_unwritable_tier_location_is_reported_and_fails_units_that_need_it() {
    let d = TestDaemon::start();
    let blocker = d.state().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let f = d.config(
        "c.nix",
        &format!(
            r#"{{ hypervisor.storage.tiers.t1 = {{ level = 1; providers = [ {{ type = "ssd-array"; capacity = "64Mi"; location = "{}/tier"; }} ]; }};
                 hypervisor.compute.units.a = {{ resources.memory.size = "256Mi"; storage = [ {{ name = "root"; capability = "fast"; size = "16Mi"; }} ]; }}; }}"#,
            blocker.display()
        ),
    );
    apply(&d, &f);
    let failed = d.events("storage.failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let message = failed[0]["payload"]["message"].as_str().unwrap();
    assert!(
        message.contains("tier t1: cannot create its location"),
        "{message}"
    );
    let u = d.wait_unit("a", Duration::from_secs(20), "failed", |u| {
        u["state"] == "FAILED"
    });
    assert!(
        u["reason"]
            .as_str()
            .unwrap()
            .contains("the storage engine is down"),
        "{u}"
    );
    let err = gql(&d, "{ storageTiers { name } }", "storageTiers").unwrap_err();
    assert!(err.contains("cannot create its location"), "{err}");
}

/// Reads extent 2 of `db.data` a hundred times with qemu-io, then waits for the placement
/// engine's first `storage.moved` event; returns the move events.
fn heat_and_wait_for_a_move(d: &TestDaemon, timeout: Duration) -> Vec<Value> {
    let target = uri(d, "db.data");
    let mut args = vec!["-f", "raw", "-r", target.as_str()];
    for _ in 0..100 {
        args.extend(["-c", "read 2M 64k"]);
    }
    run("qemu-io", &args);
    wait_until(timeout, "a storage.moved event", || {
        let moved = d.events("storage.moved");
        (!moved.is_empty()).then_some(moved)
    })
}

/// Asks the daemon's GraphQL API `query`; answers the data's `field`, or the errors.
fn gql(d: &TestDaemon, query: &str, field: &str) -> Result<Value, String> {
    let mut r = ureq::post(format!("http://{}/graphql", d.api))
        .header("authorization", &format!("Bearer {}", d.token()))
        .send_json(json!({ "query": query }))
        .map_err(|e| e.to_string())?;
    let v: Value = r.body_mut().read_json().map_err(|e| e.to_string())?;
    match v["errors"].as_array() {
        Some(errors) if !errors.is_empty() => Err(v["errors"].to_string()),
        _ => Ok(v["data"][field].clone()),
    }
}

/// Starts the graphql-ws client (npm, `crates/hypernix-api/tests/node`) on `query`;
/// returns its output lines as they arrive.
fn node_subscribe(
    d: &TestDaemon,
    query: &str,
    variables: Value,
) -> (std::process::Child, Arc<Mutex<Vec<Value>>>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hypernix-api/tests/node");
    assert!(
        dir.join("node_modules/graphql-ws").exists(),
        "run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    let mut node = Command::new("node")
        .env("HYPERNIX_TOKEN", d.token())
        .arg(dir.join("subscribe.mjs"))
        .arg(format!("ws://{}/graphql", d.api))
        .arg(query)
        .arg(variables.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = lines.clone();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&line).unwrap_or(Value::Null));
        }
    });
    // It prints "subscribed" on stderr once the subscription is sent.
    let mut stderr = BufReader::new(node.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    (node, lines)
}

#[test]
fn the_scheduled_engine_promotes_inside_its_cron_window() {
    let _g = heavy();
    let d = TestDaemon::start();
    let scheduled = r#"hypervisor.storage.fabric.movement = {
    engine = "scheduled"; schedule.promotionWindow = "* * * * *"; };"#;
    apply(&d, &config(&d, Some("64Mi"), scheduled));
    d.wait_ready("db");
    guest_write(&d);
    let moved = heat_and_wait_for_a_move(&d, Duration::from_secs(40));
    assert_eq!(moved[0]["payload"]["to"], "fast");
    assert!(
        d.events("storage.warning").is_empty(),
        "{:?}",
        d.events("storage.warning")
    );
}
