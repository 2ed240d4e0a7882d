//! The VHDX reader: dynamic and fixed disks as qemu-img makes them. Differencing disks
//! and images whose log needs replaying are refused with a message saying what to do.

use std::fs::File;

use super::{
    BAT_REGION, FILE_MAGIC, FILE_PARAMETERS, HEADER_MAGIC, HEADER_SIZE, HEADERS, LOGICAL_SECTOR,
    METADATA_MAGIC, METADATA_REGION, MIB, PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT,
    REGION_MAGIC, REGION_TABLE_SIZE, REGION_TABLES, VIRTUAL_DISK_SIZE, bat_index, checksum,
    chunk_ratio,
};
use crate::io::{file_len, le16, le32, le64, read_exact_at};
use crate::{Error, Extent, Format, Reader, Result};

/// The most BAT entries read into memory (256 MiB of table).
const MAX_BAT_ENTRIES: u64 = 32 << 20;

/// A VHDX image opened for reading.
pub struct VhdxReader {
    file: File,
    name: String,
    file_len: u64,
    size: u64,
    block: u64,
    ratio: u64,
    bat: Vec<u64>,
}

/// Bytes from the start of a VHDX that hold both headers and both region tables.
pub(crate) const SECTION: usize = 320 << 10;

/// Where the BAT and the metadata region lie: (offset, length) each.
pub(crate) struct Regions {
    pub(crate) bat: (u64, u64),
    pub(crate) metadata: (u64, u64),
}

impl Regions {
    /// Checks the file identifier, the current header and a region table in `section`, the
    /// first [`SECTION`] bytes of an image of `file_len` bytes (zeros past its end).
    pub(crate) fn parse(section: &[u8], name: &str, file_len: u64) -> Result<Regions> {
        let bad = |offset: u64, what: String| Error::invalid(name, Format::Vhdx, offset, what);
        if section.len() < SECTION || &section[..8] != FILE_MAGIC {
            return Err(bad(0, "bad magic (expected vhdxfile)".into()));
        }
        // The current header: the valid one with the higher sequence number.
        let mut current: Option<&[u8]> = None;
        for at in HEADERS {
            let h = &section[at as usize..at as usize + HEADER_SIZE];
            if le32(h, 0) == HEADER_MAGIC
                && le32(h, 4) == checksum(h)
                && current.is_none_or(|c| le64(h, 8) > le64(c, 8))
            {
                current = Some(h);
            }
        }
        let header = current.ok_or_else(|| {
            bad(
                HEADERS[0],
                "neither header has a valid signature and checksum".into(),
            )
        })?;
        if header[48..64].iter().any(|&b| b != 0) {
            return Err(Error::unsupported(
                name,
                Format::Vhdx,
                "a log to replay (it was not closed cleanly)",
                "replay it with `qemu-img check -r all` first",
            ));
        }
        if le16(header, 66) != 1 {
            return Err(Error::unsupported(
                name,
                Format::Vhdx,
                format!("version {}", le16(header, 66)),
                "only version 1 exists; is the file damaged?",
            ));
        }
        let rt = REGION_TABLES
            .iter()
            .map(|&at| &section[at as usize..at as usize + REGION_TABLE_SIZE])
            .find(|rt| le32(rt, 0) == REGION_MAGIC && le32(rt, 4) == checksum(rt))
            .ok_or_else(|| {
                bad(
                    REGION_TABLES[0],
                    "neither region table has a valid signature and checksum".into(),
                )
            })?;
        let count = le32(rt, 8) as usize;
        if count > 2047 {
            return Err(bad(
                REGION_TABLES[0] + 8,
                format!("{count} region entries is more than a table holds"),
            ));
        }
        let (mut bat, mut metadata) = (None, None);
        for e in rt[16..16 + 32 * count].chunks_exact(32) {
            let region = (le64(e, 16), u64::from(le32(e, 24)));
            if !region.0.is_multiple_of(MIB) || region.0.saturating_add(region.1) > file_len {
                return Err(bad(
                    REGION_TABLES[0],
                    format!(
                        "a region at {} ({} bytes) is unaligned or past the end of the {file_len}-byte file",
                        region.0, region.1
                    ),
                ));
            }
            if e[..16] == BAT_REGION {
                bat = Some(region);
            } else if e[..16] == METADATA_REGION {
                metadata = Some(region);
            } else if le32(e, 28) & 1 != 0 {
                return Err(Error::unsupported(
                    name,
                    Format::Vhdx,
                    "an unknown required region",
                    "convert it with `qemu-img convert` first",
                ));
            }
        }
        let (bat, metadata) = bat.zip(metadata).ok_or_else(|| {
            bad(
                REGION_TABLES[0],
                "the region table lacks the BAT or the metadata region".into(),
            )
        })?;
        Ok(Regions { bat, metadata })
    }
}

