//! A minimal NBD server over one store, for tests and benchmarks:
//! `nbd-serve DIR SOCKET SIZE [VOLUME]` opens the store in DIR (one directory tier of
//! 64 GiB, 1 MiB extents), creates VOLUME (default `vol`) of SIZE bytes if missing, prints
//! `ready` once the socket listens, and serves until killed.

use std::sync::Arc;

use hypernix_storage::nbd::NbdServer;
use hypernix_storage::{Store, StoreConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, socket, size, rest @ ..] = args.as_slice() else {
        return Err("usage: nbd-serve DIR SOCKET SIZE [VOLUME]".into());
    };
    let volume = rest.first().map_or("vol", String::as_str);
    let store = Store::open(dir.as_ref(), &StoreConfig::single_disk(64 << 30))?;
    if store.volume_size(volume).is_err() {
        store.create_volume(volume, size.parse()?)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket)?;
        println!("ready");
        NbdServer::new(Arc::new(store)).serve_unix(listener).await
    })?;
    Ok(())
}
