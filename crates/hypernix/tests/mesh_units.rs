//! Three daemons form a cluster on loopback (mutual TLS, join tokens), place test guests on
//! their workers, fail over a dead worker's units, and fence a node cut off from quorum.

mod kit;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kit::{TestDaemon, heavy, qemu_pids, wait_until};
use serde_json::Value;

/// `mesh.coordination.failover` of every node.
const GRACE_SECS: u64 = 6;
const FENCE_SECS: u64 = 4;

const UNITS: &str = r#"{
  hypervisor.compute.units.a = { resources.memory.size = "192Mi"; };
  hypervisor.compute.units.b = { resources.memory.size = "192Mi"; };
  hypervisor.compute.units.c = { resources.memory.size = "192Mi"; };
}"#;

/// A node's settings file and the `serve` arguments that use it.
fn node_args(
    dir: &Path,
    id: u32,
    role: &str,
    mesh: &str,
    join: Option<(&str, &str)>,
) -> Vec<String> {
    let file = dir.join(format!("node{id}.nix"));
    let text = format!(
        r#"{{ hypervisor.mesh = {{ enable = true; clusterName = "test"; node.id = "{id}";
             node.roles = [ "{role}" ];
             coordination.failover = {{ grace = "{GRACE_SECS}s"; fence = "{FENCE_SECS}s"; }}; }}; }}"#
    );
    std::fs::write(&file, text).unwrap();
    let mut args = vec![
        "--node".to_string(),
        file.display().to_string(),
        "--mesh-listen".into(),
        mesh.into(),
    ];
    if let Some((addr, token)) = join {
        args.extend([
            "--join".into(),
            addr.into(),
            "--join-token".into(),
            token.into(),
        ]);
    }
    args
}

fn start(args: &[String]) -> TestDaemon {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    TestDaemon::start_with(&refs)
}

fn status(d: &TestDaemon) -> Value {
    d.json(&["mesh", "status", "--json"])
}

