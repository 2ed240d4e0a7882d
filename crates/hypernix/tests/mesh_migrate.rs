//! Live migration between two daemons of a cluster: a guest counting on its console and
//! its disk moves to the other node without a reboot; its disk arrives intact, and moving
//! back sends only what changed. A raw disk file moves into a tiered volume and back.

mod kit;

use std::path::Path;
use std::time::{Duration, Instant};

use kit::{Console, TestDaemon, heavy, qemu_pids, wait_until};
use serde_json::json;

const UNIT: &str = r#"{
  hypervisor.compute.units.mover = {
    resources.memory.size = "192Mi";
    features.persistence.migration = "live";
    storage = [ { name = "data"; capability = "block"; size = "32Mi"; } ];
  };
  hypervisor.compute.units.stays = { resources.memory.size = "128Mi"; };
}"#;

/// A node whose `hypervisor.mesh` also holds `extra`.
fn node_with(
    dir: &Path,
    id: u32,
    mesh: &str,
    join: Option<(&str, &str)>,
    extra: &str,
) -> TestDaemon {
    let file = dir.join(format!("node{id}.nix"));
    std::fs::write(
        &file,
        format!(
            r#"{{ hypervisor.mesh = {{ enable = true; clusterName = "mig"; node.id = "{id}"; {extra} }}; }}"#
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let mut args = vec!["--node", &file, "--mesh-listen", mesh];
    if let Some((addr, token)) = join {
        args.extend(["--join", addr, "--join-token", token]);
    }
    TestDaemon::start_with(&args)
}

fn last_count(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix("COUNT ")?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

fn console_log(d: &TestDaemon, unit: &str) -> String {
    std::fs::read_to_string(d.state().join("units").join(unit).join("console.log"))
        .unwrap_or_default()
}

fn region(d: &TestDaemon) -> Vec<u8> {
    let bytes = std::fs::read(d.state().join("disks/mover/data.raw")).unwrap();
    bytes[1 << 20..9 << 20].to_vec()
}

/// Two nodes of one cluster, the second joined to the first.
fn cluster(files: &Path) -> (TestDaemon, TestDaemon) {
    cluster_with(files, "")
}

/// Two nodes of one cluster whose `hypervisor.mesh` also holds `extra`.
fn cluster_with(files: &Path, extra: &str) -> (TestDaemon, TestDaemon) {
    let (m1, m2) = (
        format!("127.0.0.1:{}", kit::mesh_port()),
        format!("127.0.0.1:{}", kit::mesh_port()),
    );
    let n1 = node_with(files, 1, &m1, None, extra);
    let token = kit::text(&n1.cli(&["mesh", "token"]).stdout)
        .trim()
        .to_string();
    let n2 = node_with(files, 2, &m2, Some((&m1, &token)), extra);
    (n1, n2)
}

/// Applies `config` (with units `mover` and `stays`) and waits until both are placed;
/// answers the node running `mover`, the other node, and the other node's id.
fn placed<'a>(
    n1: &'a TestDaemon,
    n2: &'a TestDaemon,
    config: &str,
) -> (&'a TestDaemon, &'a TestDaemon, &'static str) {
    let f = n1.config("units.nix", config);
    n1.json(&["apply", "--json", f.to_str().unwrap()]);
    // Least-loaded puts one unit on each node; which one runs `mover` varies.
    let (src, dst) = wait_until(Duration::from_secs(30), "both units placed", || {
        let s = n1.json(&["mesh", "status", "--json"]);
        if kit::placement(&s).len() < 2 {
            return None;
        }
        Some(if kit::node_of(&s, "mover") == Some(1) {
            (n1, n2)
        } else {
            (n2, n1)
        })
    });
    let to = if std::ptr::eq(dst, n2) { "2" } else { "1" };
    wait_until(Duration::from_secs(30), "mover listed on its node", || {
        src.units()
            .iter()
            .any(|u| u["name"] == "mover")
            .then_some(())
    });
    (src, dst, to)
}

#[test]
fn a_running_unit_moves_to_another_node_and_keeps_counting() {
    let _g = heavy();
    let files = tempfile::tempdir().unwrap();
    let (n1, n2) = cluster(files.path());
    let (src, dst, to) = placed(&n1, &n2, UNIT);
    src.wait_ready("mover");

    // The guest fills 8 MiB of its disk with random data, then counts on its console and
    // in its disk's first sector, five times a second.
    let mut console = Console::open(src, "mover");
    console.run("dd if=/dev/urandom of=/dev/vda bs=1M count=8 seek=1 conv=fsync 2>/dev/null");
    console.run("(i=0; while true; do i=$((i+1)); echo COUNT $i; echo $i | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; sleep 0.2; done) & true");
    wait_until(Duration::from_secs(30), "the guest counting", || {
        (last_count(&console_log(src, "mover")) >= 5).then_some(())
    });
    drop(console);

    // A unit that may not move live is refused, naming the setting.
    let out = src.cli(&["mesh", "migrate", "stays", "--to", to]);
    assert!(!out.status.success());

    let started = Instant::now();
    let report = src.json(&["mesh", "migrate", "mover", "--to", to, "--json"]);
    eprintln!(
        "live migration through the daemons: {report} (the command took {:?})",
        started.elapsed()
    );
    assert!(report["downtimeMs"].as_u64().unwrap() < 2_000, "{report}");
    assert!(report["diskBytes"].as_u64().unwrap() >= 9 << 20, "{report}");

    // It runs on the destination, counting on from where it was, without a reboot.
    let counted = last_count(&console_log(src, "mover"));
    wait_until(
        Duration::from_secs(30),
        "the guest counting on the destination",
        || (last_count(&console_log(dst, "mover")) >= counted + 5).then_some(()),
    );
    assert!(
        !console_log(dst, "mover").contains("HYPERNIX-READY"),
        "no reboot"
    );
    let moved = wait_until(
        Duration::from_secs(10),
        "mover listed on the destination",
        || dst.units().into_iter().find(|u| u["name"] == "mover"),
    );
    assert_eq!(moved["state"], "RUNNING", "{moved}");
    assert_eq!(moved["ready"], true, "{moved}");
    let s = src.json(&["mesh", "status", "--json"]);
    assert_eq!(
        kit::node_of(&s, "mover").map(|n| n.to_string()).as_deref(),
        Some(to),
        "{s}"
    );
    wait_until(Duration::from_secs(15), "the source's QEMU gone", || {
        qemu_pids(&src.state().join("units/mover"))
            .is_empty()
            .then_some(())
    });
    assert_eq!(region(src), region(dst), "the disk arrived byte for byte");
    assert!(!src.events("migration.completed").is_empty());
    // The destination's disk was new (zeros): only the written data crossed.
    let sent = report["diskSentBytes"].as_u64().unwrap();
    assert!((8 << 20..12 << 20).contains(&sent), "{report}");
    assert!(
        report["diskSkippedBytes"].as_u64().unwrap() >= 16 << 20,
        "{report}"
    );

    // Back to the first node, which holds the disk as it left: only what changed since
    // crosses (1 MiB of new data and the counter's sector).
    let mut console = Console::open(dst, "mover");
    console.run("dd if=/dev/urandom of=/dev/vda bs=1M count=1 seek=20 conv=fsync 2>/dev/null");
    drop(console);
    let back = if to == "2" { "1" } else { "2" };
    let report = dst.json(&["mesh", "migrate", "mover", "--to", back, "--json"]);
    eprintln!("live migration back: {report}");
    let sent = report["diskSentBytes"].as_u64().unwrap();
    assert!((1 << 20..2 << 20).contains(&sent), "{report}");
    let counted = last_count(&console_log(dst, "mover"));
    wait_until(
        Duration::from_secs(30),
        "the guest counting on the first node again",
        || (last_count(&console_log(src, "mover")) >= counted + 5).then_some(()),
    );
    wait_until(
        Duration::from_secs(15),
        "the second node's QEMU gone",
        || {
            qemu_pids(&dst.state().join("units/mover"))
                .is_empty()
                .then_some(())
        },
    );
    let disk = |d: &TestDaemon| std::fs::read(d.state().join("disks/mover/data.raw")).unwrap();
    assert!(
        disk(src)[512..] == disk(dst)[512..],
        "the disks match, but for the counter's sector the guest kept writing"
    );
}

/// The data of volume `volume` of `d`'s storage engine, read over its NBD socket.
fn volume(d: &TestDaemon, volume: &str) -> Vec<u8> {
    let out = tempfile::NamedTempFile::new().unwrap();
    let uri = format!(
        "nbd+unix:///{volume}?socket={}",
        d.state().join("run/nbd.sock").display()
    );
    let status = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", &uri])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img convert from {uri}");
    std::fs::read(out.path()).unwrap()
}

#[test]
fn a_disk_file_moves_into_a_tiered_volume_and_back_incrementally() {
    let _g = heavy();
    let files = tempfile::tempdir().unwrap();
    let (n1, n2) = cluster(files.path());
    let (src, dst, to) = placed(&n1, &n2, UNIT);
    src.wait_ready("mover");
    let mut console = Console::open(src, "mover");
    console.run("dd if=/dev/urandom of=/dev/vda bs=1M count=8 seek=1 conv=fsync 2>/dev/null");
    drop(console);

    // Storage tiers for the cluster: the running disk stays the file it is, a disk made
    // from now on is a tiered volume (in each node's own state directory).
    let tiered = UNIT.replacen(
        '{',
        r#"{
  hypervisor.storage.tiers = {
    fast = { level = 0; providers = [ { type = "nvme-local"; capacity = "64Mi"; } ]; };
    slow = { level = 1; providers = [ { type = "hdd-array"; capacity = "256Mi"; } ]; };
  };"#,
        1,
    );
    let f = src.config("tiered.nix", &tiered);
    src.json(&["apply", "--json", f.to_str().unwrap()]);
    // The other node adopts the cluster's configuration on its agent's next round.
    wait_until(Duration::from_secs(15), "the destination's tiers", || {
        dst.client()
            .request::<Vec<serde_json::Value>>(
                "{ storageTiers { name } }",
                json!({}),
                "storageTiers",
            )
            .ok()
            .filter(|t| t.len() == 2)
    });

    let report = src.json(&["mesh", "migrate", "mover", "--to", to, "--json"]);
    eprintln!("raw file into a tiered volume: {report}");
    let file = src.state().join("disks/mover/data.raw");
    assert!(
        !dst.state().join("disks/mover/data.raw").exists(),
        "the destination's disk is a volume, not a file"
    );
    let on_dst = volume(dst, "mover.data");
    assert_eq!(on_dst.len(), 32 << 20);
    let left = std::fs::read(&file).unwrap();
    assert_eq!(
        left[1 << 20..9 << 20],
        on_dst[1 << 20..9 << 20],
        "the data arrived"
    );

    // Back into the file it left: nothing changed, so (nearly) nothing is sent. (The first
    // move's destination hashed its volume through its QEMU's export, this one its file.)
    let back = if to == "2" { "1" } else { "2" };
    let report = dst.json(&["mesh", "migrate", "mover", "--to", back, "--json"]);
    eprintln!("tiered volume back into the raw file: {report}");
    assert!(
        report["diskSentBytes"].as_u64().unwrap() < 1 << 20,
        "{report}"
    );
    assert!(
        report["diskSkippedBytes"].as_u64().unwrap() >= 31 << 20,
        "{report}"
    );
    src.wait_ready("mover");
    assert!(
        std::fs::read(&file).unwrap() == volume(dst, "mover.data"),
        "the file and the volume hold the same disk"
    );
}

/// A tiny downtime limit without auto-converge: the memory never converges, the migration
/// is still running when the test kills its source.
const STUCK: &str = r#"{
  hypervisor.migration = { downtimeLimit = "1ms"; autoConverge = false; };
  hypervisor.compute.units.mover = {
    resources.memory.size = "192Mi";
    features.persistence.migration = "live";
    storage = [ { name = "data"; capability = "block"; size = "32Mi"; } ];
  };
}"#;

