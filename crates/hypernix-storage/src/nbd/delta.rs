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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::client::{Address, ClientError, NbdClient};
use super::proto::*;

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

    /// Accepts connections on `listener` until dropped, each on its own task.
    pub async fn serve(&self, listener: UnixListener) -> io::Result<()> {
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
    async fn connection<R, W>(&self, mut r: R, mut w: W) -> Result<(), ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some((name, mut far)) = self.handshake(&mut r, &mut w).await.map_err(local)? else {
            return Ok(());
        };
        let result = self.transmit(&name, &mut far, &mut r, &mut w).await;
        let _ = far.disconnect().await;
        result
    }

    async fn handshake<R, W>(&self, r: &mut R, w: &mut W) -> io::Result<Option<(String, NbdClient)>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut hello = Vec::with_capacity(18);
        hello.extend(NBDMAGIC.to_be_bytes());
        hello.extend(IHAVEOPT.to_be_bytes());
        hello.extend((FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        w.write_all(&hello).await?;
        w.flush().await?;
        let client_flags = r.read_u32().await?;
        if client_flags & u32::from(FLAG_FIXED_NEWSTYLE) == 0 {
            return Ok(None);
        }
        loop {
            let magic = r.read_u64().await?;
            let opt = r.read_u32().await?;
            let len = r.read_u32().await?;
            if magic != IHAVEOPT || len > MAX_OPTION_LEN {
                return Ok(None);
            }
            let mut data = vec![0u8; len as usize];
            r.read_exact(&mut data).await?;
            let name = match opt {
                OPT_GO | OPT_INFO => match parse_info_request(&data) {
                    Some((name, _)) => name,
                    None => {
                        option_reply(w, opt, REP_ERR_INVALID, b"malformed request").await?;
                        continue;
                    }
                },
                OPT_EXPORT_NAME => String::from_utf8_lossy(&data).into_owned(),
                OPT_ABORT => {
                    option_reply(w, opt, REP_ACK, &[]).await?;
                    return Ok(None);
                }
                _ => {
                    option_reply(w, opt, REP_ERR_UNSUP, &[]).await?;
                    continue;
                }
            };
            let far = match self.dial(&name).await {
                Ok(far) => far,
                Err(e) if opt == OPT_EXPORT_NAME => {
                    tracing::debug!("migration proxy: {e}");
                    return Ok(None);
                }
                Err(e) => {
                    option_reply(w, opt, REP_ERR_UNKNOWN, e.to_string().as_bytes()).await?;
                    continue;
                }
            };
            let mut info = Vec::with_capacity(12);
            if opt == OPT_EXPORT_NAME {
                info.extend(far.size().to_be_bytes());
                info.extend(FLAGS.to_be_bytes());
                if client_flags & u32::from(FLAG_NO_ZEROES) == 0 {
                    info.extend([0u8; 124]);
                }
                w.write_all(&info).await?;
                w.flush().await?;
                return Ok(Some((name, far)));
            }
            info.extend(INFO_EXPORT.to_be_bytes());
            info.extend(far.size().to_be_bytes());
            info.extend(FLAGS.to_be_bytes());
            option_reply(w, opt, REP_INFO, &info).await?;
            option_reply(w, opt, REP_ACK, &[]).await?;
            if opt == OPT_GO {
                return Ok(Some((name, far)));
            }
        }
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

    async fn transmit<R, W>(
        &self,
        name: &str,
        far: &mut NbdClient,
        r: &mut R,
        w: &mut W,
    ) -> Result<(), ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let export = &self.exports[name];
        let size = far.size();
        loop {
            let mut head = [0u8; REQUEST_LEN];
            r.read_exact(&mut head).await.map_err(local)?;
            let Ok(req) = Request::parse(&head) else {
                return Ok(());
            };
            let fua = req.flags & CMD_FLAG_FUA != 0;
            let (off, len) = (req.offset, u64::from(req.length));
            let in_range = off.checked_add(len).is_some_and(|end| end <= size);
            let mut data = Vec::new();
            let outcome = match req.command {
                Command::Write if req.length > MAX_PAYLOAD => return Ok(()),
                Command::Write => {
                    data = vec![0u8; req.length as usize];
                    r.read_exact(&mut data).await.map_err(local)?;
                    if in_range {
                        let runs = self.plan(export, size, off, len, Some(&data));
                        forward_writes(far, &runs, &data, fua).await
                    } else {
                        Err(ENOSPC)
                    }
                }
                Command::WriteZeroes if in_range => {
                    let runs = self.plan(export, size, off, len, None);
                    forward_zeroes(far, &runs, fua).await
                }
                Command::Trim if in_range => {
                    forget(export, off, len);
                    far.trim(off, req.length).await.map_err(errno)
                }
                Command::Read if in_range && req.length <= MAX_PAYLOAD => {
                    let mut buf = vec![0u8; req.length as usize];
                    let result = far.read(off, &mut buf).await.map_err(errno);
                    data = buf;
                    result
                }
                Command::Flush => far.flush().await.map_err(errno),
                Command::Cache if in_range => Ok(()),
                Command::Disconnect => return Ok(()),
                _ => Err(EINVAL),
            };
            let mut reply = Vec::with_capacity(16);
            reply.extend(SIMPLE_REPLY_MAGIC.to_be_bytes());
            reply.extend(outcome.err().unwrap_or(0).to_be_bytes());
            reply.extend(req.cookie.to_be_bytes());
            w.write_all(&reply).await.map_err(local)?;
            if req.command == Command::Read && outcome.is_ok() {
                w.write_all(&data).await.map_err(local)?;
            }
            w.flush().await.map_err(local)?;
            if outcome == Err(EIO) {
                // The far end is gone: the mirror fails, and the migration with it.
                return Ok(());
            }
        }
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

async fn forward_writes(
    far: &mut NbdClient,
    runs: &Runs,
    data: &[u8],
    fua: bool,
) -> Result<(), u32> {
    for (at, range) in runs {
        far.write(*at, &data[range.clone()], fua)
            .await
            .map_err(errno)?;
    }
    Ok(())
}

async fn forward_zeroes(far: &mut NbdClient, runs: &Runs, fua: bool) -> Result<(), u32> {
    for (at, range) in runs {
        far.write_zeroes(*at, range.len() as u32, fua)
            .await
            .map_err(errno)?;
    }
    Ok(())
}

/// The errno a failed far request answers the local client with.
fn errno(e: ClientError) -> u32 {
    match e {
        ClientError::Request { errno, .. } => errno,
        e => {
            tracing::warn!("migration proxy: {e}");
            EIO
        }
    }
}

fn local(source: io::Error) -> ClientError {
    ClientError::Io {
        address: "migration proxy client".into(),
        source,
    }
}

async fn option_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    opt: u32,
    kind: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend(REPLY_MAGIC.to_be_bytes());
    b.extend(opt.to_be_bytes());
    b.extend(kind.to_be_bytes());
    b.extend((data.len() as u32).to_be_bytes());
    b.extend(data);
    w.write_all(&b).await?;
    w.flush().await
}
