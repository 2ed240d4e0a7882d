//! A minimal NBD server over one store, for tests and benchmarks:
//! `nbd-serve DIR SOCKET SIZE [--churn]` opens the store in DIR (tiers `fast`, level 0,
//! and `slow`, level 1, 64 GiB each, 1 MiB extents, new extents on `slow`), creates volume
//! `vol` of SIZE bytes if missing, prints `ready` once the socket listens, and serves until
//! killed. With `--churn`, a thread keeps moving every allocated extent to the other tier,
//! so a kill can land inside a move.

use std::sync::Arc;

use hypernix_storage::Store;
use hypernix_storage::nbd::NbdServer;

#[path = "../tests/shared/two_tiers.rs"]
mod two_tiers;
use two_tiers::config;

/// Moves every allocated extent of `vol` to the other tier, forever.
fn churn(store: &Store) -> Result<(), hypernix_storage::StorageError> {
    let g = store.granularity();
    let size = store.volume_size("vol")?;
    for round in 0u64.. {
        let to = if round % 2 == 0 { "fast" } else { "slow" };
        let mut at = 0;
        for run in store.block_status("vol", 0, size)? {
            if run.allocated {
                for extent in at / g..(at + run.len).div_ceil(g) {
                    store.move_extent("vol", extent, to)?;
                }
            }
            at += run.len;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, socket, size, rest @ ..] = args.as_slice() else {
        return Err("usage: nbd-serve DIR SOCKET SIZE [--churn]".into());
    };
    let store = Arc::new(Store::open(dir.as_ref(), &config())?);
    if store.volume_size("vol").is_err() {
        store.create_volume("vol", size.parse()?)?;
    }
    if rest.iter().any(|a| a == "--churn") {
        let store = store.clone();
        std::thread::spawn(move || {
            if let Err(e) = churn(&store) {
                eprintln!("churn stopped: {e}");
                std::process::exit(1);
            }
        });
    }
    let runtime = hypernix_storage::nbd::runtime()?;
    runtime.block_on(async {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)?;
        println!("ready");
        NbdServer::new(store).serve_unix(listener).await
    })?;
    Ok(())
}
