//! The VMDK reader: hosted sparse extents as qemu-img makes them, monolithicSparse (plain
//! grains, zeroed-grain entries) and streamOptimized (deflated grains behind markers, the
//! grain directory found through the footer). Descriptor-only VMDKs (extents in other
//! files) are refused.

use std::fs::File;

use flate2::{Decompress, FlushDecompress, Status};

use super::{FLAG_MARKERS, FLAG_ZERO_GRAIN, GD_AT_END, Header, MAGIC, MARKER_FOOTER};
use crate::io::{file_len, le32, read_exact_at};
use crate::{Error, Extent, Format, Reader, Result};

/// The largest grain qemu accepts: 2 MiB (4096 sectors).
pub(crate) const MAX_GRAIN_SECTORS: u64 = 4096;
/// The most grain directory entries read into memory.
pub(crate) const MAX_GD_ENTRIES: u64 = 8 << 20;

/// A VMDK sparse extent opened for reading.
pub struct VmdkReader {
    file: File,
    name: String,
    file_len: u64,
    header: Header,
    gd: Vec<u32>,
    /// The last grain table read, by its sector.
    gt: Option<(u32, Vec<u32>)>,
    inflate: Decompress,
    compressed: Vec<u8>,
    /// The last compressed grain inflated, by its sector.
    grain: Option<(u32, Vec<u8>)>,
}

impl VmdkReader {
    /// Opens `file` (named `name`) as a VMDK sparse extent.
    pub fn new(file: File, name: &str) -> Result<VmdkReader> {
        let bad = |offset: u64, what: String| Error::invalid(name, Format::Vmdk, offset, what);
        let file_len = file_len(&file, name)?;
        let mut b = [0u8; 512];
        read_exact_at(&file, name, Format::Vmdk, &mut b, 0, "header")?;
        if le32(&b, 0) != MAGIC {
            return Err(bad(
                0,
                "bad magic (expected KDMV); a text descriptor VMDK is not supported".into(),
            ));
        }
        let mut header = Header::parse(&b);
        if header.gd_offset == GD_AT_END {
            if file_len < 1536 {
                return Err(bad(
                    file_len,
                    "the file is too short to hold the footer its header announces".into(),
                ));
            }
            let at = file_len - 1536;
            let mut f = [0u8; 1024];
            read_exact_at(&file, name, Format::Vmdk, &mut f, at, "footer")?;
            let footer: [u8; 512] = f[512..].try_into().unwrap_or([0; 512]);
            if le32(&f, 12) != MARKER_FOOTER || le32(&footer, 0) != MAGIC {
                return Err(bad(
                    at,
                    "no footer marker before the end-of-stream marker; is the stream complete?"
                        .into(),
                ));
            }
            header = Header::parse(&footer);
        }
        header.check(name)?;
        let entries = header
            .capacity
            .div_ceil(header.grain * u64::from(header.gtes_per_gt));
        let gd_at = header.gd_offset.saturating_mul(512);
        if entries > MAX_GD_ENTRIES || gd_at.saturating_add(entries * 4) > file_len {
            return Err(bad(
                56,
                format!(
                    "the grain directory at sector {} ({entries} entries) lies past the end of the {file_len}-byte file",
                    header.gd_offset
                ),
            ));
        }
        let mut raw = vec![0u8; (entries * 4) as usize];
        read_exact_at(
            &file,
            name,
            Format::Vmdk,
            &mut raw,
            gd_at,
            "grain directory",
        )?;
        Ok(VmdkReader {
            file,
            name: name.to_string(),
            file_len,
            header,
            gd: raw.chunks_exact(4).map(|e| le32(e, 0)).collect(),
            gt: None,
            inflate: Decompress::new(true),
            compressed: Vec::new(),
            grain: None,
        })
    }

    fn grain_bytes(&self) -> u64 {
        self.header.grain * 512
    }

    fn bad(&self, offset: u64, what: String) -> Error {
        Error::invalid(&self.name, Format::Vmdk, offset, what)
    }

    /// The GT entry (a sector; 0 unallocated, 1 maybe zeroed) of guest grain `index`.
    fn gt_entry(&mut self, index: u64) -> Result<u32> {
        let per = u64::from(self.header.gtes_per_gt);
        let table = self.gd.get((index / per) as usize).copied().unwrap_or(0);
        if table == 0 {
            return Ok(0);
        }
        if self.gt.as_ref().map(|(at, _)| *at) != Some(table) {
            let at = u64::from(table) * 512;
            if at + per * 4 > self.file_len {
                return Err(self.bad(
                    at,
                    format!(
                        "grain directory entry {} points past the end of the {}-byte file",
                        index / per,
                        self.file_len
                    ),
                ));
            }
            let mut raw = vec![0u8; (per * 4) as usize];
            read_exact_at(
                &self.file,
                &self.name,
                Format::Vmdk,
                &mut raw,
                at,
                "grain table",
            )?;
            self.gt = Some((table, raw.chunks_exact(4).map(|e| le32(e, 0)).collect()));
        }
        Ok(self
            .gt
            .as_ref()
            .map_or(0, |(_, t)| t[(index % per) as usize]))
    }

