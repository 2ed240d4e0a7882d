//! Byte-level helpers shared by the formats: positioned reads with errors that name the
//! offset, zero detection, and an output that is a file or a stream.

use std::fs::File;
use std::io::Write;
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
        /// `fdatasync` it before returning; `false` leaves it to the page cache, as
        /// `qemu-img convert` does by default (faster, not yet on disk on return).
        sync: bool,
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
