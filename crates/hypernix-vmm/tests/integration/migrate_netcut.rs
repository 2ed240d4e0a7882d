//! Live migration over a network cut mid-way (issue 9): the destination QEMU runs in a
//! network namespace of its own, reached from the test's over a veth pair, so that both the
//! NBD mirror and the memory stream cross it; then nftables drops every packet on the
//! destination's side. Packets vanish, no connection is reset: the migration must notice
//! it stalled, fail in bounded time, and leave the source running, counting, its disk
//! unharmed. Needs root (CAP_NET_ADMIN), `ip` and `nft`; a missing one fails the test.

use std::time::{Duration, Instant};

use hypernix_vmm::Vm;
use hypernix_vmm::migrate::{self, Endpoint, Incoming, MigrateError, Options};
use serde_json::Value;

use crate::kit::{self, Guard, wait_until};
use crate::migrate::{DISK, counting_source, last_count, region, with_disk};

/// The destination's ports, in its own namespace.
const NBD_PORT: u16 = 10809;
const MIGRATION_PORT: u16 = 4444;

/// Runs `program args`, returning its standard output, or what failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}; install it (scripts/install-deps.sh)"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn must(program: &str, args: &[&str]) -> String {
    run(program, args).unwrap_or_else(|e| panic!("{e}"))
}

fn check_prerequisites() {
    kit::require_qemu();
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2)?.parse::<u32>().ok()
        })
        == Some(0);
    assert!(
        root,
        "migrate_netcut needs root (CAP_NET_ADMIN) to build network namespaces: run the \
         tests as root, e.g. `sudo -E cargo test -p hypernix-vmm --test integration migrate`"
    );
    for (program, arg) in [("ip", "-V"), ("nft", "--version")] {
        if let Err(e) = run(program, &[arg]) {
            panic!("the network-cut migration test needs {program}: {e}");
        }
    }
}

/// A /24 of 10.0.0.0/8 that nothing on this host uses yet, as its first three octets.
fn free_subnet() -> String {
    let used = must("ip", &["-4", "-o", "addr", "show"]) + &must("ip", &["-4", "route", "show"]);
    let pid = std::process::id();
    (0..1000)
        .map(|k| {
            let n = pid.wrapping_add(k);
            format!("10.{}.{}", 150 + (n / 256) % 50, n % 256)
        })
        .find(|subnet| !used.contains(&format!("{subnet}.")))
        .expect("a free 10.x.y.0/24 for the test network")
}

/// The destination's namespace and the veth pair to it (`.1` here, `.2` there); removed on
/// drop, even after a panic, with whatever still runs in it.
struct Net {
    ns: String,
    link: String,
    subnet: String,
}

