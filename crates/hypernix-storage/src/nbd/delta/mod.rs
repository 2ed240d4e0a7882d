//! Incremental storage migration: an NBD proxy that forwards writes to a far export, except
//! those of blocks the far end already holds.
//!
//! The far end (the migration destination) first hashes its copy of the disk, an older copy
//! or a fresh one, with [`digest`]: BLAKE3 of every 64 KiB block. The source's QEMU mirrors
//! into a [`DeltaProxy`] on a local socket instead of into the far export; the proxy hashes
//! every whole block a write or write-zeroes carries and drops it when the far end's block
//! has that hash, forwarding the rest (and reads, trims and flushes) over one [`NbdClient`]
//! connection per proxied connection. The mirror itself is unchanged (`sync: full`, in step
//! with the guest), so the far end ends up identical to the source whatever it held; only
//! the changed blocks cross the network.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::UnixListener;

use super::client::{Address, ClientError, NbdClient};
mod handshake;
mod transmit;

/// The unit of comparison.
pub const BLOCK: u64 = 64 * 1024;

/// Bytes read per request while hashing.
const DIGEST_READ: u64 = 4 << 20;

/// Transmission flags offered: has flags, flush, FUA, trim, write zeroes.
const FLAGS: u16 = 1 | 4 | 8 | 32 | 64;

/// A block's hash.
pub type Hash = [u8; 32];

/// BLAKE3 of every [`BLOCK`] of the export `client` is connected to (the last one may be
/// shorter); `progress` is told the bytes hashed so far. Each read overlaps the hashing of
/// the one before.
pub async fn digest(
    client: &mut NbdClient,
    mut progress: impl FnMut(u64),
) -> Result<Vec<Hash>, ClientError> {
    let size = client.size();
    let mut hashes = Vec::with_capacity(size.div_ceil(BLOCK) as usize);
    let mut spare = vec![0u8; DIGEST_READ as usize];
    let mut hashing: Option<tokio::task::JoinHandle<(Vec<Hash>, Vec<u8>)>> = None;
    let mut at = 0;
    while at < size {
        let n = (size - at).min(DIGEST_READ) as usize;
        let mut buf = std::mem::take(&mut spare);
        buf.resize(n, 0);
        client.read(at, &mut buf).await?;
        if let Some(h) = hashing.take() {
            let (done, back) = h.await.expect("hashing does not panic");
            hashes.extend(done);
            spare = back;
        }
        hashing = Some(tokio::task::spawn_blocking(move || {
            (hash_blocks(&buf), buf)
        }));
        at += n as u64;
        progress(at);
    }
    if let Some(h) = hashing {
        hashes.extend(h.await.expect("hashing does not panic").0);
    }
    Ok(hashes)
}

/// [`digest`] of a raw image file, read directly: only its data regions are read, holes
/// hash as zeros. For a disk file the destination's QEMU holds open but has not run yet.
pub fn digest_file(path: &std::path::Path) -> io::Result<Vec<Hash>> {
    use rustix::fs::SeekFrom;
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut hashes: Vec<Hash> = (0..size.div_ceil(BLOCK))
        .map(|i| zero_hash((size - i * BLOCK).min(BLOCK)))
        .collect();
    let mut buf = vec![0u8; DIGEST_READ as usize];
    let mut at = 0;
    while at < size {
        let (start, end) = match rustix::fs::seek(&file, SeekFrom::Data(at)) {
            Ok(start) => {
                let end = rustix::fs::seek(&file, SeekFrom::Hole(start)).unwrap_or(size);
                (start, end.min(size))
            }
            Err(rustix::io::Errno::NXIO) => break,
            // A file system without SEEK_DATA: everything is data.
            Err(_) => (at, size),
        };
        // Whole blocks around the data; their parts in holes read as zeros.
        let mut from = start / BLOCK * BLOCK;
        let to = end.div_ceil(BLOCK).saturating_mul(BLOCK).min(size);
        while from < to {
            let n = (to - from).min(DIGEST_READ) as usize;
            file.read_exact_at(&mut buf[..n], from)?;
            let first = (from / BLOCK) as usize;
            for (i, h) in hash_blocks(&buf[..n]).into_iter().enumerate() {
                hashes[first + i] = h;
            }
            from += n as u64;
        }
        at = to.max(at + 1);
    }
    Ok(hashes)
}

/// The hash of each [`BLOCK`] of `data`; zero blocks are recognised without hashing.
fn hash_blocks(data: &[u8]) -> Vec<Hash> {
    data.chunks(BLOCK as usize)
        .map(|b| {
            if b.iter().all(|x| *x == 0) {
                zero_hash(b.len() as u64)
            } else {
                *blake3::hash(b).as_bytes()
            }
        })
        .collect()
}

/// One export the proxy serves: where the far end serves it, and what it holds.
#[derive(Debug, Clone)]
pub struct DeltaExport {
    /// The far server.
    pub far: Address,
    /// The export's name there.
    pub far_export: String,
    /// The far end's block hashes ([`digest`]); empty: nothing is known, all is sent.
    pub digest: Vec<Hash>,
}

/// What the proxy forwarded and what it spared.
#[derive(Debug, Default)]
pub struct DeltaStats {
    /// Data bytes written to the far end.
    pub sent: AtomicU64,
    /// Bytes made zero at the far end (write-zeroes: no data on the wire).
    pub zeroed: AtomicU64,
    /// Bytes the far end already held, not sent.
    pub skipped: AtomicU64,
}

