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

/// A repository holding one image snapshot of `data`.
fn image_snapshot(
    dir: &Path,
    data: Vec<u8>,
) -> (
    std::sync::Arc<hypernix_backup::Repository>,
    hypernix_backup::Snapshot,
) {
    struct Memory(Vec<u8>);
    impl hypernix_backup::BlockSource for Memory {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            buf.copy_from_slice(&self.0[offset as usize..offset as usize + buf.len()]);
            Ok(())
        }
    }
    let repo = crate::init(dir);
    let size = data.len() as u64;
    let options = hypernix_backup::ImageOptions {
        source: "img".into(),
        path: "img".into(),
        parent: None,
        changed: vec![(0, size)],
        bitmap: None,
    };
    let snap =
        hypernix_backup::backup_image(&repo, &options, &mut Memory(data), &mut |_| {}).unwrap();
    (std::sync::Arc::new(repo), snap)
}

#[test]
fn the_snapshot_server_survives_garbage_and_bad_reads() {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};

    let dir = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 3 * MIB as usize];
    for (i, b) in data[MIB as usize..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let (repo, snap) = image_snapshot(dir.path(), data.clone());
    let reader = hypernix_backup::ImageReader::new(repo, &snap).unwrap();
    let socket = dir.path().join("serve.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || hypernix_backup::serve(&listener, &reader, "img"));

    // Garbage instead of options: that connection is closed, nothing else happens.
    let mut bad = UnixStream::connect(&socket).unwrap();
    let mut greeting = [0u8; 18];
    bad.read_exact(&mut greeting).unwrap();
    bad.write_all(&[0xff; 64]).unwrap();
    let mut rest = Vec::new();
    bad.read_to_end(&mut rest).unwrap();
    // An option claiming 4 GiB of data is refused the same way.
    let mut huge = UnixStream::connect(&socket).unwrap();
    huge.read_exact(&mut greeting).unwrap();
    let mut msg = 3u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
    msg.extend_from_slice(&7u32.to_be_bytes());
    msg.extend_from_slice(&u32::MAX.to_be_bytes());
    huge.write_all(&msg).unwrap();
    huge.read_to_end(&mut rest).unwrap();

    // A read past the end fails alone; the connection goes on.
    let mut client = NbdClient::connect(&socket, "img", None).unwrap();
    assert_eq!(client.size(), 3 * MIB);
    let mut buf = vec![0u8; 8192];
    assert!(client.read(3 * MIB - 4096, &mut buf).is_err());
    client.read(MIB - 4096, &mut buf).unwrap();
    assert_eq!(buf, data[MIB as usize - 4096..MIB as usize + 4096]);
    let err = NbdClient::connect(&socket, "other", None).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn the_client_refuses_a_server_that_is_not_nbd() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("junk.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let _ = stream.and_then(|mut s| s.write_all(b"HTTP/1.1 200 OK\r\n\r\nhello"));
        }
    });
    let err = NbdClient::connect(&socket, "disk", None).unwrap_err();
    assert!(
        err.to_string().contains("not a fixed-newstyle NBD server"),
        "{err}"
    );
}
