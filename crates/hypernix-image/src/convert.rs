//! The conversion pipeline.
//!
//! 1. Decide the output size: the source's, or `--size`. A shrink first reads the part that
//!    would be cut and refuses when it holds data (unless forced).
//! 2. For a qcow2 stream, run a planning pass (see [`crate::qcow2::write`]).
//! 3. Read the source in guest order, [`CHUNK`] by chunk; a chunk the reader reports as
//!    unallocated or that holds only zeros is skipped; each run of the others goes to the
//!    writer in one call, so a file writer can `pwrite` it straight from the read buffer.
//! 4. Past the source's end (a grow) everything is zeros: nothing is written.
//! 5. The writer writes its metadata; a pipe input is drained to check nothing was cut.

use std::sync::mpsc;

use crate::io::is_zero;
use crate::qcow2::write::Qcow2Writer;
use crate::{CHUNK, Error, Extent, Format, Output, Reader, Result, Writer};

/// How to convert.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The output's virtual size (default: the source's).
    pub size: Option<u64>,
    /// Shrink even when the cut part holds data.
    pub force: bool,
    /// Compress (qcow2 clusters with zlib; VMDK grains are always compressed).
    pub compress: bool,
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The output format.
    pub format: Format,
    /// The output's virtual size.
    pub virtual_size: u64,
    /// Guest bytes written as data.
    pub data_bytes: u64,
    /// Guest bytes skipped as zeros.
    pub zero_bytes: u64,
    /// The output's length in bytes.
    pub output_bytes: u64,
    /// Passes over the input (2 for a qcow2 stream).
    pub passes: u32,
}

/// Converts `reader` into `format` on `out`. `progress` is called with (bytes done, bytes
/// to do) across all passes.
pub fn convert(
    reader: &mut dyn Reader,
    source: &str,
    out: Output,
    format: Format,
    opts: &Options,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Summary> {
    let src_size = reader.virtual_size();
    let size = opts.size.unwrap_or(src_size);
    if size < src_size && !opts.force && !reader.sequential() {
        check_tail(reader, source, size)?;
    }
    let stream_qcow2 = format == Format::Qcow2 && !out.seekable();
    if stream_qcow2 && reader.sequential() {
        return Err(Error::Usage(format!(
            "qcow2 to a pipe needs a seekable input (two passes); {source} is a pipe: write to a file with -o, or stream vmdk or raw instead"
        )));
    }
    let passes = if stream_qcow2 { 2 } else { 1 };
    let total = size * passes;
    let plan = if stream_qcow2 {
        let mut planner = Qcow2Writer::planning(size, opts.compress);
        pump(reader, &mut planner, size, 0, total, progress)?;
        Some(planner.plan()?)
    } else {
        None
    };
    let mut writer = crate::create(out, format, size, opts.compress, plan)?;
    let done = size * (passes - 1);
    let data_bytes = pump(reader, writer.as_mut(), size, done, total, progress)?;
    if reader.sequential() && !opts.force {
        drain(reader, source, size.min(src_size))?;
    }
    let output_bytes = writer.finish()?;
    Ok(Summary {
        format,
        virtual_size: size,
        data_bytes,
        zero_bytes: size - data_bytes,
        output_bytes,
        passes: passes as u32,
    })
}

/// Guest bytes read at once: large reads, then zero detection chunk by chunk.
const SPAN: usize = 16 * CHUNK;

/// Spans in flight between the reading thread and the writing one.
const SPANS: usize = 4;

/// One span read: its guest offset, length, whether the reader knows it is zeros, bytes.
type Span = (u64, usize, bool, Vec<u8>);

/// Feeds the non-zero chunks of the first `size` bytes to `writer`; returns the data bytes.
/// A thread reads spans ahead while this one checks zeros and writes, so reading and
/// writing overlap, as qemu-img's parallel requests do.
fn pump(
    reader: &mut dyn Reader,
    writer: &mut dyn Writer,
    size: u64,
    done: u64,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<u64> {
    let src_size = reader.virtual_size();
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Result<Span>>(SPANS);
        let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
        for _ in 0..SPANS {
            let _ = empty_tx.send(vec![0u8; SPAN]);
        }
        scope.spawn(move || {
            let mut offset = 0;
            while offset < size {
                let Ok(mut buf) = empty_rx.recv() else { return };
                let len = (size - offset).min(SPAN as u64) as usize;
                let readable = src_size.saturating_sub(offset).min(len as u64) as usize;
                let zero = if readable == 0 {
                    Ok(true)
                } else {
                    reader
                        .read_at(offset, &mut buf[..readable])
                        .map(|e| e == Extent::Zero)
                };
                buf[readable..len].fill(0);
                let (failed, skip) = (zero.is_err(), matches!(zero, Ok(true)));
                if full_tx.send(zero.map(|z| (offset, len, z, buf))).is_err() || failed {
                    return;
                }
                offset += len as u64;
                if skip {
                    // A hole: jump to the next data (chunk-aligned), or to the end past the source.
                    let next = if offset >= src_size {
                        size
                    } else {
                        reader.next_data(offset)
                    };
                    let next = next - next % CHUNK as u64;
                    offset = next.clamp(offset, size);
                }
            }
        });
        let mut data = 0;
        for span in full_rx.iter() {
            let (offset, len, zero, buf) = span?;
            if !zero {
                data += write_runs(writer, offset, &buf[..len])?;
            }
            progress(done + offset + len as u64, total);
            let _ = empty_tx.send(buf);
        }
        Ok(data)
    })
}

/// Writes the runs of non-zero chunks of `span` (at guest `offset`); returns their bytes.
fn write_runs(writer: &mut dyn Writer, offset: u64, span: &[u8]) -> Result<u64> {
    let mut data = 0;
    let mut run: Option<usize> = None;
    for (i, chunk) in span.chunks(CHUNK).enumerate() {
        match (is_zero(chunk), run) {
            (false, None) => run = Some(i * CHUNK),
            (true, Some(start)) => {
                writer.write_chunks(offset + start as u64, &span[start..i * CHUNK])?;
                data += (i * CHUNK - start) as u64;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        writer.write_chunks(offset + start as u64, &span[start..])?;
        data += (span.len() - start) as u64;
    }
    Ok(data)
}

/// Refuses a shrink to `size` when the part cut off holds data.
fn check_tail(reader: &mut dyn Reader, source: &str, size: u64) -> Result<()> {
    let end = reader.virtual_size();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = size;
    while offset < end {
        let len = (end - offset).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..len];
        if reader.read_at(offset, chunk)? == Extent::Data && !is_zero(chunk) {
            return Err(Error::WouldLoseData {
                name: source.to_string(),
                size,
                offset,
            });
        }
        offset += len as u64;
    }
    Ok(())
}

/// Reads a pipe to its end from `offset`; data there would be lost.
fn drain(reader: &mut dyn Reader, source: &str, mut offset: u64) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    while reader.read_at(offset, &mut buf)? == Extent::Data {
        if !is_zero(&buf) {
            return Err(Error::WouldLoseData {
                name: source.to_string(),
                size: offset,
                offset,
            });
        }
        offset += CHUNK as u64;
    }
    Ok(())
}