    /// Inflates the compressed grain at `sector` into the cache.
    fn inflate(&mut self, sector: u32) -> Result<&[u8]> {
        if self.grain.as_ref().map(|(s, _)| *s) != Some(sector) {
            let at = u64::from(sector) * 512;
            let grain = self.grain_bytes();
            let (start, len) = if self.header.flags & FLAG_MARKERS != 0 {
                let mut m = [0u8; 12];
                read_exact_at(
                    &self.file,
                    &self.name,
                    Format::Vmdk,
                    &mut m,
                    at,
                    "grain marker",
                )?;
                (at + 12, u64::from(le32(&m, 8)))
            } else {
                (at, (2 * grain).min(self.file_len.saturating_sub(at)))
            };
            if len == 0 || len > 2 * grain || start + len > self.file_len {
                return Err(self.bad(at, format!("the compressed grain at sector {sector} ({len} bytes) is empty, too large or past the end of the file")));
            }
            self.compressed.resize(len as usize, 0);
            read_exact_at(
                &self.file,
                &self.name,
                Format::Vmdk,
                &mut self.compressed,
                start,
                "compressed grain",
            )?;
            let mut out = vec![0u8; grain as usize];
            self.inflate.reset(true);
            let status =
                self.inflate
                    .decompress(&self.compressed, &mut out, FlushDecompress::Finish);
            if !matches!(status, Ok(Status::StreamEnd)) {
                return Err(self.bad(
                    at,
                    format!("the grain at sector {sector} does not inflate (zlib: {status:?})"),
                ));
            }
            self.grain = Some((sector, out));
        }
        Ok(self.grain.as_ref().map_or(&[][..], |(_, g)| g))
    }
}

impl Reader for VmdkReader {
    fn virtual_size(&self) -> u64 {
        self.header.capacity * 512
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<Extent> {
        let grain = self.grain_bytes();
        let mut extent = Extent::Zero;
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at % grain) as usize;
            let n = (buf.len() - done).min(grain as usize - within);
            let piece = &mut buf[done..done + n];
            let sector = self.gt_entry(at / grain)?;
            let zeroed = sector == 1 && self.header.flags & FLAG_ZERO_GRAIN != 0;
            if sector == 0 || zeroed {
                piece.fill(0);
            } else if self.header.compression != 0 {
                piece.copy_from_slice(&self.inflate(sector)?[within..within + n]);
                extent = Extent::Data;
            } else {
                let from = u64::from(sector) * 512 + within as u64;
                if from >= self.file_len {
                    return Err(self.bad(from, format!("guest byte {at} maps to sector {sector}, past the end of the {}-byte file", self.file_len)));
                }
                let have = (self.file_len - from).min(n as u64) as usize;
                read_exact_at(
                    &self.file,
                    &self.name,
                    Format::Vmdk,
                    &mut piece[..have],
                    from,
                    "grain",
                )?;
                piece[have..].fill(0);
                extent = Extent::Data;
            }
            done += n;
        }
        Ok(extent)
    }
}

impl Header {
    /// Refuses a header whose fields no reader can follow.
    pub(crate) fn check(&self, name: &str) -> Result<()> {
        let bad = |offset: u64, what: String| Error::invalid(name, Format::Vmdk, offset, what);
        if self.capacity == 0 {
            return Err(Error::unsupported(
                name,
                Format::Vmdk,
                "extents in other files (a descriptor-only VMDK)",
                "convert it with `qemu-img convert -O vmdk -o subformat=monolithicSparse` first",
            ));
        }
        if !(1..=3).contains(&self.version) {
            return Err(Error::unsupported(
                name,
                Format::Vmdk,
                format!("version {}", self.version),
                "only versions 1 to 3 exist; is the file damaged?",
            ));
        }
        if self.grain == 0 || self.grain > MAX_GRAIN_SECTORS || !self.grain.is_power_of_two() {
            return Err(bad(
                20,
                format!(
                    "grain size {} sectors is not a power of two up to {MAX_GRAIN_SECTORS}",
                    self.grain
                ),
            ));
        }
        if self.gtes_per_gt == 0 || self.gtes_per_gt > 1 << 16 {
            return Err(bad(
                44,
                format!(
                    "{} grain table entries per table is absurd",
                    self.gtes_per_gt
                ),
            ));
        }
        if self.capacity > (1 << 56) / 512 {
            return Err(bad(
                12,
                format!("capacity {} sectors is absurd", self.capacity),
            ));
        }
        if self.compression > 1 {
            return Err(Error::unsupported(
                name,
                Format::Vmdk,
                format!("compression algorithm {}", self.compression),
                "only deflate exists; is the file damaged?",
            ));
        }
        Ok(())
    }
}