/// Units running on a daemon (by its own `units` list).
fn running(d: &TestDaemon) -> Vec<String> {
    let mut names: Vec<String> = d
        .units()
        .into_iter()
        .filter(|u| u["state"] == "RUNNING")
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// QEMU processes per unit name across the given state directories.
fn qemu_count(dirs: &[&Path], unit: &str) -> usize {
    dirs.iter()
        .map(|d| qemu_pids(&d.join("units").join(unit)).len())
        .sum()
}

/// A node's machine dies: its daemon and its VMs are SIGKILLed.
fn crash(d: &mut TestDaemon) {
    d.kill9();
    for pid in qemu_pids(d.state()) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

#[test]
fn a_cluster_places_units_on_workers_fails_over_a_dead_worker_and_fences_without_quorum() {
    let _g = heavy();
    let files = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", kit::mesh_port()))
        .collect();

    // Node 1 bootstraps the cluster (and its CA); 2 joins as a worker, 3 as a witness,
    // each with a single-use token from node 1.
    let n1 = start(&node_args(files.path(), 1, "worker", &ports[0], None));
    let token = |d: &TestDaemon| {
        kit::text(&d.cli(&["mesh", "token"]).stdout)
            .trim()
            .to_string()
    };
    let t2 = token(&n1);
    assert!(t2.starts_with("hnxjoin1."), "a join token: {t2}");
    let mut n2 = start(&node_args(
        files.path(),
        2,
        "worker",
        &ports[1],
        Some((&ports[0], &t2)),
    ));
    // A used token is refused: a node presenting it again cannot join.
    let reused = Command::new(kit::bin())
        .args(["serve", "--accel", "tcg", "--listen"])
        .arg(format!("127.0.0.1:{}", kit::free_port()))
        .arg("--state-dir")
        .arg(files.path().join("reused"))
        .args(node_args(
            files.path(),
            9,
            "worker",
            &format!("127.0.0.1:{}", kit::mesh_port()),
            Some((&ports[0], &t2)),
        ))
        .output()
        .unwrap();
    assert!(
        !reused.status.success(),
        "a reused join token must be refused"
    );
    let t3 = token(&n1);
    let mut n3 = start(&node_args(
        files.path(),
        3,
        "witness",
        &ports[2],
        Some((&ports[0], &t3)),
    ));

    let (mut watcher, changes) = kit::subscribe(
        &n1.api,
        &n1.token(),
        "subscription { nodeStatusChanged { kind subject payload } }",
    );
    let s = wait_until(
        Duration::from_secs(30),
        "three registered, alive voters",
        || {
            let s = status(&n1);
            let nodes = s["nodes"].as_array().unwrap();
            (nodes.len() == 3
                && nodes
                    .iter()
                    .all(|n| n["health"] == "alive" && n["consensus"] == "voter"))
            .then_some(s)
        },
    );
    assert!(s["leader"].as_u64().is_some(), "a leader: {s}");
    let roles = n3.json(&["mesh", "roles", "--json"]);
    let witness = roles
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 3)
        .unwrap();
    assert_eq!(witness["runsUnits"], false, "{roles}");
    assert_eq!(witness["votes"], true, "{roles}");

    // Applied to the witness, replicated, placed on the two workers only.
    let f = n3.config("units.nix", UNITS);
    n3.json(&["apply", "--json", f.to_str().unwrap()]);
    let placed = wait_until(Duration::from_secs(30), "every unit placed", || {
        let p = kit::placement(&status(&n1));
        (p.len() == 3).then_some(p)
    });
    assert!(
        placed.iter().all(|(_, node)| *node != 3),
        "a witness runs no units: {placed:?}"
    );
    assert!(
        placed.iter().any(|(_, n)| *n == 1) && placed.iter().any(|(_, n)| *n == 2),
        "least-loaded spreads: {placed:?}"
    );
    for (unit, node) in &placed {
        let d = if *node == 1 { &n1 } else { &n2 };
        // A node's agent starts a unit within a round of its placement.
        wait_until(
            Duration::from_secs(30),
            "the unit listed on its node",
            || {
                d.units()
                    .iter()
                    .any(|u| u["name"] == unit.as_str())
                    .then_some(())
            },
        );
        d.wait_ready(unit);
    }
    let owned = [
        n1.state().to_path_buf(),
        n2.state().to_path_buf(),
        n3.state().to_path_buf(),
    ];
    let dirs: Vec<&Path> = owned.iter().map(|p| p.as_path()).collect();
    for unit in ["a", "b", "c"] {
        assert_eq!(qemu_count(&dirs, unit), 1, "{unit} runs once");
    }
    // Asking a node about a unit it does not run names the node that does.
    let on2 = placed.iter().find(|(_, n)| *n == 2).unwrap().0.clone();
    let elsewhere = n1.cli(&["unit", "stop", &on2]);
    assert!(!elsewhere.status.success());
    assert!(
        kit::text(&elsewhere.stderr).contains("runs on node 2"),
        "{}",
        kit::text(&elsewhere.stderr)
    );

    // Worker 2 dies; node 1 and the witness keep quorum, and its units run on node 1
    // within the grace period + 10 s.
    let moved: Vec<String> = placed
        .iter()
        .filter(|(_, n)| *n == 2)
        .map(|(u, _)| u.clone())
        .collect();
    let killed = Instant::now();
    crash(&mut n2);
    wait_until(
        Duration::from_secs(GRACE_SECS + 10),
        "node 2's units running on node 1",
        || {
            let r = running(&n1);
            moved.iter().all(|u| r.contains(u)).then_some(())
        },
    );
    let failover = killed.elapsed();
    for u in &moved {
        n1.wait_ready(u);
    }
    let ready = killed.elapsed();
    eprintln!(
        "failover: node 2 killed → its units {moved:?} running on node 1 after {failover:?}, guests ready after {ready:?} (grace {GRACE_SECS} s)"
    );
    let s = status(&n3);
    let dead = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 2)
        .unwrap();
    assert_eq!(dead["health"], "dead", "{s}");
    assert!(!n1.events("mesh.failover").is_empty());
    wait_until(
        Duration::from_secs(10),
        "nodeStatusChanged: node 2 dead",
        || {
            changes
                .lock()
                .unwrap()
                .iter()
                .any(|c| {
                    let c = &c["data"]["nodeStatusChanged"];
                    c["kind"] == "mesh.node"
                        && c["payload"]["node"] == 2
                        && c["payload"]["status"] == "dead"
                })
                .then_some(())
        },
    );
    let _ = watcher.kill();

    // Node 2 comes back: it registers again and runs nothing (its units moved).
    n2.restart();
    wait_until(Duration::from_secs(30), "node 2 alive again", || {
        let s = status(&n1);
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == 2 && n["health"] == "alive")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        qemu_pids(n2.state()).is_empty(),
        "node 2 must not run its old units: {:?}",
        n2.units()
    );
    for unit in ["a", "b", "c"] {
        assert_eq!(qemu_count(&dirs, unit), 1, "{unit} runs once");
    }

    // Node 1 loses both peers: without quorum it stops its units after the fencing timeout.
    crash(&mut n2);
    crash(&mut n3);
    let cut = Instant::now();
    wait_until(
        Duration::from_secs(FENCE_SECS + 10),
        "node 1 fenced, its units stopped",
        || qemu_pids(n1.state()).is_empty().then_some(()),
    );
    eprintln!(
        "fencing: node 1 stopped its units {:?} after losing quorum",
        cut.elapsed()
    );
    assert!(
        cut.elapsed() >= Duration::from_secs(FENCE_SECS - 1),
        "not before the fencing timeout"
    );
    assert_eq!(status(&n1)["fenced"], true);

    // Quorum is back: every unit runs again, once.
    n2.restart();
    n3.restart();
    wait_until(Duration::from_secs(60), "every unit running again", || {
        let all: Vec<String> = [&n1, &n2].iter().flat_map(|d| running(d)).collect();
        (all.len() == 3).then_some(())
    });
    for unit in ["a", "b", "c"] {
        assert_eq!(qemu_count(&dirs, unit), 1, "{unit} runs once");
    }

    // The worker holding the units dies, the leader in most runs (openraft 0.9 cannot move
    // leadership on request): the others elect a leader if they must, and its units run
    // on the last worker.
    let leader = status(&n2)["leader"].as_u64();
    let (mut victim, survivor, id) = if running(&n1).is_empty() {
        (n2, n1, 2)
    } else {
        (n1, n2, 1)
    };
    let lost = running(&victim);
    assert!(!lost.is_empty());
    let killed = Instant::now();
    crash(&mut victim);
    wait_until(
        Duration::from_secs(GRACE_SECS + 10),
        "the dead node's units on the other worker",
        || {
            let r = running(&survivor);
            lost.iter().all(|u| r.contains(u)).then_some(())
        },
    );
    let role = if leader == Some(id) {
        "the leader"
    } else {
        "a follower"
    };
    eprintln!(
        "node {id} ({role}) killed → its units {lost:?} running on the other worker after {:?}",
        killed.elapsed()
    );
    wait_until(
        Duration::from_secs(10),
        "a leader among the survivors",
        || {
            let s = status(&n3);
            s["leader"].as_u64().is_some_and(|l| l != id).then_some(())
        },
    );
}
