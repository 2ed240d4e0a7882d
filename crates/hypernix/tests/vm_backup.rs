//! Backups of a running guest's disk through QEMU (TCG here): a scheduled full backup,
//! then incrementals that read only the blocks the guest changed, restored bit-identical
//! to what the guest saw; a snapshot served over NBD and a unit booted from an overlay on
//! it (instant restore); a full read after a restart lost the in-memory bitmap; a
//! continuous source seen through GraphQL subscriptions, beside a path source and one that
//! asks for what cannot be done yet.

mod kit;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hypernix_api::client::Client;
use kit::{Console, TestDaemon, heavy, wait_until};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// The unit `a` with a 64 MiB data disk, and `extra` configuration.
fn config(extra: &str) -> String {
    format!(
        r#"{{
  hypervisor.compute.units.a = {{
    resources.memory.size = "256Mi";
    storage = [ {{ name = "data"; capability = "ssd"; size = "64Mi"; }} ];
  }};
  {extra}
}}"#
    )
}

fn backup_config(repo: &Path, schedule: &str) -> String {
    format!(
        r#"hypervisor.backup.repositories.local = {{
    location = "{}";
    encryption.enabled = false;
  }};
  hypervisor.backup.sources.vms = {{
    selection.ids = [ "a" ];
    repository = "local";
    schedule = {schedule};
  }};"#,
        repo.display()
    )
}

/// The SHA-256 of the guest's /dev/vda, as the guest reads it.
fn disk_sha(console: &mut Console) -> String {
    let out = console.run("sync; sha256sum /dev/vda");
    sha_in(&out, "/dev/vda").unwrap_or_else(|| panic!("no checksum in {out:?}"))
}

/// The hex digest printed by sha256sum for `name` in `text`.
fn sha_in(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (hash, rest) = l.trim().split_once(char::is_whitespace)?;
        (hash.len() == 64 && rest.trim() == name && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| hash.to_string())
    })
}

fn host_sha(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace().next().unwrap().to_string()
}

