//! The incremental migration proxy between real NBD peers: qemu-nbd holds the far copy,
//! qemu-img and qemu-io write through the proxy.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hypernix_storage::nbd::client::{Address, NbdClient};
use hypernix_storage::nbd::delta::{self, BLOCK, DeltaExport, DeltaProxy, DeltaStats};

use crate::kit::run;

const SIZE: usize = 16 << 20;
const B: usize = BLOCK as usize;

/// qemu-nbd serving a raw file as export `disk0`, killed on drop.
struct QemuNbd(Child, PathBuf);

impl QemuNbd {
    fn serve(file: &Path) -> QemuNbd {
        let socket = file.with_extension("sock");
        let child = Command::new("qemu-nbd")
            .args(["-f", "raw", "-x", "disk0", "--persistent", "-k"])
            .arg(&socket)
            .arg(file)
            .spawn()
            .expect("qemu-nbd (apt-get install qemu-utils)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "qemu-nbd did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        QemuNbd(child, socket)
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A proxy for export `disk0` in front of `far`, knowing its digest if `known`.
struct Proxy {
    socket: PathBuf,
    stats: Arc<DeltaStats>,
    runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(dir: &Path, far: &QemuNbd, known: bool) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let socket = dir.join("proxy.sock");
        let far = Address::Unix(far.1.clone());
        let proxy = runtime.block_on(async {
            let digest = if known {
                let mut c = NbdClient::connect(&far, "disk0").await.unwrap();
                let d = delta::digest(&mut c, |_| {}).await.unwrap();
                c.disconnect().await.unwrap();
                d
            } else {
                Vec::new()
            };
            let export = DeltaExport {
                far,
                far_export: "disk0".into(),
                digest,
            };
            let proxy = DeltaProxy::new([("disk0".to_string(), export)]);
            proxy.listen(&socket).unwrap();
            proxy
        });
        let stats = proxy.stats();
        Proxy {
            socket,
            stats,
            runtime,
        }
    }

    fn uri(&self) -> String {
        format!("nbd+unix:///disk0?socket={}", self.socket.display())
    }

    fn counts(&self) -> (u64, u64, u64) {
        let s = &self.stats;
        (
            s.sent.load(Ordering::Relaxed),
            s.zeroed.load(Ordering::Relaxed),
            s.skipped.load(Ordering::Relaxed),
        )
    }
}

/// An old copy without zero blocks, and the source: the old copy with two blocks changed
/// and one made zero.
fn images(dir: &Path) -> (PathBuf, PathBuf) {
    let old: Vec<u8> = (0..SIZE).map(|i| (i / 512 % 250) as u8 + 1).collect();
    let mut new = old.clone();
    new[3 * B..4 * B].fill(0xa5);
    new[100 * B..101 * B].iter_mut().for_each(|b| *b ^= 0xff);
    new[200 * B..201 * B].fill(0);
    let (far, src) = (dir.join("far.raw"), dir.join("src.raw"));
    std::fs::write(&far, &old).unwrap();
    std::fs::write(&src, &new).unwrap();
    (far, src)
}

fn copy(src: &Path, proxy: &Proxy) {
    let src = src.to_str().unwrap();
    run(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", src, &proxy.uri()],
    );
}

#[test]
fn a_full_copy_through_the_proxy_sends_only_the_changed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (far, src) = images(dir.path());
    let nbd = QemuNbd::serve(&far);
    let proxy = Proxy::start(dir.path(), &nbd, true);
    copy(&src, &proxy);
    assert_eq!(std::fs::read(&far).unwrap(), std::fs::read(&src).unwrap());
    let (sent, zeroed, skipped) = proxy.counts();
    assert_eq!((sent, zeroed), (2 * BLOCK, BLOCK), "skipped {skipped}");
    assert_eq!(skipped, SIZE as u64 - 3 * BLOCK);
    // A second pass finds nothing new.
    copy(&src, &proxy);
    assert_eq!(proxy.counts().0, 2 * BLOCK);
    drop(proxy.runtime);
}

#[test]
fn without_a_digest_everything_is_sent_and_partial_writes_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let (far, src) = images(dir.path());
    let nbd = QemuNbd::serve(&far);
    let proxy = Proxy::start(dir.path(), &nbd, false);
    copy(&src, &proxy);
    let (sent, zeroed, skipped) = proxy.counts();
    assert_eq!(
        (sent + zeroed, skipped),
        (SIZE as u64, 0),
        "{sent} {zeroed}"
    );
    // Parts of blocks and reads go through unchanged.
    let out = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &proxy.uri(),
            "-c",
            "write -P 0x42 100k 3k",
            "-c",
            "flush",
            "-c",
            "read -P 0x42 100k 3k",
            "-c",
            "write -z 1m 4k",
            "-c",
            "read -P 0 1m 4k",
        ],
    );
    assert!(!out.contains("fail"), "{out}");
    let far = std::fs::read(&far).unwrap();
    assert!(far[100 << 10..103 << 10].iter().all(|b| *b == 0x42));
    assert!(far[1 << 20..(1 << 20) + 4096].iter().all(|b| *b == 0));
}

