//! Byte-level helpers shared by the formats: positioned reads with errors that name the
//! offset, zero detection, and an output that is a file or a stream.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use crate::{Error, Format, Result};

/// Where an image is written.
pub enum Output {
    /// A regular file: writers may seek back to fill in metadata.
    File {
        /// The open file (truncated).
        file: File,
        /// Its name, for errors.
        name: String,
    },
    /// A pipe or stdout: bytes go out once, in order.
    Stream(Box<dyn Write + Send>),
}

impl Output {
    /// Whether writers may seek.
    pub fn seekable(&self) -> bool {
        matches!(self, Output::File { .. })
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
}

/// How many appended bytes a file sink gathers before one `pwrite`.
const GATHER: usize = 2 << 20;

/// Zeros to write where a stream cannot seek over a gap.
static ZEROS: [u8; crate::CHUNK] = [0; crate::CHUNK];

impl Sink {
    pub(crate) fn new(out: Output) -> Sink {
        let name = match &out {
            Output::File { name, .. } => name.clone(),
            Output::Stream(_) => "-".to_string(),
        };
        Sink {
            out,
            pos: 0,
            name,
            pending: Vec::new(),
            pending_at: 0,
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

    /// Appends `data` at the current position.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.out {
            Output::File { .. } => {
                if self.pending_at + self.pending.len() as u64 != self.pos {
                    self.flush_pending()?;
                    self.pending_at = self.pos;
                }
                self.pending.extend_from_slice(data);
                if self.pending.len() >= GATHER {
                    self.flush_pending()?;
                    self.pending_at = self.pos + data.len() as u64;
                }
            }
            Output::Stream(w) => w
                .write_all(data)
                .map_err(|e| Error::io(&self.name, format!("write at byte {}", self.pos), e))?,
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    /// Writes the gathered appends of a file.
    fn flush_pending(&mut self) -> Result<()> {
        if let Output::File { file, .. } = &mut self.out
            && !self.pending.is_empty()
        {
            file.write_all_at(&self.pending, self.pending_at)
                .map_err(|e| {
                    Error::io(&self.name, format!("write at byte {}", self.pending_at), e)
                })?;
            self.pending.clear();
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
        match &mut self.out {
            Output::File { file, .. } => file
                .write_all_at(data, offset)
                .map_err(|e| Error::io(&self.name, format!("write at byte {offset}"), e)),
            Output::Stream(_) => Err(Error::Usage(format!(
                "internal: a stream cannot be rewritten at byte {offset}"
            ))),
        }
    }

    /// Sets a file's length to `len` (a trailing hole), syncs it or flushes the stream;
    /// returns the length.
    pub(crate) fn finish(mut self, len: u64) -> Result<u64> {
        self.skip_to(len)?;
        self.flush_pending()?;
        let name = self.name.clone();
        match &mut self.out {
            Output::File { file, .. } => {
                file.set_len(len.max(self.pos))
                    .map_err(|e| Error::io(&name, "set the length", e))?;
                // Durable on return, as qemu-img's closing flush makes its outputs.
                file.sync_data().map_err(|e| Error::io(&name, "sync", e))?;
                file.seek(SeekFrom::End(0))
                    .map_err(|e| Error::io(&name, "seek", e))?;
            }
            Output::Stream(w) => w.flush().map_err(|e| Error::io(&name, "flush", e))?,
        }
        Ok(self.pos.max(len))
    }
}

/// Whether every byte of `buf` is zero (16-byte words OR-ed in runs of 16, which the
/// compiler vectorises, with an early exit between runs).
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    let (words, tail) = buf.as_chunks::<16>();
    words
        .chunks(16)
        .all(|run| run.iter().fold(0u128, |a, w| a | u128::from_ne_bytes(*w)) == 0)
        && tail.iter().all(|&b| b == 0)
}

/// Reads exactly `buf.len()` bytes of `file` at `offset`; a short file is an invalid image.
pub(crate) fn read_exact_at(
    file: &File,
    name: &str,
    format: Format,
    buf: &mut [u8],
    offset: u64,
    what: &str,
) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = file
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(|e| Error::io(name, format!("read {what} at byte {offset}"), e))?;
        if n == 0 {
            return Err(Error::invalid(
                name,
                format,
                offset,
                format!(
                    "the file ends inside the {what} ({} of {} bytes)",
                    done,
                    buf.len()
                ),
            ));
        }
        done += n;
    }
    Ok(())
}

/// The file's length.
pub(crate) fn file_len(file: &File, name: &str) -> Result<u64> {
    Ok(file
        .metadata()
        .map_err(|e| Error::io(name, "stat", e))?
        .len())
}

/// Little-endian field readers over a header buffer.
pub(crate) fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// A little-endian u32 at `at`.
pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

/// A little-endian u64 at `at`.
pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// A big-endian u32 at `at`.
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

/// A big-endian u64 at `at`.
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// `data` padded with zeros to a whole chunk (the disk's last chunk may be short).
pub(crate) fn whole_chunk<'a>(data: &'a [u8], pad: &'a mut Vec<u8>) -> &'a [u8] {
    if data.len() >= crate::CHUNK {
        return &data[..crate::CHUNK];
    }
    pad.clear();
    pad.extend_from_slice(data);
    pad.resize(crate::CHUNK, 0);
    pad
}
