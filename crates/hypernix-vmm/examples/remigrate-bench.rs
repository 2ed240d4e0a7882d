//! Bytes a live migration sends back to a node that holds an older copy of the disk, with
//! the incremental proxy (`hypernix_storage::nbd::delta`), against a full mirror.
//!
//! Each round: a 1 GiB disk with 256 MiB of random data; the guest migrates to a fresh disk
//! (B); W MiB of it are rewritten there; then it migrates back three times, each time into a
//! new QEMU on a copy of the first disk as it was left (A): with the digest of A (only changed
//! blocks cross), without (every data block crosses), both through the proxy, which counts
//! the bytes; and straight into the destination's export, as before the proxy existed (QEMU
//! counts the bytes the mirror copied, zeros included). The digest is made as the daemon
//! makes it for a raw disk file (`digest_file`: the file read directly, holes skipped).
//!
//! `cargo run --release -p hypernix-vmm --example remigrate-bench -- [--json]`

mod bench;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bench::{empty_disk, ready, spec};
use hypernix_storage::nbd::client::Address;
use hypernix_storage::nbd::delta::{self, DeltaExport, DeltaProxy, DeltaStats};
use hypernix_vmm::Vm;
use hypernix_vmm::migrate::{self, Endpoint, Incoming, Options};
use serde_json::json;

/// The guest's memory.
const MEMORY: u64 = 256 << 20;

const DISK: u64 = 1 << 30;
const DATA: usize = 256 << 20;

/// A sparse 1 GiB raw disk with 256 MiB of random data in 16 MiB runs every 64 MiB.
fn seeded_disk(dir: &Path) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("disk.raw");
    let mut f = std::fs::File::create(&path).expect("disk");
    f.set_len(DISK).expect("size");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut run = vec![0u8; 16 << 20];
    for i in 0..DATA / run.len() {
        for b in run.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b.copy_from_slice(&state.to_le_bytes()[..b.len()]);
        }
        f.seek(SeekFrom::Start(i as u64 * (64 << 20)))
            .expect("seek");
        f.write_all(&run).expect("write");
    }
    f.sync_all().expect("sync");
    path
}

/// What one migration cost.
struct Cost {
    digest_ms: u64,
    sent: u64,
    skipped: u64,
    ms: u64,
}

/// How the disk travels.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// Through the proxy, which knows the destination's digest.
    Incremental,
    /// Through the proxy, without a digest.
    Full,
    /// Straight into the destination's export, as without the proxy.
    Direct,
}

/// Migrates `src` into a new QEMU on `disk` (in `dir`) the `way` given; answers the
/// destination and the cost (for `Direct`, `sent` is the mirror's count, zeros included).
async fn migrate_into(src: &Vm, dir: &Path, disk: &Path, way: Way) -> (Vm, Cost) {
    let dst = Vm::spawn(&spec(MEMORY, disk, true).await, dir)
        .await
        .expect("destination");
    let nbd = dir.join("nbd.sock");
    let incoming = Incoming {
        nbd: Endpoint::Unix(nbd.clone()),
        migration: Endpoint::Unix(dir.join("mig.sock")),
    };
    let options = Options::default();
    let disks = vec!["disk0".to_string()];
    let started = Instant::now();
    migrate::prepare_incoming(&dst, &disks, &incoming, &options)
        .await
        .expect("prepare");
    let far = Address::Unix(nbd);
    let hashing = Instant::now();
    // As the daemon does for a raw disk file: read it directly, skipping holes.
    let digest = if way == Way::Incremental {
        delta::digest_file(disk).expect("digest")
    } else {
        Vec::new()
    };
    let digest_ms = hashing.elapsed().as_millis() as u64;
    let export = DeltaExport {
        far,
        far_export: "disk0".into(),
        digest,
    };
    let proxy = DeltaProxy::new([("disk0".to_string(), export)]);
    let stats: Arc<DeltaStats> = proxy.stats();
    let socket = dir.join("proxy.sock");
    let serving = proxy.listen(&socket).expect("proxy socket");
    let through = if way == Way::Direct {
        incoming
    } else {
        Incoming {
            nbd: Endpoint::Unix(socket.clone()),
            ..incoming
        }
    };
    let report = migrate::migrate(src, &disks, &through, &options, |_| {})
        .await
        .expect("migrate");
    migrate::finish_incoming(&dst).await.expect("finish");
    serving.abort();
    let _ = std::fs::remove_file(socket);
    let cost = Cost {
        digest_ms,
        sent: if way == Way::Direct {
            report.disk_bytes
        } else {
            stats.sent.load(Ordering::Relaxed)
        },
        skipped: stats.skipped.load(Ordering::Relaxed),
        ms: started.elapsed().as_millis() as u64,
    };
    (dst, cost)
}

