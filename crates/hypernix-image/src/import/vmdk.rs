//! A VMDK on a pipe. With markers (streamOptimized) each grain carries its guest sector,
//! so it is written as it arrives and the tables are skipped; the end is the end-of-stream
//! marker, or, where the grain tables precede the grains (as qemu-img writes them to a
//! file), the stream's end once every grain they list has come. Without markers
//! (monolithicSparse) the grain directory and tables place the grains ([`super::mapped`]).

use flate2::{Decompress, FlushDecompress, Status};

use super::{Input, Target, mapped};
use crate::Result;
use crate::io::{le32, le64};
use crate::vmdk::{
    FLAG_MARKERS, FLAG_ZERO_GRAIN, GD_AT_END, Header, MAGIC, MARKER_EOS, MARKER_FOOTER, MARKER_GD,
    MARKER_GT,
};

/// Imports a VMDK from `input` into `target`; returns the disk's size.
pub(super) fn import(input: &mut Input, target: &mut Target) -> Result<u64> {
    let mut b = [0u8; 512];
    input.read_exact(&mut b, "header")?;
    if le32(&b, 0) != MAGIC {
        return Err(input.bad(0, "bad magic (expected KDMV)"));
    }
    let header = Header::parse(&b);
    header.check(&input.name)?;
    if header.flags & FLAG_MARKERS == 0 {
        return mapped::import_vmdk(input, target, header, b.to_vec());
    }
    let disk = header.capacity * 512;
    let grain = (header.grain * 512) as usize;
    // The descriptor and, as qemu-img lays them out, the grain tables precede the grains.
    let overhead = header.overhead.saturating_mul(512).max(512);
    if overhead > input.budget as u64 {
        return Err(input.over_budget("its first grain"));
    }
    let mut prefix = vec![0u8; overhead as usize];
    prefix[..512].copy_from_slice(&b);
    input.read_exact(&mut prefix[512..], "descriptor and grain tables")?;
    // How many grains must arrive: the end-of-stream marker says so, else the tables.
    let expected = match header.gd_offset {
        GD_AT_END => None,
        _ => listed_grains(&prefix, &header),
    };
    let mut seen = 0;
    let mut inflate = Decompress::new(true);
    let mut out = vec![0u8; grain];
    let mut compressed = Vec::new();
    loop {
        let at = input.pos;
        let mut m = [0u8; 512];
        let n = input.read(&mut m)?;
        if n == 0 && header.gd_offset != GD_AT_END && expected.is_none_or(|e| seen >= e) {
            return Ok(disk);
        }
        if n < m.len() {
            return Err(input.bad(
                at,
                format!(
                    "the stream ends after {seen} grains{}, without an end-of-stream marker",
                    expected.map_or(String::new(), |e| format!(" of the {e} its tables list"))
                ),
            ));
        }
        let (value, size) = (le64(&m, 0), le32(&m, 8) as usize);
        if size == 0 {
            match le32(&m, 12) {
                MARKER_EOS => {
                    drain(input)?;
                    return Ok(disk);
                }
                MARKER_GT | MARKER_GD | MARKER_FOOTER => {
                    skip(
                        input,
                        input.pos.saturating_add(value.saturating_mul(512)),
                        "table",
                    )?;
                }
                kind => return Err(input.bad(at, format!("unknown marker type {kind}"))),
            }
            continue;
        }
        if size > 2 * grain || value % header.grain != 0 || value >= header.capacity {
            return Err(input.bad(
                at,
                format!(
                    "a grain marker for sector {value} with {size} bytes is unaligned, past the disk's end or too large"
                ),
            ));
        }
        compressed.clear();
        compressed.extend_from_slice(&m[12..(12 + size).min(512)]);
        if size > 500 {
            let from = compressed.len();
            compressed.resize(size, 0);
            input.read_exact(&mut compressed[from..], "compressed grain")?;
        }
        skip(input, input.pos.next_multiple_of(512), "grain padding")?;
        inflate.reset(true);
        out.fill(0);
        let status = inflate.decompress(&compressed, &mut out, FlushDecompress::Finish);
        if !matches!(status, Ok(Status::StreamEnd)) {
            return Err(input.bad(
                at,
                format!("the grain for sector {value} does not inflate (zlib: {status:?})"),
            ));
        }
        target.put(value * 512, &out, disk)?;
        seen += 1;
    }
}

/// The number of grains the grain tables in `prefix` (the stream's first bytes) list;
/// none when the tables lie beyond it.
fn listed_grains(prefix: &[u8], header: &Header) -> Option<u64> {
    let per = u64::from(header.gtes_per_gt);
    let grain = header.grain * 512;
    let entries = header.capacity.div_ceil(header.grain * per);
    let table = |sector: u64, len: u64| {
        let at = usize::try_from(sector.checked_mul(512)?).ok()?;
        prefix.get(at..at.checked_add(usize::try_from(len).ok()?)?)
    };
    let zeroed = header.flags & FLAG_ZERO_GRAIN != 0;
    let mut count = 0;
    for (i, e) in table(header.gd_offset, entries * 4)?
        .chunks_exact(4)
        .enumerate()
    {
        let gt = u64::from(le32(e, 0));
        if gt == 0 {
            continue;
        }
        for (j, e) in table(gt, per * 4)?.chunks_exact(4).enumerate() {
            let sector = le32(e, 0);
            let guest = (i as u64 * per + j as u64) * grain;
            if guest < header.capacity * 512 && sector != 0 && !(sector == 1 && zeroed) {
                count += 1;
            }
        }
    }
    Some(count)
}

/// Reads the stream to its end, so the writer of the pipe is not cut off.
pub(super) fn drain(input: &mut Input) -> Result<()> {
    let mut buf = [0u8; 8 << 10];
    while input.read(&mut buf)? > 0 {}
    Ok(())
}

/// Reads and drops the stream's bytes up to byte `to`.
fn skip(input: &mut Input, to: u64, what: &str) -> Result<()> {
    let mut buf = [0u8; 8 << 10];
    while input.pos < to {
        let n = (to - input.pos).min(buf.len() as u64) as usize;
        input.read_exact(&mut buf[..n], what)?;
    }
    Ok(())
}
