//! The audit log: one JSON line per decision, each carrying the hash of the one before
//! (BLAKE3 over the previous hash and the record), with a checkpoint line signed by the
//! root key every [`CHECKPOINT_EVERY`] records and when the log is closed. Appends are
//! queued and written by one thread that fsyncs once per batch.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use biscuit_auth::KeyPair;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CapsError;
use crate::keys::KeyRing;

/// Records between two signed checkpoints.
pub const CHECKPOINT_EVERY: u64 = 1000;

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it was made.
    pub time: DateTime<Utc>,
    /// Who asked (`-` when the token could not be read).
    pub principal: String,
    /// The token id, when known.
    pub token: Option<String>,
    /// The operation.
    pub operation: String,
    /// The resource acted on, when there is one.
    pub resource: Option<String>,
    /// `true` when allowed.
    pub allowed: bool,
    /// Why it was denied, or the break-glass reason of an emergency token.
    pub reason: Option<String>,
}

/// A line of the log file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    seq: u64,
    prev: String,
    hash: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    record: Option<AuditRecord>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    checkpoint: Option<Checkpoint>,
}

/// A signature over the chain's hash at a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    key: u32,
    signature: String,
}

fn chain(prev: &str, seq: u64, body: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(prev.as_bytes());
    h.update(&seq.to_le_bytes());
    h.update(body.as_bytes());
    h.finalize().to_hex().to_string()
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

struct Queue {
    pending: Vec<AuditRecord>,
    written: u64,
    queued: u64,
    closed: bool,
    error: Option<String>,
}

/// An open audit log.
pub struct AuditLog {
    path: PathBuf,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, continuing its chain; checkpoints are signed
    /// with `keys`' current key.
    pub fn open(path: &Path, keys: &KeyRing) -> Result<AuditLog, CapsError> {
        let (seq, prev) = match fs::metadata(path) {
            Ok(_) => last(path)?,
            Err(_) => (0, GENESIS.to_string()),
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(CapsError::io(path))?;
        let queue = Arc::new((
            Mutex::new(Queue {
                pending: Vec::new(),
                written: 0,
                queued: 0,
                closed: false,
                error: None,
            }),
            Condvar::new(),
        ));
        let writer = Writer {
            file,
            seq,
            prev,
            key: (keys.current_id(), keys.signing_key().clone()),
            since_checkpoint: 0,
        };
        let q = queue.clone();
        let handle = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || writer.run(&q))
            .map_err(CapsError::io(path))?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            queue,
            writer: Some(handle),
        })
    }

    /// Queues `record`; it is on disk after the next [`flush`](Self::flush) returns.
    pub fn append(&self, record: AuditRecord) {
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().expect("audit queue lock");
        q.pending.push(record);
        q.queued += 1;
        cv.notify_all();
    }

    /// Waits until every record queued so far is written and synced.
    pub fn flush(&self) -> Result<(), CapsError> {
        let (lock, cv) = &*self.queue;
        let mut q = lock.lock().expect("audit queue lock");
        let target = q.queued;
        while q.written < target && q.error.is_none() {
            q = cv.wait(q).expect("audit queue lock");
        }
        match &q.error {
            Some(e) => Err(CapsError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e.clone()),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.queue;
            lock.lock().expect("audit queue lock").closed = true;
            cv.notify_all();
        }
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

struct Writer {
    file: File,
    seq: u64,
    prev: String,
    key: (u32, Arc<KeyPair>),
    since_checkpoint: u64,
}

impl Writer {
    fn run(mut self, queue: &(Mutex<Queue>, Condvar)) {
        let (lock, cv) = queue;
        loop {
            let (batch, closed) = {
                let mut q = lock.lock().expect("audit queue lock");
                while q.pending.is_empty() && !q.closed {
                    q = cv.wait(q).expect("audit queue lock");
                }
                (std::mem::take(&mut q.pending), q.closed)
            };
            let n = batch.len() as u64;
            let result = self.write(batch, closed);
            let mut q = lock.lock().expect("audit queue lock");
            match result {
                Ok(()) => q.written += n,
                Err(e) => q.error = Some(e.to_string()),
            }
            cv.notify_all();
            if closed && q.pending.is_empty() {
                return;
            }
        }
    }

    fn write(&mut self, batch: Vec<AuditRecord>, closing: bool) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(batch.len() * 256);
        for record in batch {
            let body = serde_json::to_string(&record).expect("a record serializes");
            self.seq += 1;
            let hash = chain(&self.prev, self.seq, &body);
            push(
                &mut out,
                &Line {
                    seq: self.seq,
                    prev: std::mem::replace(&mut self.prev, hash.clone()),
                    hash,
                    record: Some(record),
                    checkpoint: None,
                },
            );
            self.since_checkpoint += 1;
            if self.since_checkpoint >= CHECKPOINT_EVERY {
                self.checkpoint(&mut out);
            }
        }
        if closing && self.since_checkpoint > 0 {
            self.checkpoint(&mut out);
        }
        self.file.write_all(&out)?;
        self.file.sync_data()
    }

    fn checkpoint(&mut self, out: &mut Vec<u8>) {
        let signature = self
            .key
            .1
            .sign(self.prev.as_bytes())
            .map(|s| hex(s.to_bytes()))
            .unwrap_or_default();
        push(
            out,
            &Line {
                seq: self.seq,
                prev: self.prev.clone(),
                hash: self.prev.clone(),
                record: None,
                checkpoint: Some(Checkpoint {
                    key: self.key.0,
                    signature,
                }),
            },
        );
        self.since_checkpoint = 0;
    }
}