struct Export {
    far: Address,
    far_export: String,
    known: Vec<Option<Hash>>,
}

/// Serves local NBD exports that forward to far ones, sending only changed blocks.
#[derive(Clone)]
pub struct DeltaProxy {
    exports: Arc<HashMap<String, Mutex<Export>>>,
    stats: Arc<DeltaStats>,
}

/// A write's plan: the runs to forward (offset, range in the payload).
type Runs = Vec<(u64, std::ops::Range<usize>)>;

impl DeltaProxy {
    /// A proxy serving `exports` by name.
    pub fn new(exports: impl IntoIterator<Item = (String, DeltaExport)>) -> DeltaProxy {
        let exports = exports
            .into_iter()
            .map(|(name, e)| {
                let known = e.digest.into_iter().map(Some).collect();
                let export = Export {
                    far: e.far,
                    far_export: e.far_export,
                    known,
                };
                (name, Mutex::new(export))
            })
            .collect();
        DeltaProxy {
            exports: Arc::new(exports),
            stats: Arc::default(),
        }
    }

    /// The counters, live.
    pub fn stats(&self) -> Arc<DeltaStats> {
        self.stats.clone()
    }

    /// Listens on the unix socket `socket` (replacing a stale one) and serves each
    /// connection on its own task until the returned task is aborted; needs a tokio runtime.
    pub fn listen(&self, socket: &Path) -> io::Result<tokio::task::JoinHandle<()>> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let this = self.clone();
        Ok(tokio::spawn(async move {
            if let Err(e) = this.serve(listener).await {
                tracing::warn!("migration proxy: {e}");
            }
        }))
    }

    async fn serve(&self, listener: UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let this = self.clone();
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                if let Err(e) = this.connection(BufReader::new(r), w).await {
                    tracing::debug!("migration proxy connection ended: {e}");
                }
            });
        }
    }

    /// Runs one connection: handshake, then requests until DISC or an error.
    async fn connection<R, W>(&self, r: R, w: W) -> Result<(), ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut stream = tokio::io::join(r, w);
        let Some((name, far)) = self.handshake(&mut stream).await.map_err(transmit::local)? else {
            return Ok(());
        };
        let (mut r, mut w) = stream.into_inner();
        self.transmit(&name, far, &mut r, &mut w).await
    }

    /// Connects to the far end of export `name`.
    async fn dial(&self, name: &str) -> Result<NbdClient, ClientError> {
        let (far, far_export) = {
            let e = self
                .exports
                .get(name)
                .ok_or_else(|| ClientError::Protocol {
                    address: "migration proxy".into(),
                    message: format!("no export {name:?}"),
                })?;
            let e = e.lock().expect("export lock");
            (e.far.clone(), e.far_export.clone())
        };
        NbdClient::connect(&far, &far_export).await
    }

    /// Decides which parts of a write of `data` (or, with `None`, of a write-zeroes) of
    /// `len` bytes at `off` to forward, counts the rest as skipped, and records what the far
    /// end will hold.
    fn plan(
        &self,
        export: &Mutex<Export>,
        size: u64,
        off: u64,
        len: u64,
        data: Option<&[u8]>,
    ) -> Runs {
        let mut e = export.lock().expect("export lock");
        let mut runs: Runs = Vec::new();
        let (mut forwarded, mut skipped) = (0, 0);
        let mut pos = 0u64;
        while pos < len {
            let at = off + pos;
            let block = (at / BLOCK) as usize;
            let start = block as u64 * BLOCK;
            let end = (start + BLOCK).min(size);
            let next = pos + (end - at).min(len - pos);
            let piece = pos as usize..next as usize;
            // Only whole blocks compare; a part of one is always sent.
            let hash = (at == start && off + next == end).then(|| match data {
                Some(d) => *blake3::hash(&d[piece.clone()]).as_bytes(),
                None => zero_hash(end - start),
            });
            if hash.is_some() && e.known.get(block).copied().flatten() == hash {
                skipped += next - pos;
            } else {
                if let Some(k) = e.known.get_mut(block) {
                    *k = hash;
                }
                forwarded += next - pos;
                match runs.last_mut() {
                    Some((_, r)) if r.end == piece.start => r.end = piece.end,
                    _ => runs.push((at, piece)),
                }
            }
            pos = next;
        }
        let counter = if data.is_some() {
            &self.stats.sent
        } else {
            &self.stats.zeroed
        };
        counter.fetch_add(forwarded, Ordering::Relaxed);
        self.stats.skipped.fetch_add(skipped, Ordering::Relaxed);
        runs
    }
}

/// The hash of `len` zero bytes.
fn zero_hash(len: u64) -> Hash {
    static WHOLE: std::sync::LazyLock<Hash> =
        std::sync::LazyLock::new(|| *blake3::hash(&[0u8; BLOCK as usize]).as_bytes());
    if len == BLOCK {
        *WHOLE
    } else {
        *blake3::hash(&vec![0u8; len as usize]).as_bytes()
    }
}

/// Forgets what the far end holds in `len` bytes at `off` (after a trim).
fn forget(export: &Mutex<Export>, off: u64, len: u64) {
    let mut e = export.lock().expect("export lock");
    let first = (off / BLOCK) as usize;
    let last = (off + len).div_ceil(BLOCK) as usize;
    for k in e.known.iter_mut().take(last).skip(first) {
        *k = None;
    }
}