#[test]
fn a_file_digest_equals_the_digest_read_over_nbd() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sparse.raw");
    let f = std::fs::File::create(&file).unwrap();
    // Not a whole number of blocks; data in the middle of a block, across blocks, and at the end.
    let size = 5 * BLOCK + 4096;
    f.set_len(size).unwrap();
    f.write_all_at(&[7u8; 100], BLOCK + 10).unwrap();
    f.write_all_at(&vec![9u8; 2 * B], 2 * BLOCK + 4096).unwrap();
    f.write_all_at(&[1u8; 10], size - 10).unwrap();
    drop(f);
    let from_file = delta::digest_file(&file).unwrap();
    let nbd = QemuNbd::serve(&file);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let over_nbd = rt.block_on(async {
        let mut c = NbdClient::connect(&Address::Unix(nbd.1.clone()), "disk0")
            .await
            .unwrap();
        delta::digest(&mut c, |_| {}).await.unwrap()
    });
    assert_eq!(from_file.len(), 6);
    assert_eq!(from_file, over_nbd);
    assert_ne!(from_file[1], from_file[0]);
    assert_eq!(from_file[0], *blake3::hash(&[0u8; B]).as_bytes());
}

/// Sends `bytes` and returns what the proxy answers until it closes (or 2 s pass).
fn exchange(socket: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn option(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut b = 0x4948_4156_454F_5054u64.to_be_bytes().to_vec();
    b.extend(opt.to_be_bytes());
    b.extend((data.len() as u32).to_be_bytes());
    b.extend(data);
    b
}

/// The kinds of the option replies in `b`.
fn reply_kinds(mut b: &[u8]) -> Vec<u32> {
    let mut kinds = Vec::new();
    while b.len() >= 20 {
        kinds.push(u32::from_be_bytes(b[12..16].try_into().unwrap()));
        let len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
        b = &b[(20 + len).min(b.len())..];
    }
    kinds
}

#[test]
fn malformed_clients_and_servers_get_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (far, _) = images(dir.path());
    let nbd = QemuNbd::serve(&far);
    let proxy = Proxy::start(dir.path(), &nbd, true);
    // Not fixed newstyle: closed after the greeting.
    assert_eq!(exchange(&proxy.socket, &[0, 0, 0, 0]).len(), 18);
    // Garbage instead of an option: closed.
    let mut garbage = 3u32.to_be_bytes().to_vec();
    garbage.extend([0xff; 40]);
    assert_eq!(exchange(&proxy.socket, &garbage).len(), 18);
    // An unknown export, a malformed GO, an unknown option: error replies, then abort.
    let mut talk = 3u32.to_be_bytes().to_vec();
    let mut go = 4u32.to_be_bytes().to_vec();
    go.extend(b"nope");
    go.extend(0u16.to_be_bytes());
    talk.extend(option(7, &go));
    talk.extend(option(7, &[0, 0, 0, 9]));
    talk.extend(option(99, &[]));
    talk.extend(option(2, &[]));
    let out = exchange(&proxy.socket, &talk);
    let kinds = reply_kinds(&out[18..]);
    assert!(kinds.contains(&0x8000_0006), "{out:?}");
    assert!(kinds.contains(&0x8000_0003), "{out:?}");
    assert!(kinds.contains(&0x8000_0001), "{out:?}");
    assert_eq!(kinds.last(), Some(&1), "the abort is acknowledged");
    // After GO: an out-of-range write gets ENOSPC, a bad magic closes the connection.
    let mut session = 3u32.to_be_bytes().to_vec();
    let mut go = 5u32.to_be_bytes().to_vec();
    go.extend(b"disk0");
    go.extend(0u16.to_be_bytes());
    session.extend(option(7, &go));
    let mut write = 0x2560_9513u32.to_be_bytes().to_vec();
    write.extend(0u16.to_be_bytes());
    write.extend(1u16.to_be_bytes());
    write.extend(77u64.to_be_bytes());
    write.extend((SIZE as u64).to_be_bytes());
    write.extend(4u32.to_be_bytes());
    write.extend([1, 2, 3, 4]);
    session.extend(&write);
    session.extend([0xde; 28]);
    let out = exchange(&proxy.socket, &session);
    let reply = &out[out.len() - 16..];
    assert_eq!(reply[..4], 0x6744_6698u32.to_be_bytes());
    assert_eq!(reply[4..8], 28u32.to_be_bytes(), "ENOSPC");
    assert_eq!(reply[8..], 77u64.to_be_bytes());

    // A client meeting a server that is not NBD fails cleanly.
    let fake = dir.path().join("fake.sock");
    let listener = std::os::unix::net::UnixListener::bind(&fake).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let err = proxy
        .runtime
        .block_on(NbdClient::connect(&Address::Unix(fake), "disk0"))
        .err()
        .expect("not NBD");
    assert!(err.to_string().contains("not a fixed-newstyle"), "{err}");
}