impl Net {
    fn build() -> Net {
        let prefix = format!("hnx{}", std::process::id());
        let net = Net {
            ns: format!("{prefix}mig"),
            link: format!("{prefix}m"),
            subnet: free_subnet(),
        };
        // Left over by an earlier run that was killed with the same pid.
        net.remove();
        let (ns, link) = (net.ns.as_str(), net.link.as_str());
        must("ip", &["netns", "add", ns]);
        must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        must(
            "ip",
            &[
                "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        );
        must(
            "ip",
            &["addr", "add", &format!("{}.1/24", net.subnet), "dev", link],
        );
        must("ip", &["link", "set", link, "up"]);
        let there = format!("{}.2/24", net.subnet);
        must("ip", &["-n", ns, "addr", "add", &there, "dev", "eth0"]);
        must("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        net
    }

    /// The destination's address.
    fn host(&self) -> String {
        format!("{}.2", self.subnet)
    }

    /// What runs QEMU in the namespace.
    fn launcher(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.ns].map(String::from).to_vec()
    }

    /// Drops every packet the destination sends or receives on its link: a cut where
    /// packets vanish, not a reset.
    fn cut(&self) {
        let rules = "table inet hnxcut {\n\
             \tchain input { type filter hook input priority 0; policy accept; iifname \"eth0\" drop; }\n\
             \tchain output { type filter hook output priority 0; policy accept; oifname \"eth0\" drop; }\n\
             }\n";
        let file = std::env::temp_dir().join(format!("{}-cut.nft", self.ns));
        std::fs::write(&file, rules).unwrap();
        let file_arg = file.display().to_string();
        let result = run("ip", &["netns", "exec", &self.ns, "nft", "-f", &file_arg]);
        let _ = std::fs::remove_file(&file);
        result.unwrap_or_else(|e| panic!("{e}"));
    }

    fn remove(&self) {
        // Processes left in the namespace: only this test starts any there.
        if let Ok(pids) = run("ip", &["netns", "pids", &self.ns]) {
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
        let _ = run("ip", &["netns", "del", &self.ns]);
        // Deleting the namespace removed the link's peer, and so the link; in case not:
        let _ = run("ip", &["link", "del", &self.link]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The bytes the source has sent of its memory, from `query-migrate`.
async fn ram_sent(vm: &Vm) -> u64 {
    let info: Value = vm
        .qmp()
        .call("query-migrate", None)
        .await
        .unwrap_or_default();
    info["ram"]["transferred"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_over_a_network_cut_mid_way_fails_in_bounded_time_and_the_source_runs_on() {
    check_prerequisites();
    let net = Net::build();
    let _pair = kit::TWO_QEMUS.lock().await;
    let (src_guard, src) = counting_source("netcut").await;
    let src_disk = src_guard.path().join("disk.raw");
    let filled = region(&src_disk);

    let dst_guard = Guard::new().await;
    let disk = kit::raw_disk(&dst_guard, DISK);
    let spec = with_disk(kit::spec("netcut").await, &disk, true);
    let dst = Vm::spawn_via(&spec, dst_guard.path(), &net.launcher())
        .await
        .expect("the destination starts in its namespace");
    let at = |port| Endpoint::Tcp {
        host: net.host(),
        port,
    };
    let incoming = Incoming {
        nbd: at(NBD_PORT),
        migration: at(MIGRATION_PORT),
    };
    let disks = vec!["disk0".to_string()];
    // A tiny downtime limit keeps the memory migration from converging before the cut.
    let options = Options {
        downtime_limit: Duration::from_millis(1),
        auto_converge: false,
        stall_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(300),
        ..Options::default()
    };
    migrate::prepare_incoming(&dst, &disks, &incoming, &options)
        .await
        .expect("destination prepared");

    // Memory moves only once the mirror is in step: both streams cross the namespace when
    // the cut comes.
    let cutter = async {
        wait_until(
            "the memory stream flowing",
            Duration::from_secs(120),
            || async { (ram_sent(&src).await > 4 << 20).then_some(()) },
        )
        .await;
        net.cut();
        Instant::now()
    };
    let migrating = async {
        let result = migrate::migrate(&src, &disks, &incoming, &options, |s| {
            eprintln!("step: {s}")
        })
        .await;
        (result, Instant::now())
    };
    let ((result, failed_at), cut_at) = tokio::join!(migrating, cutter);
    let failed_after = failed_at.saturating_duration_since(cut_at);
    let err = result.expect_err("the network was cut");
    eprintln!("migration failed {failed_after:?} after the cut: {err}");
    assert!(matches!(err, MigrateError::Stalled { .. }), "{err:?}");
    assert!(
        failed_after < Duration::from_secs(60),
        "the migration took {failed_after:?} to give up"
    );

    // The source runs on, still counting, on its console and on its disk.
    let status = src.status().await.unwrap();
    assert!(status.running, "{status:?}");
    let before = last_count(&src_guard.console());
    wait_until(
        "the source counting on",
        Duration::from_secs(30),
        || async { (last_count(&src_guard.console()) >= before + 3).then_some(()) },
    )
    .await;
    let sector = std::fs::read(&src_disk).unwrap();
    let on_disk: u64 = String::from_utf8_lossy(&sector[..512])
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .parse()
        .unwrap_or(0);
    assert!(
        on_disk >= before,
        "the disk's counter {on_disk} is behind the console's {before}"
    );
    assert_eq!(region(&src_disk), filled, "the source's data changed");
    let console = src_guard.console();
    assert!(!console.contains("I/O error"), "{console}");
    // The rollback removed the mirror's NBD node.
    let nodes: Value = src
        .qmp()
        .call("query-named-block-nodes", None)
        .await
        .unwrap();
    assert!(
        !nodes.to_string().contains("migrate-disk0"),
        "the mirror target is left: {nodes}"
    );
    assert!(src.status().await.unwrap().running);
    src.kill().await.unwrap();
    drop(dst);
}
