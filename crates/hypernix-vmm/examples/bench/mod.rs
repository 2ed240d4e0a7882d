//! What the migration benchmarks share: the test guest on one raw disk, and its readiness.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hypernix_vmm::{Disk, DiskFormat, DiskSource, VmSpec};

/// The test guest named `bench` with `memory` bytes and the raw disk `disk`, waiting for a
/// migration (`-incoming defer -S`) if `incoming`.
pub async fn spec(memory: u64, disk: &Path, incoming: bool) -> VmSpec {
    let cache = Path::new("/var/tmp/hypernix-images/test-guest");
    let guest = hypernix_vmm::ensure_test_guest(cache).expect("the test guest builds");
    VmSpec {
        name: "bench".into(),
        uuid: None,
        vcpus: 1,
        max_vcpus: 1,
        memory_bytes: memory,
        balloon: false,
        boot: guest.boot("bench").expect("a valid name"),
        disks: vec![Disk {
            source: DiskSource::File {
                path: disk.to_path_buf(),
                format: DiskFormat::Raw,
            },
            read_only: false,
            serial: None,
        }],
        cdroms: vec![],
        nics: vec![],
        accel: hypernix_vmm::accel::probe().await.accel,
        hardened: false,
        extra_args: if incoming {
            vec!["-incoming".into(), "defer".into(), "-S".into()]
        } else {
            vec![]
        },
    }
}

/// A sparse raw disk of `size` bytes, `disk.raw` in `dir`.
pub fn empty_disk(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join("disk.raw");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(size))
        .expect("disk");
    path
}

/// Waits until the guest whose run directory is `dir` has booted.
pub async fn ready(dir: &Path) {
    for _ in 0..1200 {
        let log = std::fs::read_to_string(dir.join("console.log")).unwrap_or_default();
        if log.contains("HYPERNIX-READY") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the guest did not boot");
}