/// Restores snapshot `id` of `repo` with the CLI and returns the restored file.
fn restore(repo: &Path, id: &str, dir: &Path) -> std::path::PathBuf {
    let target = dir.join(format!("restored-{id}"));
    let out = Command::new(kit::bin())
        .args(["backup", "restore", "--repo"])
        .arg(repo)
        .arg(id)
        .arg("--target")
        .arg(&target)
        .env("HYPERNIX_BACKUP_PASSWORD", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

/// The UTC time of day `minutes` from now, as `HH:MM`.
fn utc_in_minutes(minutes: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let m = (now / 60 + minutes) % (24 * 60);
    format!("{:02}:{:02}", m / 60, m % 60)
}

/// A child process killed when dropped, also when a test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` and returns its exit code and output.
fn status(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// Serves snapshot `id` over NBD with an overlay, next to its restore in `dir`: NBD
/// clients read what the restore holds, and the overlay takes writes the export never sees.
/// Returns the running server and the overlay.
fn serve_and_overlay(repo: &Path, id: &str, dir: &Path) -> (Killed, std::path::PathBuf) {
    let restored = dir.join(format!("restored-{id}"));
    let socket = dir.join("serve.sock");
    let overlay = dir.join("overlay.qcow2");
    let server = Command::new(kit::bin())
        .args(["backup", "serve", "--repo"])
        .arg(repo)
        .arg(id)
        .arg("--socket")
        .arg(&socket)
        .arg("--overlay")
        .arg(&overlay)
        .env("HYPERNIX_BACKUP_PASSWORD", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Killed(server);
    wait_until(Duration::from_secs(30), "the snapshot served", || {
        (socket.exists() && overlay.exists()).then_some(())
    });
    let uri = format!("nbd+unix:///snapshot?socket={}", socket.display());
    let (code, size) = status(Command::new("nbdinfo").args(["--size", &uri]));
    assert_eq!((code, size.trim()), (0, "67108864"));
    let compare = |other: &str, format: &str| {
        status(
            Command::new("qemu-img")
                .args(["compare", "-f", "raw", "-F", format])
                .arg(&restored)
                .arg(other),
        )
    };
    let (code, out) = compare(&uri, "raw");
    assert_eq!(code, 0, "the served snapshot equals its restore: {out}");
    let (code, out) = compare(overlay.to_str().unwrap(), "qcow2");
    assert_eq!(
        code, 0,
        "the fresh overlay reads through to the export: {out}"
    );

    // Writes go to the overlay; the export refuses them and stays as it was.
    let (code, out) = status(
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", "write -P 0x77 1M 64k"])
            .arg(&overlay),
    );
    assert_eq!(code, 0, "{out}");
    let (code, _) = compare(overlay.to_str().unwrap(), "qcow2");
    assert_eq!(code, 1, "the overlay now differs from the snapshot");
    let (code, _) = compare(&uri, "raw");
    assert_eq!(code, 0, "the served snapshot did not change");
    let (_, out) = status(Command::new("qemu-io").args(["-f", "raw", "-c", "write 0 4k", &uri]));
    assert!(
        out.to_lowercase().contains("read-only") || out.contains("ermission"),
        "a write to the export fails: {out}"
    );
    (server, overlay)
}

fn backup_run(client: &Client) -> Value {
    let snaps: Vec<Value> = client
        .request(
            "mutation { backupRun(source: \"vms\") { id parent size bytesRead bytesReused paths } }",
            json!({}),
            "backupRun",
        )
        .unwrap();
    assert_eq!(snaps.len(), 1, "one disk, one snapshot: {snaps:?}");
    snaps[0].clone()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

#[test]
fn guest_disk_backups_are_incremental_bit_identical_and_restore_instantly() {
    let _g = heavy();
    let d = TestDaemon::start();
    let client = d.client();
    let repo = d.state().join("repo");
    let f = d.config("unit.nix", &config(""));
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    d.wait_ready("a");
    let mut console = Console::open(&d, "a");
    let zero_sha = disk_sha(&mut console);

    // The source's first run comes from the schedule: a full read of a disk that is all
    // holes, so nothing is read.
    let f = d.config(
        "backup.nix",
        &config(&backup_config(&repo, "{ interval = \"24h\"; }")),
    );
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let completed = wait_until(Duration::from_secs(120), "the scheduled backup", || {
        d.events("backup.completed").pop()
    });
    let first = completed["payload"]["snapshots"][0].clone();
    assert_eq!(num(&first, "size"), 64 * MIB, "{completed}");
    assert_eq!(num(&first, "bytesRead"), 0, "{completed}");
    assert!(first["parent"].is_null());

    // 1 MiB at 2 MiB and 4 KiB at 20 MiB: the next backup reads those blocks only.
    console.run("dd if=/dev/urandom of=/dev/vda bs=64k count=16 seek=32 conv=fsync");
    console.run("dd if=/dev/urandom of=/dev/vda bs=4k count=1 seek=5120 conv=fsync");
    let sha_a = disk_sha(&mut console);
    let second = backup_run(&client);
    assert_eq!(second["parent"], first["id"]);
    let read = num(&second, "bytesRead");
    assert!(
        (MIB + 4096..=2 * MIB + 128 * 1024).contains(&read),
        "read {read} bytes for 1 MiB + 4 KiB of writes"
    );
    assert_eq!(read + num(&second, "bytesReused"), 64 * MIB);

    // Overwrite 4 KiB inside the first write and 512 KiB at 40 MiB.
    console.run("dd if=/dev/urandom of=/dev/vda bs=4k count=1 seek=600 conv=fsync");
    console.run("dd if=/dev/urandom of=/dev/vda bs=64k count=8 seek=640 conv=fsync");
    let sha_b = disk_sha(&mut console);
    assert!(
        zero_sha != sha_a && sha_a != sha_b,
        "the guest's writes changed the disk"
    );
    // The same through the CLI.
    let third = d.json(&["backup", "run", "vms", "--json"])[0].clone();
    eprintln!("backups: {first}\n{second}\n{third}");
    assert_eq!(third["parent"], second["id"]);
    let read = num(&third, "bytesRead");
    // Changed blocks are widened to the parent's chunks (at most 8 MiB each).
    assert!(
        (512 * 1024..=16 * MIB).contains(&read),
        "read {read} bytes for 516 KiB of writes"
    );
    assert!(num(&third, "bytesReused") >= 48 * MIB);

    // Every snapshot restores to exactly what the guest saw when it was taken.
    let dir = tempfile::tempdir().unwrap();
    for (snap, sha) in [(&first, &zero_sha), (&second, &sha_a), (&third, &sha_b)] {
        let file = restore(&repo, snap["id"].as_str().unwrap(), dir.path());
        assert_eq!(&host_sha(&file), sha, "snapshot {snap}");
    }
    // A raw disk's bitmap lives in QEMU's memory: after a restart of the unit the next
    // backup finds no parent and reads the allocated ranges, once.
    drop(console);
    d.json(&["unit", "restart", "a", "--json"]);
    d.wait_unit("a", Duration::from_secs(60), "running", |u| {
        u["state"] == "RUNNING"
    });
    let fourth = backup_run(&client);
    eprintln!("after the restart: {fourth}");
    assert!(fourth["parent"].is_null(), "{fourth}");
    let read = num(&fourth, "bytesRead");
    assert!(
        (MIB + 512 * 1024..=4 * MIB).contains(&read),
        "read {read} bytes: the allocated ranges only"
    );
    let file = restore(&repo, fourth["id"].as_str().unwrap(), dir.path());
    assert_eq!(host_sha(&file), sha_b);
    let fifth = backup_run(&client);
    assert_eq!(fifth["parent"], fourth["id"]);

    let (server, overlay) = serve_and_overlay(&repo, third["id"].as_str().unwrap(), dir.path());

    // Instant restore: a unit booted from the overlay reads the served snapshot through
    // it (with the overlay's own write on top); a backup of that unit's disk shows it. The
    // served repository's index is locked while it is served, so that backup goes to a
    // second repository. Its schedule's window opens in two hours: only backupRun runs it.
    let second = d.state().join("second");
    let restored_unit = format!(
        r#"hypervisor.compute.units.r = {{ resources.memory.size = "256Mi"; image = "{}"; }};
  hypervisor.backup.repositories.second = {{ location = "{}"; encryption.enabled = false; }};
  hypervisor.backup.sources.restored = {{
    selection.ids = [ "r" ]; repository = "second";
    schedule = {{ interval = "24h"; window = {{ start = "{}"; end = "{}"; }}; }};
  }};
  {}"#,
        overlay.display(),
        second.display(),
        utc_in_minutes(120),
        utc_in_minutes(180),
        backup_config(&repo, "{ interval = \"24h\"; }")
    );
    let f = d.config("restore.nix", &config(&restored_unit));
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    d.wait_unit("r", Duration::from_secs(60), "running", |u| {
        u["state"] == "RUNNING"
    });
    let snaps: Vec<Value> = client
        .request(
            "mutation { backupRun(source: \"restored\") { id size } }",
            json!({}),
            "backupRun",
        )
        .unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let file = restore(&second, snaps[0]["id"].as_str().unwrap(), dir.path());
    let (code, out) = status(
        Command::new("qemu-img")
            .args(["compare", "-U", "-f", "raw", "-F", "qcow2"])
            .arg(&file)
            .arg(&overlay),
    );
    assert_eq!(
        code, 0,
        "the unit's disk is the overlay over the snapshot: {out}"
    );
    // The overlay is qcow2, so its bitmap is stored in it and outlives a restart of the
    // unit's QEMU: the next backup still builds on the last one.
    d.json(&["unit", "restart", "r", "--json"]);
    d.wait_unit("r", Duration::from_secs(90), "running", |u| {
        u["state"] == "RUNNING"
    });
    let again: Vec<Value> = client
        .request(
            "mutation { backupRun(source: \"restored\") { id parent bytesRead } }",
            json!({}),
            "backupRun",
        )
        .unwrap();
    assert_eq!(again[0]["parent"], snaps[0]["id"], "{again:?}");
    assert_eq!(
        num(&again[0], "bytesRead"),
        0,
        "nothing was written meanwhile"
    );
    drop(server);
    let listed = d.json(&["backup", "snapshots", "--repository", "local", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5);
    assert!(
        listed.iter().all(|s| s["source"] == "vms/a/disk0"),
        "{listed:?}"
    );
}

#[test]
fn a_continuous_source_selected_by_label_streams_backups_to_subscribers() {
    let _g = heavy();
    let d = TestDaemon::start();
    let repo = d.state().join("repo");
    let token = d.token();
    let (mut completed, done) = kit::subscribe(
        &d.api,
        &token,
        "subscription { backupCompleted(source: \"vms\") { source repository skipped \
         snapshots { id parent bytesRead bytesReused } } }",
    );
    let (mut progress, moving) = kit::subscribe(
        &d.api,
        &token,
        "subscription { backupProgress(source: \"vms\") { unit disk done total } }",
    );
    // Let both clients subscribe before anything happens.
    std::thread::sleep(Duration::from_secs(2));
    let units = config(&backup_config(
        &repo,
        "{ continuous = true; interval = \"2s\"; }",
    ))
    .replace(
        "selection.ids = [ \"a\" ];",
        "selection.labels.tier = \"db\";",
    )
    .replace(
        "resources.memory.size",
        "labels.tier = \"db\";\n    resources.memory.size",
    );
    // Beside it: a source of host paths, and one asking for what cannot be done yet.
    let files = d.state().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("note"), "kept").unwrap();
    let units = units.replace(
        "hypervisor.backup.sources.vms",
        &format!(
            r#"hypervisor.backup.sources.files = {{
    selection.paths = [ "{}" ]; repository = "local"; schedule.interval = "24h";
  }};
  hypervisor.backup.sources.app = {{
    selection.ids = [ "a" ]; repository = "local"; schedule.interval = "24h";
    strategy.consistency = "application-consistent";
  }};
  hypervisor.backup.sources.vms"#,
            files.display()
        ),
    );
    let f = d.config("c.nix", &units);
    d.json(&["apply", "--json", f.to_str().unwrap()]);

    // Runs follow each other; those before the guest runs skip it, later ones chain.
    let runs = wait_until(Duration::from_secs(180), "two backups of the unit", || {
        let lines = done.lock().unwrap();
        let runs: Vec<Value> = lines
            .iter()
            .map(|l| l["data"]["backupCompleted"].clone())
            .filter(|c| c["snapshots"].as_array().is_some_and(|s| !s.is_empty()))
            .collect();
        (runs.len() >= 2).then_some(runs)
    });
    assert_eq!(runs[0]["repository"], "local");
    let (a, b) = (&runs[0]["snapshots"][0], &runs[1]["snapshots"][0]);
    assert_eq!(b["parent"], a["id"], "the second run builds on the first");
    assert_eq!(num(b, "bytesRead") + num(b, "bytesReused"), 64 * MIB);
    let finished = wait_until(
        Duration::from_secs(30),
        "a finished progress report",
        || {
            moving
                .lock()
                .unwrap()
                .iter()
                .map(|l| l["data"]["backupProgress"].clone())
                .find(|p| p["done"] == p["total"] && p["unit"] == "a")
        },
    );
    assert_eq!(num(&finished, "total"), 64 * MIB);
    assert_eq!(finished["disk"], "disk0");
    let files_done = wait_until(Duration::from_secs(30), "the path source", || {
        d.events("backup.completed")
            .into_iter()
            .find(|e| e["payload"]["source"] == "files")
    });
    let tree = &files_done["payload"]["snapshots"][0];
    assert_eq!(tree["source"], "files", "{files_done}");
    assert_eq!(num(tree, "bytesRead"), 4);
    let failed = wait_until(Duration::from_secs(30), "the refused source", || {
        d.events("backup.failed")
            .into_iter()
            .find(|e| e["payload"]["source"] == "app")
    });
    let error = failed["payload"]["error"].as_str().unwrap();
    assert!(error.contains("crash-consistent"), "{error}");
    let out = d.cli(&["backup", "run", "app"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("guest agent"));
    let _ = completed.kill();
    let _ = progress.kill();
    let _ = completed.wait();
    let _ = progress.wait();
}