impl VhdxReader {
    /// Opens `file` (named `name`) as VHDX: headers, region table, metadata and BAT.
    pub fn new(file: File, name: &str) -> Result<VhdxReader> {
        let file_len = file_len(&file, name)?;
        let mut section = vec![0u8; SECTION];
        let have = file_len.min(SECTION as u64) as usize;
        read_exact_at(
            &file,
            name,
            Format::Vhdx,
            &mut section[..have],
            0,
            "header section",
        )?;
        let regions = Regions::parse(&section, name, file_len)?;
        let (meta_at, meta_len) = regions.metadata;
        let mut m = vec![0u8; Metadata::checked_len(meta_at, meta_len, name)?];
        read_exact_at(
            &file,
            name,
            Format::Vhdx,
            &mut m,
            meta_at,
            "metadata region",
        )?;
        let meta = Metadata::parse(&m, meta_at, name)?;
        let (bat_at, entries) = meta.bat_entries(regions.bat, name)?;
        let mut raw = vec![0u8; (entries * 8) as usize];
        read_exact_at(&file, name, Format::Vhdx, &mut raw, bat_at, "BAT")?;
        Ok(VhdxReader {
            file,
            name: name.to_string(),
            file_len,
            size: meta.size,
            block: meta.block,
            ratio: meta.ratio(),
            bat: raw.chunks_exact(8).map(|e| le64(e, 0)).collect(),
        })
    }
}

/// What the metadata region says.
pub(crate) struct Metadata {
    pub(crate) block: u64,
    pub(crate) size: u64,
    sector: u64,
}

impl Metadata {
    /// The metadata region's length, checked to be sane before it is read.
    pub(crate) fn checked_len(at: u64, len: u64, name: &str) -> Result<usize> {
        if !(64 << 10..=256 * MIB).contains(&len) {
            return Err(Error::invalid(
                name,
                Format::Vhdx,
                at,
                format!("a {len}-byte metadata region is absurd"),
            ));
        }
        Ok(len as usize)
    }