#[test]
fn a_far_end_that_dies_fails_the_requests_in_flight_with_eio() {
    let dir = tempfile::tempdir().unwrap();
    let (far, _) = images(dir.path());
    let mut nbd = QemuNbd::serve(&far);
    let proxy = Proxy::start(dir.path(), &nbd, false);
    let mut s = UnixStream::connect(&proxy.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut go = 5u32.to_be_bytes().to_vec();
    go.extend(b"disk0");
    go.extend(0u16.to_be_bytes());
    let mut hello = 3u32.to_be_bytes().to_vec();
    hello.extend(option(7, &go));
    s.write_all(&hello).unwrap();
    // Greeting, then INFO and ACK.
    let mut buf = vec![0u8; 18 + 20 + 12 + 20];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(reply_kinds(&buf[18..]), [3, 1]);
    let _ = nbd.0.kill();
    let _ = nbd.0.wait();
    let mut write = 0x2560_9513u32.to_be_bytes().to_vec();
    write.extend(0u16.to_be_bytes());
    write.extend(1u16.to_be_bytes());
    write.extend(9u64.to_be_bytes());
    write.extend(0u64.to_be_bytes());
    write.extend((B as u32).to_be_bytes());
    write.extend(vec![0x77; B]);
    let _ = s.write_all(&write);
    let mut reply = [0u8; 16];
    s.read_exact(&mut reply).expect("an answer, not a hang");
    assert_eq!(reply[4..8], 5u32.to_be_bytes(), "EIO");
    assert_eq!(reply[8..], 9u64.to_be_bytes());
}
