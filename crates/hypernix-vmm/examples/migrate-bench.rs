//! Live migration of the test guest between two QEMU processes on this machine: total time,
//! downtime and memory sent, for an idle guest and for one dirtying memory, with one
//! migration stream and with multifd.
//!
//! `cargo run --release -p hypernix-vmm --example migrate-bench -- [--rounds N] [--json]`

mod bench;

use std::time::Duration;

use bench::{empty_disk, ready, spec};
use hypernix_vmm::Vm;
use hypernix_vmm::migrate::{self, Endpoint, Incoming, Options};
use tokio::io::AsyncWriteExt;

/// The guest's memory.
const MEMORY: u64 = 512 << 20;

/// Dirties 64 MiB of guest memory (a tmpfs file) over and over.
const BUSY: &str =
    "(while true; do yes hypernix-dirty-page | head -c 67108864 > /dev/shm/blob; done) & true\n";

async fn round(busy: bool, multifd: Option<u8>) -> migrate::Report {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = Vm::spawn(
        &spec(MEMORY, &empty_disk(a.path(), 256 << 20), false).await,
        a.path(),
    )
    .await
    .expect("source");
    ready(a.path()).await;
    if busy {
        let mut console = tokio::net::UnixStream::connect(src.run_dir().console_socket())
            .await
            .expect("console");
        console.write_all(b"\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        console.write_all(BUSY.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let dst = Vm::spawn(
        &spec(MEMORY, &empty_disk(b.path(), 256 << 20), true).await,
        b.path(),
    )
    .await
    .expect("destination");
    let incoming = Incoming {
        nbd: Endpoint::Unix(b.path().join("nbd.sock")),
        migration: Endpoint::Unix(b.path().join("mig.sock")),
    };
    let options = Options {
        multifd_channels: multifd,
        ..Options::default()
    };
    let disks = vec!["disk0".to_string()];
    migrate::prepare_incoming(&dst, &disks, &incoming, &options)
        .await
        .expect("prepare");
    let report = migrate::migrate(&src, &disks, &incoming, &options, |_| {})
        .await
        .expect("migrate");
    migrate::finish_incoming(&dst).await.expect("finish");
    let _ = src.kill().await;
    let _ = dst.kill().await;
    report
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3usize);
    let json = args.iter().any(|a| a == "--json");
    let mut rows = Vec::new();
    for (busy, multifd) in [
        (false, None),
        (false, Some(2)),
        (true, None),
        (true, Some(2)),
    ] {
        let mut reports = Vec::new();
        for _ in 0..rounds {
            reports.push(round(busy, multifd).await);
        }
        let total = median(reports.iter().map(|r| r.total.as_millis() as u64).collect());
        let down = median(reports.iter().map(|r| r.downtime_ms).collect());
        let ram = median(reports.iter().map(|r| r.ram_bytes).collect());
        let guest = if busy { "busy" } else { "idle" };
        let streams = multifd.map_or("1 stream".to_string(), |n| format!("multifd {n}"));
        if !json {
            println!(
                "{guest} guest, {streams}: median total {total} ms, downtime {down} ms, {} MiB of memory sent ({rounds} rounds; each: {:?})",
                ram >> 20,
                reports
                    .iter()
                    .map(|r| (r.total.as_millis(), r.downtime_ms))
                    .collect::<Vec<_>>()
            );
        }
        rows.push(
            serde_json::json!({ "guest": guest, "streams": streams, "rounds": rounds,
            "totalMs": total, "downtimeMs": down, "ramBytes": ram }),
        );
    }
    if json {
        println!("{}", serde_json::Value::Array(rows));
    }
}
