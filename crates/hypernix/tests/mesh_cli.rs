//! `hypernix mesh` against real daemons: status on a lone daemon, join with a token,
//! roles, a refused token, and leave.

mod kit;

use std::path::Path;
use std::time::Duration;

use kit::{TestDaemon, wait_until};

fn node_file(dir: &Path, id: u32) -> String {
    let file = dir.join(format!("node{id}.nix"));
    let text = format!(
        r#"{{ hypervisor.mesh = {{ enable = true; clusterName = "cli"; node.id = "{id}"; }}; }}"#
    );
    std::fs::write(&file, text).unwrap();
    file.display().to_string()
}

/// Kills, when dropped, every process whose command line names this path (the daemon `mesh
/// join` started in the background, and its VMs), so that a failing test leaves none.
struct Reaper(std::path::PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if pid != std::process::id() as i32
                && String::from_utf8_lossy(&cmdline).contains(&needle)
            {
                let _ = std::process::Command::new("kill")
                    .arg("-9")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

#[test]
fn a_lone_daemon_says_it_is_not_clustered() {
    let d = TestDaemon::start();
    let out = d.cli(&["mesh", "status"]);
    assert!(!out.status.success());
    assert!(
        kit::text(&out.stderr).contains("not clustered"),
        "{}",
        kit::text(&out.stderr)
    );
    // A configuration cannot turn clustering on: a node's settings are read at start.
    let f = d.config("m.nix", "{ hypervisor.mesh.enable = true; }");
    let out = d.cli(&["apply", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        kit::text(&out.stderr).contains("serve --node"),
        "{}",
        kit::text(&out.stderr)
    );
}

#[test]
fn a_node_joins_with_a_token_shows_its_roles_and_leaves() {
    let files = tempfile::tempdir().unwrap();
    let m1 = format!("127.0.0.1:{}", kit::mesh_port());
    let n1 = TestDaemon::start_with(&["--node", &node_file(files.path(), 1), "--mesh-listen", &m1]);
    let status = n1.json(&["mesh", "status", "--json"]);
    assert_eq!(status["leader"], 1, "{status}");

    // A malformed token: the new daemon exits, and `mesh join` says where its log is.
    let api2 = format!("127.0.0.1:{}", kit::free_port());
    let state2 = files.path().join("n2");
    let _reaper = Reaper(state2.clone());
    let m2 = format!("127.0.0.1:{}", kit::mesh_port());
    let join = |token: &str| {
        kit::hypernix(&[
            "--api",
            &api2,
            "mesh",
            "join",
            &m1,
            "--join-token",
            token,
            "--node",
            &node_file(files.path(), 2),
            "--mesh-listen",
            &m2,
            "--state-dir",
            state2.to_str().unwrap(),
            "--accel",
            "tcg",
        ])
    };
    let out = join("hnxjoin1.nonsense");
    assert!(!out.status.success());
    assert!(
        kit::text(&out.stderr).contains("the daemon exited"),
        "{}",
        kit::text(&out.stderr)
    );
    let log = std::fs::read_to_string(state2.join("daemon.log")).unwrap();
    assert!(log.contains("join token"), "{log}");
    std::fs::remove_dir_all(&state2).unwrap();

    let token = kit::text(&n1.cli(&["mesh", "token", "--ttl", "60"]).stdout)
        .trim()
        .to_string();
    let out = join(&token);
    assert!(out.status.success(), "{}", kit::text(&out.stderr));
    assert!(kit::text(&out.stdout).contains("node 2 joined cluster cli"));
    let token2 = std::fs::read_to_string(state2.join("caps/root.token")).unwrap();
    let on2 = |args: &[&str]| {
        let mut all = vec!["--api", &api2, "--token", token2.trim()];
        all.extend_from_slice(args);
        kit::hypernix(&all)
    };
    // A joined node holds no CA, so it issues no tokens.
    let out = on2(&["mesh", "token"]);
    assert!(!out.status.success());
    assert!(kit::text(&out.stderr).contains("does not hold the cluster CA"));

    // One key ring: node 1's root credential works on node 2 (and node 2's on node 1).
    let as_n1 = |args: &[&str]| {
        let root = n1.token();
        let mut all = vec!["--api", &api2, "--token", root.as_str()];
        all.extend_from_slice(args);
        kit::hypernix(&all)
    };
    assert!(as_n1(&["mesh", "status"]).status.success());
    let back = kit::hypernix(&["--api", &n1.api, "--token", token2.trim(), "mesh", "status"]);
    assert!(back.status.success(), "{}", kit::text(&back.stderr));
    // A token revoked on node 1 is refused by node 2 too.
    let child = kit::text(
        &n1.cli(&[
            "caps",
            "attenuate",
            &n1.token(),
            "--operation",
            "mesh.status",
        ])
        .stdout,
    )
    .trim()
    .to_string();
    let with_child =
        |api: &str| kit::hypernix(&["--api", api, "--token", &child, "mesh", "status"]);
    assert!(
        with_child(&api2).status.success(),
        "{}",
        kit::text(&with_child(&api2).stderr)
    );
    let out = n1.cli(&["caps", "revoke", &child]);
    assert!(out.status.success(), "{}", kit::text(&out.stderr));
    wait_until(
        Duration::from_secs(10),
        "node 2 refusing the revoked token",
        || {
            let out = with_child(&api2);
            (!out.status.success() && kit::text(&out.stderr).contains("revoked")).then_some(())
        },
    );
    // A rotation on node 2 reaches node 1: node 2's new root credential works there.
    let out = on2(&["caps", "rotate", "--grace", "1h"]);
    assert!(out.status.success(), "{}", kit::text(&out.stderr));
    let rotated = std::fs::read_to_string(state2.join("caps/root.token")).unwrap();
    assert_ne!(rotated.trim(), token2.trim());
    wait_until(
        Duration::from_secs(10),
        "node 1 accepting node 2's rotated key",
        || {
            let out = kit::hypernix(&[
                "--api",
                &n1.api,
                "--token",
                rotated.trim(),
                "mesh",
                "status",
            ]);
            out.status.success().then_some(())
        },
    );

    let roles = n1.json(&["mesh", "roles", "--json"]);
    assert_eq!(roles.as_array().unwrap().len(), 2, "{roles}");
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["votes"] == true && r["runsUnits"] == true)
    );
    let text = kit::text(&n1.cli(&["mesh", "status"]).stdout);
    assert!(text.contains("1*") && text.contains("worker"), "{text}");

    // A unit placed on node 2 (node 1 is kept busy by a unit of its own) moves to node 1
    // when node 2 leaves, and stops on node 2 first.
    let f = n1.config(
        "units.nix",
        r#"{ hypervisor.compute.units.one = { resources.memory.size = "128Mi"; };
             hypervisor.compute.units.two = { resources.memory.size = "128Mi"; }; }"#,
    );
    n1.json(&["apply", "--json", f.to_str().unwrap()]);
    let moving = wait_until(
        Duration::from_secs(20),
        "a unit placed on each node",
        || {
            let s = n1.json(&["mesh", "status", "--json"]);
            let (a, b) = (kit::units_on(&s, 1), kit::units_on(&s, 2));
            (a.len() == 1 && b.len() == 1).then(|| b[0].clone())
        },
    );
    let running_on2 = || {
        let out = on2(&["units", "--json"]);
        let units: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        units
            .as_array()
            .into_iter()
            .flatten()
            .any(|u| u["name"] == moving.as_str() && u["state"] == "RUNNING")
    };
    wait_until(
        Duration::from_secs(60),
        "the unit running on node 2",
        || running_on2().then_some(()),
    );
    let out = on2(&["mesh", "leave"]);
    assert!(out.status.success(), "{}", kit::text(&out.stderr));
    wait_until(
        Duration::from_secs(10),
        "node 2 gone from node 1's status",
        || {
            let s = n1.json(&["mesh", "status", "--json"]);
            (s["nodes"].as_array().unwrap().len() == 1).then_some(())
        },
    );
    assert!(!running_on2(), "node 2 stopped its unit before leaving");
    wait_until(
        Duration::from_secs(60),
        "the unit running on node 1",
        || {
            n1.units()
                .iter()
                .any(|u| u["name"] == moving.as_str() && u["state"] == "RUNNING")
                .then_some(())
        },
    );
    assert!(kit::qemu_pids(&state2).is_empty(), "no QEMU left on node 2");
    let _ = on2(&["down"]);
}
