//! The writers' output: a position that moves forward over a file or a stream.
//!
//! On a file, small appends (metadata, compressed clusters) are gathered into large writes,
//! and large ones (runs of plain chunks) go straight to `pwrite` from the caller's buffer
//! without a copy. Skipped ranges stay holes. While the conversion goes on, a [`Writeback`]
//! thread starts the disk writes of every [`KICK_EVERY`] bytes written, so the disk works
//! alongside the conversion and the closing `fdatasync` (the image is durable when the
//! command returns) waits only for the last ones instead of the whole image.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::num::NonZeroU64;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, SyncSender};
use std::thread::JoinHandle;

use rustix::fs::{Advice, fadvise};

use crate::{Error, Output, Result};

/// How many appended bytes a file sink gathers before one `pwrite`.
const GATHER: usize = 2 << 20;

/// Appends at least this long skip the gathering buffer.
const DIRECT: usize = 256 << 10;

/// Bytes written between two writeback kicks.
const KICK_EVERY: u64 = 8 << 20;

/// Zeros to write where a stream cannot seek over a gap.
static ZEROS: [u8; crate::CHUNK] = [0; crate::CHUNK];

/// A thread that starts the disk writes of the ranges just written while the caller keeps
/// writing: `POSIX_FADV_DONTNEED` starts writeback without waiting for it, and drops pages
/// already on disk from the page cache, so a large image does not push out other files.
struct Writeback {
    kick: SyncSender<Range<u64>>,
    thread: JoinHandle<()>,
    /// The range written since the last kick, and how many bytes.
    range: Option<Range<u64>>,
    since: u64,
}

impl Writeback {
    /// Writeback for `file`; none when the file cannot be shared with a thread (the closing
    /// `fdatasync` then writes everything).
    fn new(file: &File) -> Option<Writeback> {
        let file = file.try_clone().ok()?;
        // At most one kick waits; ranges written meanwhile join the next one.
        let (kick, kicked) = mpsc::sync_channel::<Range<u64>>(1);
        let thread = std::thread::Builder::new()
            .name("image-writeback".into())
            .spawn(move || {
                for r in kicked {
                    // Advice only: the closing fdatasync is what makes the image durable
                    // and reports write errors.
                    let _ = fadvise(
                        &file,
                        r.start,
                        NonZeroU64::new(r.end - r.start),
                        Advice::DontNeed,
                    );
                }
            })
            .ok()?;
        Some(Writeback {
            kick,
            thread,
            range: None,
            since: 0,
        })
    }

    /// Notes `n` bytes written at `at`; kicks every [`KICK_EVERY`] bytes.
    fn wrote(&mut self, at: u64, n: usize) {
        let end = at + n as u64;
        let range = self
            .range
            .take()
            .map_or(at..end, |r| r.start.min(at)..r.end.max(end));
        self.since += n as u64;
        if self.since >= KICK_EVERY && self.kick.try_send(range.clone()).is_ok() {
            self.since = 0;
        } else {
            self.range = Some(range);
        }
    }

    /// Stops the thread once its last kick is done.
    fn stop(self) {
        drop(self.kick);
        let _ = self.thread.join();
    }
}

/// An output with a known position: appends, skips ahead (holes or zeros), and on files
/// writes at earlier offsets.
pub(crate) struct Sink {
    out: Output,
    pos: u64,
    name: String,
    /// Appends to a file not yet written, gathered into large writes, from `pending_at`.
    pending: Vec<u8>,
    pending_at: u64,
    writeback: Option<Writeback>,
}

impl Sink {
    pub(crate) fn new(out: Output) -> Sink {
        let (name, writeback) = match &out {
            // Without the closing sync, writeback is the page cache's business.
            Output::File { name, file, sync } => {
                (name.clone(), sync.then(|| Writeback::new(file)).flatten())
            }
            Output::Stream(_) => ("-".to_string(), None),
        };
        Sink {
            out,
            pos: 0,
            name,
            pending: Vec::new(),
            pending_at: 0,
            writeback,
        }
    }

    pub(crate) fn seekable(&self) -> bool {
        self.out.seekable()
    }

    pub(crate) fn pos(&self) -> u64 {
        self.pos
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Writes `data` at `offset` of a file.
    fn pwrite(&mut self, data: &[u8], offset: u64) -> Result<()> {
        match &mut self.out {
            Output::File { file, .. } => file
                .write_all_at(data, offset)
                .map_err(|e| Error::io(&self.name, format!("write at byte {offset}"), e))?,
            Output::Stream(_) => {
                return Err(Error::Usage(format!(
                    "internal: a stream cannot be written at byte {offset}"
                )));
            }
        }
        if let Some(w) = &mut self.writeback {
            w.wrote(offset, data.len());
        }
        Ok(())
    }

    /// Appends `data` at the current position.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Output::Stream(w) = &mut self.out {
            w.write_all(data)
                .map_err(|e| Error::io(&self.name, format!("write at byte {}", self.pos), e))?;
        } else {
            if self.pending_at + self.pending.len() as u64 != self.pos {
                self.flush_pending()?;
            }
            if self.pending.is_empty() {
                self.pending_at = self.pos;
            }
            if self.pending.is_empty() && data.len() >= DIRECT {
                self.pwrite(data, self.pos)?;
            } else {
                self.pending.extend_from_slice(data);
                if self.pending.len() >= GATHER {
                    self.flush_pending()?;
                }
            }
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Writes the gathered appends of a file.
    fn flush_pending(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let r = self.pwrite(&pending, self.pending_at);
            self.pending = pending;
            self.pending.clear();
            r?;
        }
        Ok(())
    }

    /// Moves the position forward to `to`: a hole in a file, zeros on a stream.
    pub(crate) fn skip_to(&mut self, to: u64) -> Result<()> {
        if to <= self.pos {
            return Ok(());
        }
        if self.seekable() {
            self.pos = to;
            return Ok(());
        }
        while self.pos < to {
            let n = (to - self.pos).min(ZEROS.len() as u64) as usize;
            self.write(&ZEROS[..n])?;
        }
        Ok(())
    }

    /// Writes `data` at an earlier `offset` of a file (metadata filled in at the end).
    pub(crate) fn write_at(&mut self, data: &[u8], offset: u64) -> Result<()> {
        self.flush_pending()?;
        self.pwrite(data, offset)
    }

    /// Sets a file's length to `len` (a trailing hole) and makes it durable, or flushes the
    /// stream; returns the length.
    pub(crate) fn finish(mut self, len: u64) -> Result<u64> {
        self.skip_to(len)?;
        self.flush_pending()?;
        let name = self.name.clone();
        if let Some(w) = self.writeback.take() {
            w.stop();
        }
        match &mut self.out {
            Output::File { file, sync, .. } => {
                file.set_len(len.max(self.pos))
                    .map_err(|e| Error::io(&name, "set the length", e))?;
                // Durable on return (qemu-img convert leaves its output to the page cache).
                if *sync {
                    file.sync_data().map_err(|e| Error::io(&name, "sync", e))?;
                }
                file.seek(SeekFrom::End(0))
                    .map_err(|e| Error::io(&name, "seek", e))?;
            }
            Output::Stream(w) => w.flush().map_err(|e| Error::io(&name, "flush", e))?,
        }
        Ok(self.pos.max(len))
    }
}