/// How the source goes away mid-migration.
#[derive(Clone, Copy, PartialEq)]
enum Death {
    /// Its daemon and its QEMU are killed: the streams break.
    Killed,
    /// Its daemon is killed and its QEMU stopped (SIGSTOP): the streams stay open and
    /// silent, as over a cut network.
    Silent,
}

#[test]
fn a_destination_whose_source_died_mid_migration_drops_its_waiting_qemu() {
    source_dies_mid_migration(Death::Killed, "QEMU exited");
}

#[test]
fn a_destination_whose_source_went_silent_mid_migration_drops_its_waiting_qemu() {
    source_dies_mid_migration(Death::Silent, "cluster member");
}

/// Kills the source of a migration once its memory moves, so that no `finishMigration`
/// comes, and checks that the destination drops its waiting unit by itself, for a reason
/// that names `why`.
fn source_dies_mid_migration(death: Death, why: &str) {
    let _g = heavy();
    let files = tempfile::tempdir().unwrap();
    // Two nodes: without failover and fencing for the test's length, the survivor keeps
    // its units though it lost its quorum, and nothing is placed anew.
    let patient = r#"coordination.failover = { fence = "240s"; grace = "300s"; };"#;
    let (n1, n2) = cluster_with(files.path(), patient);
    let f = n1.config("units.nix", STUCK);
    n1.json(&["apply", "--json", f.to_str().unwrap()]);
    let mut nodes = [n1, n2];
    let src = wait_until(Duration::from_secs(60), "mover placed", || {
        let s = nodes[0].json(&["mesh", "status", "--json"]);
        Some(if kit::node_of(&s, "mover")? == 1 {
            0
        } else {
            1
        })
    });
    let dst = 1 - src;
    wait_until(Duration::from_secs(30), "mover listed on its node", || {
        nodes[src]
            .units()
            .iter()
            .any(|u| u["name"] == "mover")
            .then_some(())
    });
    let to = (dst + 1).to_string();
    nodes[src].wait_ready("mover");

    // The source migrates in the background; once its memory moves, the source daemon is
    // killed (no `finishMigration` will come), then its QEMU killed or stopped.
    let (api, state) = (nodes[src].api.clone(), nodes[src].state().to_path_buf());
    let cli_token = nodes[src].token();
    let migrating = std::thread::spawn(move || {
        std::process::Command::new(kit::bin())
            .args(["--api", &api, "mesh", "migrate", "mover", "--to", &to])
            .env("HYPERNIX_TOKEN", cli_token)
            .output()
    });
    wait_until(Duration::from_secs(120), "the memory migrating", || {
        nodes[src]
            .events("migration.progress")
            .iter()
            .any(|e| e["payload"]["step"] == "migrating memory")
            .then_some(())
    });
    let waiting = qemu_pids(&nodes[dst].state().join("units/mover"));
    assert!(!waiting.is_empty(), "the destination has a waiting QEMU");
    nodes[src].kill9();
    let signal = if death == Death::Killed {
        "-9"
    } else {
        "-STOP"
    };
    for pid in qemu_pids(&state.join("units/mover")) {
        let _ = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status();
    }
    let killed = Instant::now();

    // The destination drops its waiting QEMU by itself, saying why.
    let failed = wait_until(
        Duration::from_secs(120),
        "migration.failed on the destination",
        || nodes[dst].events("migration.failed").into_iter().next(),
    );
    eprintln!(
        "the destination dropped its waiting QEMU {:?} after the source died: {failed}",
        killed.elapsed()
    );
    let reason = failed["payload"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{failed}");
    wait_until(Duration::from_secs(30), "the waiting QEMU gone", || {
        qemu_pids(&nodes[dst].state().join("units/mover"))
            .is_empty()
            .then_some(())
    });
    let _ = migrating.join();
}