async fn round(rewritten_mib: u64) -> (Cost, Cost, Cost, Cost) {
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = seeded_disk(dirs[0].path());
    let src = Vm::spawn(&spec(MEMORY, &a, false).await, dirs[0].path())
        .await
        .expect("source");
    ready(dirs[0].path()).await;
    let (on_b, first) = migrate_into(
        &src,
        dirs[1].path(),
        &empty_disk(dirs[1].path(), DISK),
        Way::Incremental,
    )
    .await;
    let _ = src.kill().await;
    // Rewritten on B: W MiB over the data and beyond, through QEMU's block layer.
    if rewritten_mib > 0 {
        let device = format!(
            "/machine/peripheral/{}/virtio-backend",
            hypernix_vmm::command::disk_device(0)
        );
        let cmd = format!("qemu-io -d {device} \"write -P 0x5a 60M {rewritten_mib}M\"");
        let out: serde_json::Value = on_b
            .qmp()
            .call(
                "human-monitor-command",
                Some(json!({ "command-line": cmd })),
            )
            .await
            .expect("qemu-io");
        // qemu-io prints its success on QEMU's stdout; the answer holds only errors.
        assert_eq!(out, "", "qemu-io");
    }
    // A's disk as it was left, three times: one destination for each way back.
    let copies: Vec<PathBuf> = (2..5).map(|i| dirs[i].path().join("disk.raw")).collect();
    for copy in &copies {
        // Sparse, as the disk itself (std::fs::copy would fill the holes).
        let ok = std::process::Command::new("cp")
            .arg("--sparse=always")
            .args([&a, copy])
            .status()
            .expect("cp");
        assert!(ok.success(), "cp");
    }
    let mut costs = Vec::new();
    for (i, way) in [Way::Incremental, Way::Full, Way::Direct]
        .into_iter()
        .enumerate()
    {
        let (back, cost) = migrate_into(&on_b, dirs[i + 2].path(), &copies[i], way).await;
        let _ = back.kill().await;
        // B is paused with its disks handed over; running it again takes them back.
        on_b.qmp().cont().await.expect("cont");
        costs.push(cost);
    }
    let _ = on_b.kill().await;
    let direct = costs.pop().expect("three");
    let full = costs.pop().expect("three");
    let incremental = costs.pop().expect("three");
    (first, incremental, full, direct)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let mut rows = Vec::new();
    for w in [0u64, 16, 64] {
        let (first, inc, full, direct) = round(w).await;
        let ratio = inc.sent as f64 / full.sent.max(1) as f64;
        if !json {
            println!(
                "rewritten {w} MiB: to a fresh disk {} MiB sent in {} ms; back, incremental {} MiB \
                 sent ({} MiB spared) in {} ms ({} ms hashing the destination); back, full {} MiB \
                 sent in {} ms; back, direct (no proxy) {} MiB mirrored in {} ms; incremental/full \
                 bytes {ratio:.4}",
                first.sent >> 20,
                first.ms,
                inc.sent >> 20,
                inc.skipped >> 20,
                inc.ms,
                inc.digest_ms,
                full.sent >> 20,
                full.ms,
                direct.sent >> 20,
                direct.ms
            );
        }
        rows.push(json!({
            "rewrittenMiB": w,
            "freshSentBytes": first.sent, "freshMs": first.ms,
            "incrementalSentBytes": inc.sent, "incrementalSkippedBytes": inc.skipped,
            "incrementalMs": inc.ms, "digestMs": inc.digest_ms,
            "fullSentBytes": full.sent, "fullMs": full.ms,
            "directMirroredBytes": direct.sent, "directMs": direct.ms,
            "ratio": ratio,
        }));
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
    }
}
