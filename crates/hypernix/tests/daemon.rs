//! The daemon with real QEMU guests (TCG here): boot, readiness, restart policy, ACPI
//! stop, daemon restarts that re-attach, live and restart changes, and bad input.

mod kit;

use std::time::{Duration, Instant};

use kit::{TestDaemon, heavy, qemu_pids};

fn units_config(extra: &str) -> String {
    format!(
        r#"{{
  hypervisor.compute.tags = {{
    small = {{ category = "performance"; priority = 40; values.resources.memory.size = "256Mi"; }};
    wide = {{ category = "performance"; priority = 50; values.resources.compute.burst = 200; }};
  }};
  hypervisor.compute.policies.base = {{ tags = [ "small" ]; defaults.workload.type = "persistent"; }};
  {extra}
}}"#
    )
}

fn pid(u: &serde_json::Value) -> u64 {
    u["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {u}"))
}

#[test]
fn boot_ready_crash_restart_and_acpi_stop() {
    let _g = heavy();
    let d = TestDaemon::start();
    let f = d.config(
        "c.nix",
        &units_config(
            r#"hypervisor.compute.units.a = { policies = [ "base" ]; resources.compute.units = 150; network = [ { name = "eth0"; capability = "nat"; } ]; };
               hypervisor.compute.units.b = { policies = [ "base" ]; };"#,
        ),
    );
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let a = d.wait_ready("a");
    d.wait_ready("b");
    assert_eq!(a["accel"], "tcg");
    // 150 compute units: 2 vCPUs limited to 1.5 cores together (cgroup v1 on this host).
    assert_eq!(a["vcpus"], 2);
    let cgroup = std::path::Path::new("/sys/fs/cgroup/cpu/hypernix/a");
    let quota = std::fs::read_to_string(cgroup.join("cpu.cfs_quota_us")).unwrap();
    assert_eq!(quota.trim(), "150000");
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|p| p == pid(&a).to_string()), "{procs}");
    let logs = d.cli(&["logs", "a"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("HYPERNIX-READY"));

    // The console: a command typed there runs in the guest; Ctrl-] detaches.
    attach_console_and_run(&d, "a");

    // kill -9 of QEMU: restarted by policy within 2 s.
    let old = pid(&a);
    let killed = Instant::now();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(old as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let restarted = d.wait_unit("a", Duration::from_secs(10), "a new QEMU", |u| {
        u["pid"].as_u64().is_some_and(|p| p != old)
    });
    let took = killed.elapsed();
    assert!(took <= Duration::from_secs(2), "restart took {took:?}");
    assert_eq!(restarted["restarts"], 1);
    assert!(!d.events("unit.crashed").is_empty());

    // ACPI stop: the guest powers itself off, no kill needed.
    let b = pid(&d.unit("b"));
    let out = d.cli(&["unit", "stop", "b"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b_now = d.unit("b");
    assert_eq!(b_now["state"], "STOPPED");
    assert!(!std::path::Path::new(&format!("/proc/{b}")).exists());
    let stopped = d.events("unit.stopped");
    assert!(
        stopped
            .iter()
            .any(|e| e["subject"] == "unit/b" && e["payload"]["how"] == "acpi"),
        "{stopped:?}"
    );
    // A stopped unit stays stopped: no restart by policy.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.unit("b")["state"], "STOPPED");
    d.json(&["unit", "start", "--json", "b"]);
    d.wait_ready("b");
}

#[test]
fn a_new_daemon_reattaches_to_running_guests() {
    let _g = heavy();
    let mut d = TestDaemon::start();
    let f = d.config(
        "c.nix",
        &units_config(
            r#"hypervisor.compute.units.a = { policies = [ "base" ]; };
               hypervisor.compute.units.b = { policies = [ "base" ]; };"#,
        ),
    );
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let pids = [pid(&d.wait_ready("a")), pid(&d.wait_ready("b"))];
    d.kill9();
    d.restart();
    for (name, old) in ["a", "b"].into_iter().zip(pids) {
        let u = d.unit(name);
        assert_eq!(u["state"], "RUNNING", "{u}");
        assert_eq!(pid(&u), old, "{name} was not re-attached");
    }
    let mut running = qemu_pids(d.state());
    running.sort();
    let mut expected: Vec<u32> = pids.iter().map(|p| *p as u32).collect();
    expected.sort();
    assert_eq!(running, expected, "no duplicate QEMU");
    assert_eq!(d.events("unit.reattached").len(), 2);
    // Re-attached units are supervised again: a crash still restarts them.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pids[0] as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    d.wait_unit("a", Duration::from_secs(10), "restarted", |u| {
        u["pid"].as_u64().is_some_and(|p| p != pids[0])
    });
}

#[test]
fn a_tag_change_restarts_only_its_units_and_balloon_applies_live() {
    let _g = heavy();
    let d = TestDaemon::start();
    let config = |burst: u32, mem: &str| {
        units_config(&format!(
            r#"hypervisor.compute.tags.fast = {{ category = "performance"; priority = 70; values.resources.compute.burst = {burst}; }};
               hypervisor.compute.tags.lean = {{ category = "performance"; priority = 70; values.resources.memory.size = "{mem}"; }};
               hypervisor.compute.units.x = {{ policies = [ "base" ]; tags = [ "fast" ]; }};
               hypervisor.compute.units.y = {{ policies = [ "base" ]; tags = [ "lean" ]; }};"#
        ))
    };
    let f = d.config("c.nix", &config(100, "256Mi"));
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let x = pid(&d.wait_ready("x"));
    let y = pid(&d.wait_ready("y"));

    let f = d.config("c.nix", &config(200, "192Mi"));
    let plan = d.json(&["apply", "--json", f.to_str().unwrap()]);
    let actions: Vec<(String, String)> = plan["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["unit"].as_str().unwrap().to_string(),
                u["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("x".into(), "restart".into()),
            ("y".into(), "apply-live".into())
        ]
    );
    let x2 = d.wait_ready("x");
    assert_ne!(pid(&x2), x, "x restarted");
    let y2 = d.unit("y");
    assert_eq!(pid(&y2), y, "y kept running");
    assert_eq!(y2["liveMemory"], 192u64 << 20);
    let ballooned = d.events("unit.ballooned");
    assert!(
        ballooned.iter().any(|e| e["subject"] == "unit/y"),
        "{ballooned:?}"
    );
}

#[test]
fn bad_input_fails_the_unit_and_the_daemon_keeps_serving() {
    let _g = heavy();
    let d = TestDaemon::start();
    let f = d.config(
        "c.nix",
        r#"{
  hypervisor.compute.units.huge.resources.memory.size = "64Ti";
  hypervisor.compute.units.noimage.image = "/nonexistent/disk.qcow2";
  hypervisor.compute.units.badopt.resources.compute.features = [ "no-such-feature" ];
}"#,
    );
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    for (name, why) in [
        ("huge", "more than the host"),
        ("noimage", "/nonexistent/disk.qcow2 does not exist"),
        ("badopt", "no-such-feature"),
    ] {
        let u = d.wait_unit(name, Duration::from_secs(20), "failed", |u| {
            u["state"] == "FAILED"
        });
        let reason = u["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{name}: {reason}");
    }
    let failed = d.events("unit.failed");
    assert_eq!(failed.len(), 3, "{failed:?}");
    let out = d.cli(&["units"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("failed"));
    assert!(qemu_pids(d.state()).is_empty());

    // Clustering is refused, not silently ignored.
    let mesh = d.config("mesh.nix", "{ hypervisor.mesh.enable = true; }");
    let out = d.cli(&["apply", mesh.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hypervisor.mesh.enable"), "{err}");
    assert_eq!(d.units().len(), 3, "nothing changed");
}

#[test]
fn up_starts_the_daemon_and_the_quickstart_and_down_stops_them() {
    let _g = heavy();
    let dir = tempfile::Builder::new()
        .prefix("hnx")
        .tempdir_in("/tmp")
        .unwrap();
    let api = format!("127.0.0.1:{}", kit::free_port());
    let quickstart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.nix");
    let run = |args: &[&str]| {
        let token = std::fs::read_to_string(dir.path().join("caps/root.token")).unwrap_or_default();
        std::process::Command::new(kit::bin())
            .arg("--api")
            .arg(&api)
            .env("HYPERNIX_TOKEN", token.trim())
            .args(args)
            .output()
            .unwrap()
    };
    let state = dir.path().to_str().unwrap();
    // Without --api, `up` reaches (and starts) the daemon at the configuration's api.listen.
    let api_nix = dir.path().join("api.nix");
    std::fs::write(
        &api_nix,
        format!("{{ hypervisor.api.listen = \"{api}\"; }}"),
    )
    .unwrap();
    let out = std::process::Command::new(kit::bin())
        .env_remove("HYPERNIX_API")
        .args([
            "up",
            quickstart.to_str().unwrap(),
            api_nix.to_str().unwrap(),
        ])
        .args(["--state-dir", state, "--accel", "tcg"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("API: http://{api}")), "{stdout}");
    for unit in ["alpha", "beta"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(unit))
            .unwrap_or_default();
        assert!(
            line.contains("running (ready)") && line.contains("tcg"),
            "{stdout}"
        );
    }
    let pids = qemu_pids(dir.path());
    assert_eq!(pids.len(), 2);

    // A graceful daemon stop leaves the VMs running; `up` again re-attaches to them.
    let health: serde_json::Value =
        serde_json::from_slice(&run(&["units", "--json"]).stdout).unwrap();
    assert_eq!(health.as_array().unwrap().len(), 2);
    let daemon_pid = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(daemon_pid.contains("hypernix daemon ready"));
    let out = run(&["down", "--keep-units"]);
    assert!(out.status.success());
    assert_eq!(qemu_pids(dir.path()), pids, "VMs survive the daemon");
    let out = run(&[
        "up",
        quickstart.to_str().unwrap(),
        "--state-dir",
        state,
        "--accel",
        "tcg",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(qemu_pids(dir.path()), pids, "re-attached, not restarted");

    let out = run(&["down"]);
    assert!(out.status.success());
    kit::wait_until(Duration::from_secs(10), "no QEMU left", || {
        qemu_pids(dir.path()).is_empty().then_some(())
    });
    assert!(
        run(&["units"]).status.code() == Some(1),
        "the daemon is gone"
    );
}

/// Types a command into `hypernix console` and waits for the guest's answer.
fn attach_console_and_run(d: &TestDaemon, unit: &str) {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new(kit::bin())
        .args(["--api", &d.api, "console", unit])
        .env("HYPERNIX_TOKEN", d.token())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    // The arithmetic is only evaluated by the guest's shell, not echoed by the terminal.
    kit::wait_until(
        Duration::from_secs(20),
        "the guest's shell to answer",
        || {
            stdin.write_all(b"echo console-$((6*7))\n").unwrap();
            std::thread::sleep(Duration::from_millis(500));
            String::from_utf8_lossy(&seen.lock().unwrap())
                .contains("console-42")
                .then_some(())
        },
    );
    stdin.write_all(&[0x1d]).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("detached"), "{stderr}");
}
