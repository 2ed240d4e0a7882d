//! The NBD client against a real server (qemu-nbd): reads, allocation and a qcow2's
//! persistent dirty bitmap exported as `qemu:dirty-bitmap:NAME`.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use hypernix_backup::nbd::{BASE_ALLOCATION, NbdClient, dirty_bitmap_context};

const MIB: u64 = 1 << 20;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("qemu-utils are installed");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves `image` read-only with bitmap `b0` as export `disk`, until dropped.
struct QemuNbd(Child);

impl QemuNbd {
    fn start(image: &Path, socket: &Path) -> QemuNbd {
        let child = Command::new("qemu-nbd")
            .args(["-f", "qcow2", "-r", "-t", "-x", "disk", "-B", "b0", "-k"])
            .arg(socket)
            .arg(image)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "qemu-nbd did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        QemuNbd(child)
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn reads_allocation_and_dirty_bitmap_from_qemu_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M"));
    run(Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x11 0 64k"])
        .arg(&image));
    run(Command::new("qemu-img")
        .args(["bitmap", "--add"])
        .arg(&image)
        .arg("b0"));
    run(Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x5a 1M 64k",
            "-c",
            "write -P 0x33 8M 1M",
        ])
        .arg(&image));
    run(Command::new("qemu-img")
        .args(["bitmap", "--disable"])
        .arg(&image)
        .arg("b0"));
    let socket = dir.path().join("nbd.sock");
    let _server = QemuNbd::start(&image, &socket);

    let mut dirty = NbdClient::connect(&socket, "disk", Some(&dirty_bitmap_context("b0"))).unwrap();
    assert_eq!(dirty.size(), 16 * MIB);
    assert_eq!(
        dirty.ranges_with(1).unwrap(),
        vec![(MIB, MIB + (64 << 10)), (8 * MIB, 9 * MIB)],
        "only the writes after the bitmap was added"
    );
    drop(dirty);

    let mut alloc = NbdClient::connect(&socket, "disk", Some(BASE_ALLOCATION)).unwrap();
    assert_eq!(
        alloc.allocated().unwrap(),
        vec![(0, 64 << 10), (MIB, MIB + (64 << 10)), (8 * MIB, 9 * MIB)]
    );
    // Structured reads, across data and a hole.
    let mut buf = vec![0xffu8; 128 << 10];
    alloc.read(MIB, &mut buf).unwrap();
    assert!(buf[..64 << 10].iter().all(|&b| b == 0x5a));
    assert!(buf[64 << 10..].iter().all(|&b| b == 0));
    drop(alloc);

    // Simple replies when no context is asked for.
    let mut plain = NbdClient::connect(&socket, "disk", None).unwrap();
    let mut buf = vec![0u8; 2 * MIB as usize];
    plain.read(8 * MIB - MIB / 2, &mut buf).unwrap();
    assert!(buf[..MIB as usize / 2].iter().all(|&b| b == 0));
    assert!(
        buf[MIB as usize / 2..3 * MIB as usize / 2]
            .iter()
            .all(|&b| b == 0x33)
    );
    // qemu-nbd serves one client at a time.
    drop(plain);

    let err = NbdClient::connect(&socket, "disk", Some("qemu:dirty-bitmap:nope")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = NbdClient::connect(&dir.path().join("absent.sock"), "disk", None).unwrap_err();
    assert!(
        err.to_string().contains("is the NBD server running"),
        "{err}"
    );
}
