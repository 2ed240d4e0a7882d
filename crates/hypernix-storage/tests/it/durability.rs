//! kill -9 of a server process under a qemu-io write load while extents move between
//! tiers: every write acknowledged as durable (FUA, or followed by a completed flush) reads
//! back after restart, and fsck is clean.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use hypernix_storage::Store;

/// Kill-and-restart rounds.
const ROUNDS: u64 = 20;
/// Writes per round, each into its own 64 KiB block.
const WRITES: u64 = 48;
const BLOCK: u64 = 64 * 1024;
const SIZE: u64 = ROUNDS * WRITES * BLOCK;

#[path = "../shared/two_tiers.rs"]
mod two_tiers;
use two_tiers::config;

/// The example server binary, built by `cargo test` next to the test binaries.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let debug = exe.parent().and_then(Path::parent).expect("target dir");
    debug.join("examples").join("nbd-serve")
}

struct Server(Child);

impl Server {
    fn start(dir: &Path, socket: &Path) -> Server {
        let mut child = Command::new(server_binary())
            .args([
                dir.to_str().unwrap(),
                socket.to_str().unwrap(),
                &SIZE.to_string(),
                "--churn",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn nbd-serve (built by cargo test as an example)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server output");
        let server = Server(child);
        assert_eq!(line.trim(), "ready");
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: the crash under test (and the cleanup when a test fails).
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small xorshift generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The pattern byte of write `i` of round `r`: never 0, distinct per neighbouring write.
fn pattern(r: u64, i: u64) -> u8 {
    ((r * WRITES + i) % 255 + 1) as u8
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("durability seed {seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let socket = tmp.path().join("nbd.sock");
    let uri = format!("nbd+unix:///vol?socket={}", socket.display());
    // (offset, pattern) of every write acknowledged as durable.
    let mut durable: Vec<(u64, u8)> = Vec::new();
    let started = Instant::now();
    let mut moved = 0;
    for r in 0..ROUNDS {
        let server = Server::start(&dir, &socket);
        let mut order: Vec<u64> = (0..WRITES).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.next(i as u64 + 1) as usize);
        }
        let mut args = vec!["-f".to_owned(), "raw".to_owned(), uri.clone()];
        let mut expected = Vec::new();
        for (n, &i) in order.iter().enumerate() {
            let offset = (r * WRITES + i) * BLOCK;
            // Even writes use FUA; odd ones are made durable by a flush after them.
            let fua = if n % 2 == 0 { "-f " } else { "" };
            args.extend([
                "-c".into(),
                format!("write {fua}-P {} {offset} 64k", pattern(r, i)),
            ]);
            expected.push((offset, pattern(r, i), n % 2 == 0));
            if n % 2 == 1 {
                args.extend(["-c".into(), "flush".into()]);
                // A marker read: it prints only after the flush before it completed.
                args.extend(["-c".into(), format!("read {offset} 512")]);
            }
        }
        let client = Command::new("qemu-io")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn qemu-io");
        std::thread::sleep(Duration::from_millis(10 + rng.next(250)));
        drop(server);
        let out = client.wait_with_output().expect("qemu-io output");
        let out = String::from_utf8_lossy(&out.stdout);
        // qemu-io prints "wrote N/N bytes at offset X" per write, "read ..." per read.
        let lines: Vec<&str> = out.lines().collect();
        for (offset, pat, fua) in expected {
            let wrote = format!("wrote 65536/65536 bytes at offset {offset}");
            let Some(at) = lines.iter().position(|l| l.trim() == wrote) else {
                continue;
            };
            let flushed = lines[at + 1..]
                .iter()
                .any(|l| l.trim() == format!("read 512/512 bytes at offset {offset}"));
            if fua || flushed {
                durable.push((offset, pat));
            }
        }
        let store = Store::open(&dir, &config()).expect("reopen");
        moved = store.tier_stats()[0].extents;
        let report = store.fsck().expect("fsck");
        assert!(report.is_clean(), "round {r}: {:?}", report.problems);
        for &(offset, pat) in &durable {
            let mut buf = vec![0u8; BLOCK as usize];
            store.read("vol", offset, &mut buf).unwrap();
            assert!(
                buf.iter().all(|&b| b == pat),
                "round {r}: acknowledged write of {pat:#x} at {offset} lost (seed {seed}): read {:?} {:?} {:?}\n{out}",
                store.block_status("vol", offset, BLOCK),
                store.tier_stats(),
                {
                    let mut v = buf.clone();
                    v.dedup();
                    v
                }
            );
        }
    }
    eprintln!(
        "{} durable writes checked over {ROUNDS} kills in {:?}; {} extents ended on fast",
        durable.len(),
        started.elapsed(),
        moved
    );
    assert!(!durable.is_empty(), "no write was ever acknowledged");
    let fast = std::fs::metadata(dir.join("tier-fast.data")).map_or(0, |m| m.len());
    assert!(
        fast > 0,
        "no extent ever moved to the fast tier: the churn did not run"
    );
}
