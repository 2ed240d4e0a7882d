//! Test kit for real QEMU guests: the test guest, temporary run directories, a cap on
//! concurrent QEMUs, `wait_until`, and guards that kill QEMU when a test ends.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hypernix_vmm::guest::READY_MARKER;
use hypernix_vmm::{Accel, TestGuest, Vm, VmSpec};
use rustix::process::{Pid, Signal, kill_process};
use tokio::sync::{Semaphore, SemaphorePermit};

/// At most this many QEMUs run at once: the machine has two cores.
static QEMU_SLOTS: Semaphore = Semaphore::const_new(2);

/// Held by a test that runs two QEMUs at once (a migration), from before its first
/// [`Guard`]: two such tests holding one slot each would wait for each other forever.
pub static TWO_QEMUS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails the test (never skips it) when QEMU is not installed.
pub fn require_qemu() {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| dir.join(hypernix_vmm::command::QEMU_BINARY).is_file())
    });
    assert!(
        found,
        "qemu-system-x86_64 is not on PATH; install qemu-system-x86"
    );
}

/// The test guest, built once into the target directory.
pub fn test_guest() -> TestGuest {
    static GUEST: OnceLock<Result<TestGuest, String>> = OnceLock::new();
    GUEST
        .get_or_init(|| {
            let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-guest");
            hypernix_vmm::ensure_test_guest(&cache).map_err(|e| e.to_string())
        })
        .clone()
        .unwrap_or_else(|e| panic!("cannot build the test guest: {e}"))
}

/// The accelerator the host really runs guests with.
pub async fn accel() -> Accel {
    let probe = hypernix_vmm::accel::probe().await;
    eprintln!("accelerator: {:?} ({})", probe.accel, probe.reason);
    probe.accel
}

/// A small test guest VM named `name`, booting the test guest.
pub async fn spec(name: &str) -> VmSpec {
    VmSpec {
        name: name.into(),
        uuid: None,
        vcpus: 1,
        max_vcpus: 2,
        memory_bytes: 256 << 20,
        balloon: true,
        boot: test_guest()
            .boot(name)
            .expect("test names are valid hostnames"),
        disks: vec![],
        cdroms: vec![],
        nics: vec![],
        accel: accel().await,
        hardened: false,
        extra_args: vec![],
    }
}

/// A run directory that kills the QEMU it ran, if still alive, when dropped.
pub struct Guard {
    dir: tempfile::TempDir,
    _slot: SemaphorePermit<'static>,
}

impl Guard {
    /// Takes a QEMU slot and a fresh run directory.
    pub async fn new() -> Guard {
        let slot = QEMU_SLOTS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let dir = tempfile::Builder::new()
            .prefix("hnx-vmm")
            .tempdir()
            .expect("temp dir");
        Guard { dir, _slot: slot }
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The console log so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid_file = self.dir.path().join("qemu.pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        else {
            return;
        };
        // Only kill the pid if it still is the QEMU of this run directory.
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&*pid_file.to_string_lossy()))
            .unwrap_or(false);
        if let (true, Some(pid)) = (ours, Pid::from_raw(pid)) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
}

/// Starts `spec` in a fresh run directory.
pub async fn spawn(spec: &VmSpec) -> (Guard, Vm) {
    require_qemu();
    let guard = Guard::new().await;
    let vm = Vm::spawn(spec, guard.path())
        .await
        .unwrap_or_else(|e| panic!("spawning {}: {e}", spec.name));
    (guard, vm)
}

/// Polls `check` every 100 ms until it gives a value; panics after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the `count`-th readiness line of guest `name`; returns how long it took.
pub async fn wait_ready(guard: &Guard, name: &str, count: usize, timeout: Duration) -> Duration {
    let start = Instant::now();
    let line = format!("{READY_MARKER} {name}");
    wait_until(
        &format!("{line:?} #{count} in console.log"),
        timeout,
        || async { (guard.console().matches(&line).count() >= count).then_some(()) },
    )
    .await;
    start.elapsed()
}

/// A raw disk image of `bytes` in the guard's directory.
pub fn raw_disk(guard: &Guard, bytes: u64) -> PathBuf {
    let path = guard.path().join("disk.raw");
    let file = std::fs::File::create(&path).expect("create disk");
    file.set_len(bytes).expect("size disk");
    path
}

/// The export name [`nbd_export`] serves.
pub const NBD_EXPORT: &str = "hypernix";

/// `qemu-nbd` serving a fresh raw image of `bytes` on a socket in the guard's
/// directory; killed when the returned child drops.
pub async fn nbd_export(guard: &Guard, bytes: u64) -> (tokio::process::Child, PathBuf) {
    let image = guard.path().join("nbd.raw");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(bytes))
        .expect("nbd image");
    let socket = guard.path().join("nbd.sock");
    let child = tokio::process::Command::new("qemu-nbd")
        .args([
            "--persistent",
            "--format=raw",
            "--export-name",
            NBD_EXPORT,
            "--socket",
        ])
        .arg(&socket)
        .arg(&image)
        .kill_on_drop(true)
        .spawn()
        .expect("qemu-nbd is not installed; install qemu-utils");
    wait_until("qemu-nbd's socket", Duration::from_secs(10), || async {
        socket.exists().then_some(())
    })
    .await;
    (child, socket)
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}
