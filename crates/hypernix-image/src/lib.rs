//! Streaming disk image conversion between raw, qcow2, VMDK and VHDX.
//!
//! A [`Reader`] presents an image's guest-visible bytes and says which ranges are known to be
//! zeros; a [`Writer`] receives the non-zero chunks of a guest disk in ascending order and
//! lays them out in its format. [`convert::convert`] joins the two: it reads the source in
//! [`CHUNK`]-sized pieces, detects zeros, applies a resize and feeds the writer, so nothing
//! but metadata is ever buffered and no temporary file is made. [`open`] probes a format
//! from its magic; [`create`] makes a writer for an output that is a file or a stream.
//! [`import::import`] reads a qcow2, VMDK or VHDX image from a pipe, once, into a raw file.
//! `docs/image-formats.md` describes what each format's reader and writer support.

#![deny(missing_docs)]

pub mod convert;
mod deflate;
pub mod error;
mod format;
pub mod import;
mod io;
pub mod qcow2;
pub mod raw;
mod sink;
pub mod vhdx;
pub mod vmdk;

use std::fs::File;
use std::path::Path;

pub use convert::{Options, Summary, convert};
pub use error::{Error, Result};
pub use format::{Format, probe};
pub use io::Output;

/// The pipeline's unit: guest bytes are read, zero-checked and written 64 KiB at a time.
pub const CHUNK: usize = 64 * 1024;

/// Whether a range of guest bytes holds data or is known to read as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The buffer was filled from the image (it may still hold only zeros).
    Data,
    /// The range is unallocated or marked zero; the buffer was zero-filled.
    Zero,
}

/// An image's guest-visible contents.
pub trait Reader: Send {
    /// The guest disk's size in bytes.
    fn virtual_size(&self) -> u64;
    /// Fills `buf` with the guest bytes at `offset` (within the virtual size).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<Extent>;
    /// The first offset at or after `offset` that may hold data, so long holes are skipped
    /// without reading them (default: `offset`, nothing known).
    fn next_data(&mut self, offset: u64) -> u64 {
        offset
    }
    /// Whether reads must come in ascending order without gaps (a pipe).
    fn sequential(&self) -> bool {
        false
    }
}

/// An image being written: runs of non-zero chunks arrive in ascending guest order.
pub trait Writer {
    /// Writes `data`, one or more consecutive non-zero chunks, at guest `offset` (a multiple
    /// of [`CHUNK`]; `data` is a multiple of [`CHUNK`] long unless it ends the disk).
    fn write_chunks(&mut self, offset: u64, data: &[u8]) -> Result<()>;
    /// Writes the metadata and flushes; returns the bytes the output holds.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// Opens the image at `path` for reading as `format`, or as the probed format.
pub fn open(path: &Path, format: Option<Format>) -> Result<Box<dyn Reader>> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(&name, "open", e))?;
    let format = match format {
        Some(f) => f,
        None => probe(&file, &name)?,
    };
    open_file(file, &name, format)
}

/// Opens an already open `file` named `name` as `format`.
pub fn open_file(file: File, name: &str, format: Format) -> Result<Box<dyn Reader>> {
    Ok(match format {
        Format::Raw => Box::new(raw::RawReader::new(file, name)?),
        Format::Qcow2 => Box::new(qcow2::read::Qcow2Reader::new(file, name)?),
        Format::Vmdk => Box::new(vmdk::read::VmdkReader::new(file, name)?),
        Format::Vhdx => Box::new(vhdx::read::VhdxReader::new(file, name)?),
    })
}

/// Makes a writer of `format` for a disk of `size` bytes into `out`. `plan` is what
/// [`convert::plan`] found in a first pass; only a qcow2 stream needs it.
pub fn create(
    out: Output,
    format: Format,
    size: u64,
    compress: bool,
    plan: Option<qcow2::write::Plan>,
) -> Result<Box<dyn Writer>> {
    Ok(match format {
        Format::Raw => Box::new(raw::RawWriter::new(out, size)?),
        Format::Qcow2 => Box::new(qcow2::write::Qcow2Writer::new(out, size, compress, plan)?),
        Format::Vmdk => Box::new(vmdk::write::VmdkWriter::new(out, size)?),
        Format::Vhdx => Box::new(vhdx::write::VhdxWriter::new(out, size)?),
    })
}