    /// Parses the metadata region `m`, read from byte `at`; refuses differencing disks.
    pub(crate) fn parse(m: &[u8], at: u64, name: &str) -> Result<Metadata> {
        let bad = |offset: u64, what: String| Error::invalid(name, Format::Vhdx, offset, what);
        if m.len() < 64 << 10 || &m[..8] != METADATA_MAGIC {
            return Err(bad(
                at,
                "bad metadata table signature (expected metadata)".into(),
            ));
        }
        let count = usize::from(le16(m, 10)).min(2047);
        let item = |id: &[u8; 16], want: usize| -> Result<&[u8]> {
            let e = m[32..32 + 32 * count]
                .chunks_exact(32)
                .find(|e| &e[..16] == id)
                .ok_or_else(|| bad(at, "a required metadata item is missing".into()))?;
            let (off, n) = (le32(e, 16) as usize, le32(e, 20) as usize);
            if n < want || off.saturating_add(want) > m.len() {
                return Err(bad(
                    at + off as u64,
                    format!("a metadata item of {n} bytes at {off} lies outside the region"),
                ));
            }
            Ok(&m[off..off + want])
        };
        let params = item(&FILE_PARAMETERS, 8)?;
        let block = u64::from(le32(params, 0));
        let has_parent = le32(params, 4) & 2 != 0;
        let size = le64(item(&VIRTUAL_DISK_SIZE, 8)?, 0);
        let sector = u64::from(le32(item(&LOGICAL_SECTOR, 4)?, 0));
        if has_parent {
            return Err(Error::unsupported(
                name,
                Format::Vhdx,
                "a parent (a differencing disk)",
                "merge it into its parent first",
            ));
        }
        if !block.is_power_of_two() || !(MIB..=256 * MIB).contains(&block) {
            return Err(bad(
                at,
                format!("block size {block} is not a power of two from 1 MiB to 256 MiB"),
            ));
        }
        if sector != 512 && sector != 4096 {
            return Err(bad(
                at,
                format!("logical sector size {sector} is neither 512 nor 4096"),
            ));
        }
        if size == 0 || size > 64 << 40 || !size.is_multiple_of(sector) {
            return Err(bad(
                at,
                format!("virtual disk size {size} is zero, past 64 TiB or not a sector multiple"),
            ));
        }
        Ok(Metadata {
            block,
            size,
            sector,
        })
    }

    /// Payload entries per sector-bitmap entry.
    pub(crate) fn ratio(&self) -> u64 {
        chunk_ratio(self.block, self.sector)
    }

    /// The BAT's offset and entry count, checked against the `(offset, length)` region.
    pub(crate) fn bat_entries(&self, (at, len): (u64, u64), name: &str) -> Result<(u64, u64)> {
        let blocks = self.size.div_ceil(self.block);
        let entries = blocks + blocks.saturating_sub(1) / self.ratio();
        if entries > MAX_BAT_ENTRIES || entries * 8 > len {
            return Err(Error::invalid(
                name,
                Format::Vhdx,
                at,
                format!(
                    "the BAT region ({len} bytes) cannot hold the {entries} entries a {}-byte disk needs",
                    self.size
                ),
            ));
        }
        Ok((at, entries))
    }
}

impl Reader for VhdxReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<Extent> {
        let mut extent = Extent::Zero;
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = at % self.block;
            let n = (buf.len() - done).min((self.block - within) as usize);
            let piece = &mut buf[done..done + n];
            let index = bat_index(at / self.block, self.ratio);
            let entry = self.bat.get(index as usize).copied().unwrap_or(0);
            match entry & 7 {
                PAYLOAD_FULLY_PRESENT => {
                    let base = entry & !(MIB - 1);
                    // Checked before adding, so a wild entry cannot overflow.
                    let from = base.min(self.file_len) + within;
                    if base >= self.file_len || from >= self.file_len {
                        return Err(Error::invalid(
                            &self.name,
                            Format::Vhdx,
                            from,
                            format!(
                                "BAT entry {index} points past the end of the {}-byte file",
                                self.file_len
                            ),
                        ));
                    }
                    let have = (self.file_len - from).min(n as u64) as usize;
                    read_exact_at(
                        &self.file,
                        &self.name,
                        Format::Vhdx,
                        &mut piece[..have],
                        from,
                        "payload block",
                    )?;
                    piece[have..].fill(0);
                    extent = Extent::Data;
                }
                PAYLOAD_PARTIALLY_PRESENT => {
                    return Err(Error::unsupported(
                        &self.name,
                        Format::Vhdx,
                        "partially present blocks (a differencing disk)",
                        "merge it into its parent first",
                    ));
                }
                // Not present, undefined, zero, unmapped: zeros on a disk without a parent.
                _ => piece.fill(0),
            }
            done += n;
        }
        Ok(extent)
    }
}