fn push(out: &mut Vec<u8>, line: &Line) {
    serde_json::to_writer(&mut *out, line).expect("a line serializes");
    out.push(b'\n');
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The last sequence number and hash of the log at `path`.
fn last(path: &Path) -> Result<(u64, String), CapsError> {
    let mut seq = 0;
    let mut prev = GENESIS.to_string();
    for (n, line) in read(path)? {
        let l = parse(path, n, &line)?;
        seq = l.seq;
        prev = l.hash;
    }
    Ok((seq, prev))
}

fn read(path: &Path) -> Result<Vec<(usize, String)>, CapsError> {
    let f = File::open(path).map_err(CapsError::io(path))?;
    BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, l)| l.map(|l| (i + 1, l)).map_err(CapsError::io(path)))
        .collect()
}

fn parse(path: &Path, n: usize, line: &str) -> Result<Line, CapsError> {
    serde_json::from_str(line).map_err(|e| CapsError::Audit {
        path: path.to_path_buf(),
        line: n,
        message: e.to_string(),
    })
}

/// Whether `signature` (hex) is `key`'s Ed25519 signature of `hash`. Biscuit does not
/// export its signature type, so this verifies with ed25519-dalek, which it uses inside.
fn signed(key: &biscuit_auth::PublicKey, hash: &str, signature: &str) -> bool {
    let Ok(bytes) = <[u8; 32]>::try_from(key.to_bytes().as_slice()) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else {
        return false;
    };
    let Some(sig) = unhex(signature).and_then(|s| <[u8; 64]>::try_from(s).ok()) else {
        return false;
    };
    key.verify_strict(hash.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok()
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Records after the last checkpoint (their removal could not be detected).
    pub unsigned_tail: u64,
    /// Each problem found, naming the record.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the log is intact.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the chain and the checkpoints of the log at `path`: a modified record breaks
/// its hash, a removed or reordered one breaks the sequence, and a chain rewritten to hide
/// either no longer matches the signed checkpoints.
pub fn verify(path: &Path, keys: &KeyRing) -> Result<VerifyReport, CapsError> {
    let mut report = VerifyReport {
        records: 0,
        checkpoints: 0,
        unsigned_tail: 0,
        problems: Vec::new(),
    };
    let mut seq = 0;
    let mut prev = GENESIS.to_string();
    for (n, text) in read(path)? {
        let line = match parse(path, n, &text) {
            Ok(l) => l,
            Err(e) => {
                report.problems.push(e.to_string());
                continue;
            }
        };
        if let Some(c) = &line.checkpoint {
            report.checkpoints += 1;
            report.unsigned_tail = 0;
            let good = line.hash == prev
                && keys
                    .any_public(c.key)
                    .is_some_and(|k| signed(&k, &prev, &c.signature));
            if !good {
                report.problems.push(format!(
                    "line {n}: the checkpoint after record {} does not match the chain or its \
                     signature; records before it were changed",
                    line.seq
                ));
            }
            continue;
        }
        let Some(record) = &line.record else {
            report
                .problems
                .push(format!("line {n}: neither a record nor a checkpoint"));
            continue;
        };
        report.records += 1;
        report.unsigned_tail += 1;
        if line.seq != seq + 1 {
            report.problems.push(if line.seq > seq + 1 {
                format!(
                    "line {n}: record {} follows record {seq}: records {}..{} were removed",
                    line.seq,
                    seq + 1,
                    line.seq - 1
                )
            } else {
                format!(
                    "line {n}: record {} follows record {seq}: records were reordered",
                    line.seq
                )
            });
        } else if line.prev != prev {
            report.problems.push(format!(
                "line {n}: record {} does not follow record {seq}'s hash: a record was removed \
                 or reordered",
                line.seq
            ));
        }
        let body = serde_json::to_string(record).expect("a record serializes");
        if chain(&line.prev, line.seq, &body) != line.hash {
            report
                .problems
                .push(format!("line {n}: record {} was modified", line.seq));
        }
        seq = line.seq;
        prev = line.hash.clone();
    }
    Ok(report)
}

/// Every record of the log at `path`, with its sequence number.
pub fn records(path: &Path) -> Result<Vec<(u64, AuditRecord)>, CapsError> {
    let mut out = Vec::new();
    for (n, text) in read(path)? {
        let line = parse(path, n, &text)?;
        if let Some(r) = line.record {
            out.push((line.seq, r));
        }
    }
    Ok(out)
}
