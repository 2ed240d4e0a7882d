//! A whole NBD connection (handshake and transmission) fed arbitrary client bytes against
//! an ephemeral store: the server must answer or close, never panic, and the store must
//! stay consistent.
#![no_main]

use std::sync::Arc;

use hypernix_storage::nbd::NbdServer;
use hypernix_storage::{Store, StoreConfig};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = StoreConfig::single_disk(8 << 20);
    config.granularity = 64 << 10;
    let store = Arc::new(Store::ephemeral(&config).expect("store"));
    store.create_volume("vol", 4 << 20).expect("volume");
    let server = NbdServer::new(store.clone());
    runtime.block_on(async {
        let (client, conn) = tokio::io::duplex(1 << 16);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let serving = tokio::spawn(async move { server.connection(conn).await });
        // Drain replies while writing, so neither side blocks on a full pipe.
        let draining = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = from_server.read_to_end(&mut sink).await;
        });
        let _ = to_server.write_all(data).await;
        let _ = to_server.shutdown().await;
        let _ = serving.await;
        let _ = draining.await;
    });
    assert!(store.fsck().expect("fsck").is_clean());
});
