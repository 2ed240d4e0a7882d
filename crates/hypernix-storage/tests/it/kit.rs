//! Shared helpers: store configurations and temporary stores.

use hypernix_storage::{Demote, Promote, Store, StoreConfig, TierMedium, TierSpec};

/// A tier spec of `slots` extents of 64 KiB.
pub fn tier(name: &str, level: u32, slots: u64) -> TierSpec {
    TierSpec {
        name: name.into(),
        level,
        medium: TierMedium::Directory(None),
        capacity: slots * G,
        promote: Some(Promote {
            count: 4.0,
            score: 0.5,
            batch: 3 * G,
        }),
        demote: Some(Demote {
            idle: std::time::Duration::from_secs(3600),
            score: 0.2,
        }),
    }
}

/// The test granularity.
pub const G: u64 = 64 * 1024;

/// Two directory tiers: `fast` (level 0, 4 slots) and `slow` (level 1, 64 slots).
pub fn two_tiers() -> StoreConfig {
    StoreConfig {
        granularity: G,
        tiers: vec![tier("fast", 0, 4), tier("slow", 1, 64)],
        default_level: 1,
        half_life: std::time::Duration::from_secs(3600),
    }
}

/// A fresh store in a temporary directory.
pub fn store(config: &StoreConfig) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path(), config).expect("open store");
    (dir, store)
}

/// A store served over NBD on a unix socket and a loopback TCP port, in this process.
pub struct Served {
    /// The store.
    pub store: std::sync::Arc<Store>,
    /// The unix socket.
    pub socket: std::path::PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// The temporary directory (store, socket, scratch files).
    pub dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Served {
    /// `nbd+unix` URI of export `volume`.
    pub fn uri(&self, volume: &str) -> String {
        format!("nbd+unix:///{volume}?socket={}", self.socket.display())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// Serves a fresh store with `config`.
pub fn serve(config: &StoreConfig) -> Served {
    use hypernix_storage::nbd::NbdServer;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = std::sync::Arc::new(Store::open(&dir.path().join("store"), config).expect("open"));
    let socket = dir.path().join("nbd.sock");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (unix, tcp) = runtime.block_on(async {
        let unix = tokio::net::UnixListener::bind(&socket).expect("bind unix");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp");
        (unix, tcp)
    });
    let port = tcp.local_addr().expect("addr").port();
    let server = NbdServer::new(store.clone());
    let s2 = server.clone();
    runtime.spawn(async move { server.serve_unix(unix).await });
    runtime.spawn(async move { s2.serve_tcp(tcp).await });
    Served {
        store,
        socket,
        port,
        dir,
        runtime: Some(runtime),
    }
}

/// Runs a command, returning stdout; panics with stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// 1 MiB granularity, one directory tier of 1 GiB.
pub fn disk() -> StoreConfig {
    StoreConfig::single_disk(1 << 30)
}
