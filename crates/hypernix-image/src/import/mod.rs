//! Importing a qcow2, VMDK or VHDX image from a pipe into a raw file, reading the pipe once,
//! front to back, with no temporary file.
//!
//! 1. The format comes from the stream's first bytes ([`Format::from_magic`]).
//! 2. A VMDK with markers (streamOptimized) names each grain's guest sector in the marker
//!    before it: each grain is inflated and written as it arrives ([`vmdk`]).
//! 3. qcow2, VHDX and plain VMDK sparse extents map guest offsets through tables at offsets
//!    the header gives ([`mapped`]): each table is parsed when the stream reaches it, and
//!    each data cluster, block or grain is written once both it and its table entry have
//!    been read. Bytes met before the table that places them wait in memory, up to
//!    a budget ([`BUDGET`] from the command line); past it the import fails and asks for a
//!    file instead.
//! 4. Zero chunks are not written (they stay holes); the file gets the virtual size and is
//!    `fdatasync`ed.

mod mapped;
mod tables;
mod vmdk;

use std::io::Read;

use crate::io::is_zero;
use crate::sink::Sink;
use crate::{CHUNK, Error, Format, Options, Output, Result, Summary};

/// The most bytes the command line holds in memory while their place is not yet known.
pub const BUDGET: usize = 256 << 20;

/// Imports the `format` image arriving on `input` (named `name`) into the raw file `out`,
/// holding at most `budget` bytes whose place is not yet known.
pub fn import(
    input: Box<dyn Read + Send>,
    name: &str,
    format: Format,
    out: Output,
    opts: &Options,
    budget: usize,
) -> Result<Summary> {
    if !out.seekable() {
        return Err(Error::Usage(format!(
            "a {format} stream is imported into a file; give an output file"
        )));
    }
    let mut input = Input {
        input,
        pos: 0,
        name: name.to_string(),
        format,
        budget,
    };
    let mut target = Target {
        sink: Sink::new(out),
        size: opts.size,
        force: opts.force,
        data: 0,
        source: name.to_string(),
    };
    let size = match format {
        Format::Raw => {
            return Err(Error::Usage(
                "internal: a raw stream is converted, not imported".into(),
            ));
        }
        Format::Vmdk => vmdk::import(&mut input, &mut target)?,
        Format::Qcow2 | Format::Vhdx => mapped::import(&mut input, &mut target)?,
    };
    let size = opts.size.unwrap_or(size);
    let data = target.data;
    let output_bytes = target.sink.finish(size)?;
    Ok(Summary {
        format: Format::Raw,
        virtual_size: size,
        data_bytes: data,
        zero_bytes: size.saturating_sub(data),
        output_bytes,
        passes: 1,
    })
}

/// The stream being imported, with its position.
pub(crate) struct Input {
    input: Box<dyn Read + Send>,
    pos: u64,
    name: String,
    format: Format,
    /// The most bytes held while their place is not yet known.
    budget: usize,
}

impl Input {
    /// Reads into `buf` until it is full or the stream ends; returns the bytes read.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.input.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let at = self.pos + done as u64;
                    return Err(Error::io(&self.name, format!("read at byte {at}"), e));
                }
            }
        }
        self.pos += done as u64;
        Ok(done)
    }

    /// Fills `buf` or fails naming `what` the stream ended inside.
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let at = self.pos;
        let n = self.read(buf)?;
        if n < buf.len() {
            return Err(self.bad(
                at,
                format!(
                    "the stream ends inside the {what} ({n} of {} bytes)",
                    buf.len()
                ),
            ));
        }
        Ok(())
    }

    /// A format violation at byte `at` of the stream.
    fn bad(&self, at: u64, what: impl Into<String>) -> Error {
        Error::invalid(&self.name, self.format, at, what)
    }

    /// The error for more than the budget held while waiting for `what`.
    fn over_budget(&self, what: &str) -> Error {
        Error::unsupported(
            &self.name,
            self.format,
            format!(
                "more than {} MiB of data before {what} (read in one pass from a pipe)",
                self.budget >> 20
            ),
            "pass the image as a file instead of on stdin",
        )
    }
}

/// The raw file guest bytes are written into.
pub(crate) struct Target {
    sink: Sink,
    /// The requested size (`--size`), if any.
    size: Option<u64>,
    force: bool,
    /// Guest bytes written as data.
    data: u64,
    source: String,
}

impl Target {
    /// Writes `bytes` at guest `offset` of a disk of `disk` bytes, skipping zero chunks.
    fn put(&mut self, offset: u64, bytes: &[u8], disk: u64) -> Result<()> {
        let end = self.size.unwrap_or(disk).min(disk);
        let keep = end.saturating_sub(offset).min(bytes.len() as u64) as usize;
        if !self.force && !is_zero(&bytes[keep..]) {
            return Err(Error::WouldLoseData {
                name: self.source.clone(),
                size: end,
                offset: offset + keep as u64,
            });
        }
        for (i, piece) in bytes[..keep].chunks(CHUNK).enumerate() {
            if !is_zero(piece) {
                self.sink.write_at(piece, offset + (i * CHUNK) as u64)?;
                self.data += piece.len() as u64;
            }
        }
        Ok(())
    }
}
