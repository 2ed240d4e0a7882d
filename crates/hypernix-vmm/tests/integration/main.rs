//! Real QEMU guests, driven through the crate's public API. Needs qemu-system-x86_64,
//! a kernel in /boot with its modules, and busybox-static; a missing one fails the test.

mod kit;
mod migrate;
mod migrate_netcut;

use std::time::{Duration, Instant};

use hypernix_vmm::{
    Accel, Disk, DiskFormat, DiskSource, Nic, PortForward, ShutdownStep, Vm, VmError,
};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use kit::{Guard, wait_until};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn guest_lifecycle() {
    let mut spec = kit::spec("life").await;
    let guard = Guard::new().await;
    let disk = kit::raw_disk(&guard, 16 << 20);
    let (_nbd, nbd_socket) = kit::nbd_export(&guard, 8 << 20).await;
    let port = kit::free_port();
    spec.disks = vec![
        Disk {
            source: DiskSource::File {
                path: disk,
                format: DiskFormat::Raw,
            },
            read_only: false,
            serial: None,
        },
        Disk {
            source: DiskSource::Nbd {
                socket: nbd_socket,
                export: kit::NBD_EXPORT.into(),
            },
            read_only: true,
            serial: None,
        },
    ];
    spec.nics = vec![Nic {
        mac: None,
        forwards: vec![PortForward::tcp(port, 80)],
    }];
    spec.hardened = true;
    kit::require_qemu();
    let vm = Vm::spawn(&spec, guard.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let booted = kit::wait_ready(&guard, "life", 1, BOOT_TIMEOUT).await;
    eprintln!("guest ready after {booted:?}");

    let status = vm.status().await.unwrap();
    assert!(status.running && status.status == "running", "{status:?}");
    vm.pause().await.unwrap();
    assert_eq!(vm.status().await.unwrap().status, "paused");
    vm.resume().await.unwrap();
    assert_eq!(vm.status().await.unwrap().status, "running");

    assert_eq!(vm.balloon_info().await.unwrap().actual, 256 << 20);
    vm.balloon(192 << 20).await.unwrap();
    wait_until(
        "the balloon to reach 192 MiB",
        Duration::from_secs(20),
        || async { (vm.balloon_info().await.unwrap().actual == 192 << 20).then_some(()) },
    )
    .await;

    let stats = vm.blockstats().await.unwrap();
    for node in ["disk0", "disk1"] {
        let disk = stats
            .iter()
            .find(|s| s.node_name.as_deref() == Some(node))
            .unwrap_or_else(|| panic!("{node} not in blockstats: {stats:?}"));
        assert!(
            disk.stats.rd_operations > 0,
            "the guest read {node}: {disk:?}"
        );
    }

    let page = wait_until(
        "the guest's httpd through the port forward",
        Duration::from_secs(20),
        || async {
            http_get(port)
                .await
                .filter(|page| page.contains("hypernix test guest life"))
        },
    )
    .await;
    assert!(page.starts_with("HTTP/1."), "{page}");

    tokio::net::UnixStream::connect(vm.run_dir().console_socket())
        .await
        .expect("console socket");

    let plugged = vm.hotplug_vcpu().await.unwrap();
    assert!(plugged.starts_with("vcpu-"), "{plugged}");
    assert_eq!(vm.vcpus().await.unwrap().len(), 2);
    let err = vm.set_vcpus(3).await.unwrap_err();
    assert!(err.to_string().contains("raise max_vcpus"), "{err}");

    // A daemon restart: a fresh handle finds the same QEMU.
    let pid = vm.pid();
    drop(vm);
    let vm = Vm::attach(guard.path(), "life").await.unwrap();
    assert_eq!(vm.pid(), pid);
    assert!(vm.status().await.unwrap().running);

    vm.set_vcpus(2).await.unwrap();
    let err = vm.set_vcpus(1).await.unwrap_err();
    assert!(err.to_string().contains("restart it with fewer"), "{err}");

    vm.reset().await.unwrap();
    let rebooted = kit::wait_ready(&guard, "life", 2, BOOT_TIMEOUT).await;
    eprintln!("guest ready again {rebooted:?} after reset");

    let start = Instant::now();
    let (step, exit) = vm.shutdown(Duration::from_secs(30)).await.unwrap();
    assert_eq!(step, ShutdownStep::Powerdown, "{exit}");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(exit.guest_shutdown(), "{exit}");
    assert!(guard.console().contains("power button pressed"));
    eprintln!("powered off in {:?}", start.elapsed());
}

#[tokio::test]
async fn kill_is_noticed_within_a_second() {
    let spec = kit::spec("victim").await;
    let (guard, vm) = kit::spawn(&spec).await;
    assert!(vm.exit().is_none());

    let again = Vm::spawn(&spec, guard.path()).await.unwrap_err();
    assert!(
        matches!(again, VmError::AlreadyRunning { pid, .. } if pid == vm.pid()),
        "{again}"
    );

    let pid = Pid::from_raw(vm.pid() as i32).unwrap();
    kill_process(pid, Signal::KILL).unwrap();
    let killed = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(1), vm.wait_exit())
        .await
        .expect("noticed within 1 s");
    eprintln!("exit noticed after {:?}: {exit}", killed.elapsed());
    assert_eq!(exit.signal, Some(9), "{exit}");
    assert!(vm.status().await.is_err());
}

#[tokio::test]
async fn invalid_option_is_a_spawn_error_with_stderr() {
    let mut spec = kit::spec("invalid").await;
    spec.extra_args = vec!["-definitely-not-an-option".into()];
    kit::require_qemu();
    let guard = Guard::new().await;
    let err = Vm::spawn(&spec, guard.path()).await.unwrap_err();
    assert!(matches!(err, VmError::SpawnFailed { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("-definitely-not-an-option: invalid option"),
        "{message}"
    );
}

#[tokio::test]
async fn quit_ends_a_vm_that_ignores_acpi() {
    // A paused guest cannot react to the power button, so shutdown falls back to quit.
    let spec = kit::spec("paused").await;
    let (_guard, vm) = kit::spawn(&spec).await;
    vm.pause().await.unwrap();
    let (step, exit) = vm.shutdown(Duration::from_millis(500)).await.unwrap();
    assert_eq!(step, ShutdownStep::Quit, "{exit}");
    assert_eq!(exit.code, Some(0), "{exit}");
    assert_eq!(
        exit.shutdown_reason.as_deref(),
        Some("host-qmp-quit"),
        "{exit}"
    );
}

#[tokio::test]
async fn attach_without_a_vm_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Vm::attach(dir.path(), "ghost").await.unwrap_err();
    assert!(matches!(err, VmError::NotRunning { .. }), "{err}");
    std::fs::write(
        dir.path().join("qemu.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let err = Vm::attach(dir.path(), "ghost").await.unwrap_err();
    assert!(
        err.to_string().contains("is not a live QEMU of this VM"),
        "{err}"
    );
}

#[tokio::test]
async fn accelerator_probe_gives_a_reason() {
    kit::require_qemu();
    let probe = hypernix_vmm::accel::probe().await;
    assert!(!probe.reason.is_empty());
    if !std::path::Path::new("/dev/kvm").exists() {
        assert_eq!(probe.accel, Accel::Tcg, "{}", probe.reason);
    }
    assert_eq!(
        hypernix_vmm::accel::probe().await,
        probe,
        "the verdict is cached"
    );
}

/// `GET /` on the host port, or `None` while nothing answers properly.
async fn http_get(port: u16) -> Option<String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n")
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        Some(response)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}
