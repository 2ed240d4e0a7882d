//! Live migration between two QEMU processes: the guest keeps counting on the destination,
//! its disk arrives intact, and a destination that dies mid-way leaves the source running.

use std::path::Path;
use std::time::Duration;

use hypernix_vmm::migrate::{self, Endpoint, Incoming, Options};
use hypernix_vmm::{Disk, DiskFormat, DiskSource, Vm, VmSpec};
use tokio::io::AsyncWriteExt;

use crate::kit::{self, Guard, wait_until};

pub(crate) const DISK: u64 = 32 << 20;
/// The guest writes 8 MiB of random data at 1 MiB, then a counter to its console and to
/// the disk's first sector five times a second.
const COUNTER: &str = "dd if=/dev/urandom of=/dev/vda bs=1M count=8 seek=1 conv=fsync 2>/dev/null; \
    echo FILLED; i=0; while true; do i=$((i+1)); echo COUNT $i; \
    echo $i | dd of=/dev/vda bs=512 count=1 conv=sync,fsync 2>/dev/null; sleep 0.2; done\n";

pub(crate) fn with_disk(mut spec: VmSpec, path: &Path, incoming: bool) -> VmSpec {
    spec.disks = vec![Disk {
        source: DiskSource::File {
            path: path.to_path_buf(),
            format: DiskFormat::Raw,
        },
        read_only: false,
        serial: None,
    }];
    if incoming {
        spec.extra_args = vec!["-incoming".into(), "defer".into(), "-S".into()];
    }
    spec
}

pub(crate) fn last_count(console: &str) -> u64 {
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COUNT ")?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

pub(crate) async fn counting_source(name: &str) -> (Guard, Vm) {
    let guard = Guard::new().await;
    let disk = kit::raw_disk(&guard, DISK);
    let spec = with_disk(kit::spec(name).await, &disk, false);
    let vm = Vm::spawn(&spec, guard.path()).await.expect("source starts");
    kit::wait_ready(&guard, name, 1, Duration::from_secs(120)).await;
    let (mut echo, mut console) = tokio::net::UnixStream::connect(vm.run_dir().console_socket())
        .await
        .expect("console socket")
        .into_split();
    // What the guest prints comes here too: left unread, it fills the socket (a buffer
    // per byte the serial port sends) and QEMU stops the guest's console, log included.
    let drain = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut echo, &mut tokio::io::sink()).await;
    });
    // The shell may not read the first line: send the loop until the guest counts.
    for _ in 0..3 {
        console.write_all(b"\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        console.write_all(COUNTER.as_bytes()).await.unwrap();
        let counting = tokio::time::timeout(Duration::from_secs(40), async {
            while last_count(&guard.console()) < 3 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        if counting.await.is_ok() {
            drain.abort();
            return (guard, vm);
        }
    }
    panic!("the guest never counted:\n{}", guard.console());
}

async fn destination(name: &str) -> (Guard, Vm, Incoming) {
    let guard = Guard::new().await;
    let disk = kit::raw_disk(&guard, DISK);
    let spec = with_disk(kit::spec(name).await, &disk, true);
    let vm = Vm::spawn(&spec, guard.path())
        .await
        .expect("destination starts");
    let incoming = Incoming {
        nbd: Endpoint::Unix(guard.path().join("nbd.sock")),
        migration: Endpoint::Unix(guard.path().join("migrate.sock")),
    };
    (guard, vm, incoming)
}

pub(crate) fn region(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes[1 << 20..9 << 20].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_migrated_guest_keeps_counting_its_disk_arrives_and_a_failed_one_changes_nothing() {
    let _pair = kit::TWO_QEMUS.lock().await;
    let (src_guard, src) = counting_source("mover").await;
    let (dst_guard, dst, incoming) = destination("mover").await;
    let disks = vec!["disk0".to_string()];
    let options = Options::default();
    migrate::prepare_incoming(&dst, &disks, &incoming, &options)
        .await
        .expect("destination prepared");
    let mut steps = Vec::new();
    let report = migrate::migrate(&src, &disks, &incoming, &options, |s| {
        steps.push(s.to_string())
    })
    .await
    .expect("migration completes");
    migrate::finish_incoming(&dst)
        .await
        .expect("destination resumes");
    eprintln!("live migration: {report:?}, steps {steps:?}");
    assert!(
        !src.status().await.unwrap().running,
        "the source is paused after switch-over"
    );
    let counted = last_count(&src_guard.console());
    assert!(src_guard.console().contains("FILLED"));

    // The guest goes on counting on the destination, without a reboot.
    wait_until(
        "the destination counting on",
        Duration::from_secs(60),
        || async { (last_count(&dst_guard.console()) >= counted + 5).then_some(()) },
    )
    .await;
    assert!(
        !dst_guard.console().contains("HYPERNIX-READY"),
        "no reboot on the destination"
    );
    assert!(dst.status().await.unwrap().running);
    src.kill().await.unwrap();

    // The disk arrived: the random region matches the source's, byte for byte, and the
    // counter sector holds a later count than the source's last.
    assert_eq!(
        region(&src_guard.path().join("disk.raw")),
        region(&dst_guard.path().join("disk.raw"))
    );
    assert!(report.disk_bytes >= 9 << 20, "{report:?}");
    assert!(report.ram_bytes > 0);
    dst.kill().await.unwrap();
    drop((src_guard, dst_guard));
    a_destination_killed_mid_migration_leaves_the_source_running().await;
}

/// Run after the first, so that at most two QEMUs run (the kit's slots).
async fn a_destination_killed_mid_migration_leaves_the_source_running() {
    let (src_guard, src) = counting_source("stayer").await;
    let (_dst_guard, dst, incoming) = destination("stayer").await;
    let disks = vec!["disk0".to_string()];
    // A tiny downtime limit keeps the memory migration from converging quickly.
    let options = Options {
        downtime_limit: Duration::from_millis(1),
        auto_converge: false,
        ..Options::default()
    };
    migrate::prepare_incoming(&dst, &disks, &incoming, &options)
        .await
        .unwrap();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        dst.kill().await.unwrap();
    };
    let (result, ()) = tokio::join!(
        migrate::migrate(&src, &disks, &incoming, &options, |_| {}),
        killer
    );
    let err = result.expect_err("the destination died");
    eprintln!("migration failed as it should: {err}");
    // The source runs on, still counting.
    let before = last_count(&src_guard.console());
    wait_until(
        "the source counting on",
        Duration::from_secs(30),
        || async { (last_count(&src_guard.console()) >= before + 3).then_some(()) },
    )
    .await;
    let status = src.status().await.unwrap();
    assert!(status.running, "{status:?}");
    src.kill().await.unwrap();
}
