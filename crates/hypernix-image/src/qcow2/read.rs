//! The qcow2 reader: v2 and v3, any cluster size qemu allows, plain, zero and
//! zlib-compressed clusters. Backing files, encryption, external data files, extended L2
//! entries and zstd compression are refused with a message saying what to do. Snapshots are
//! ignored: the active layer is read.

use std::fs::File;

use flate2::{Decompress, FlushDecompress, Status};

use super::{COMPRESSED, MAGIC, OFFSET_MASK, ZERO};
use crate::io::{be32, be64, file_len, read_exact_at};
use crate::{Error, Extent, Format, Reader, Result};

/// The largest L1 table qemu accepts (32 MiB of entries).
const MAX_L1_ENTRIES: u64 = 4 << 20;

/// A qcow2 image opened for reading.
pub struct Qcow2Reader {
    file: File,
    name: String,
    file_len: u64,
    size: u64,
    cluster_bits: u32,
    version: u32,
    l1: Vec<u64>,
    /// The last L2 table read, by its host offset.
    l2: Option<(u64, Vec<u64>)>,
    inflate: Decompress,
    compressed: Vec<u8>,
    /// The last compressed cluster inflated, by its L2 entry.
    cluster: Option<(u64, Vec<u8>)>,
}

/// What a qcow2 header says about the active layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) version: u32,
    pub(crate) cluster_bits: u32,
    pub(crate) size: u64,
    pub(crate) l1_size: u64,
    pub(crate) l1_offset: u64,
}

/// Bytes of header [`Header::parse`] looks at (a v3 header and its compression type).
pub(crate) const HEADER_BYTES: usize = 112;

impl Header {
    /// Parses and checks an image's first [`HEADER_BYTES`] bytes (zeros past its end).
    pub(crate) fn parse(h: &[u8; HEADER_BYTES], name: &str) -> Result<Header> {
        let bad = |offset: u64, what: String| Error::invalid(name, Format::Qcow2, offset, what);
        let unsupported =
            |feature: &str, hint: &str| Error::unsupported(name, Format::Qcow2, feature, hint);
        if be32(h, 0) != MAGIC {
            return Err(bad(
                0,
                format!("bad magic {:#010x} (expected QFI\\xfb)", be32(h, 0)),
            ));
        }
        let version = be32(h, 4);
        if version != 2 && version != 3 {
            return Err(unsupported(
                &format!("version {version}"),
                "only versions 2 and 3 exist; is the file damaged?",
            ));
        }
        if be64(h, 8) != 0 {
            return Err(unsupported(
                "a backing file",
                "flatten it first: `qemu-img convert -O qcow2 IN FLAT.qcow2`",
            ));
        }
        let cluster_bits = be32(h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(bad(
                20,
                format!("cluster_bits {cluster_bits} is outside 9..=21"),
            ));
        }
        let size = be64(h, 24);
        if size > 1 << 56 {
            return Err(bad(24, format!("virtual size {size} is absurd")));
        }
        if be32(h, 32) != 0 {
            return Err(unsupported(
                "encryption",
                "decrypt it first with `qemu-img convert --object secret,... --image-opts`",
            ));
        }
        if version == 3 {
            let incompatible = be64(h, 72);
            let header_len = be32(h, 100);
            if incompatible & 2 != 0 {
                return Err(bad(
                    72,
                    "the image is marked corrupt; repair it with `qemu-img check -r all`".into(),
                ));
            }
            if incompatible & 4 != 0 {
                return Err(unsupported(
                    "an external data file",
                    "convert it with `qemu-img convert` first",
                ));
            }
            if incompatible & 8 != 0 && header_len > 104 && h[104] != 0 {
                return Err(unsupported(
                    "zstd compression",
                    "recompress with `qemu-img convert -O qcow2 -c -o compression_type=zlib`",
                ));
            }
            if incompatible & 16 != 0 {
                return Err(unsupported(
                    "extended L2 entries (subclusters)",
                    "convert it with `qemu-img convert -O qcow2` first",
                ));
            }
            if incompatible & !0x1f != 0 {
                return Err(unsupported(
                    &format!("unknown incompatible features {incompatible:#x}"),
                    "convert it with a newer qemu-img first",
                ));
            }
        }
        let cluster = 1u64 << cluster_bits;
        let l1_size = u64::from(be32(h, 36));
        let l1_offset = be64(h, 40);
        let needed = size.div_ceil(cluster).div_ceil(cluster / 8);
        if l1_size < needed || l1_size > MAX_L1_ENTRIES {
            return Err(bad(
                36,
                format!("l1_size {l1_size} does not fit a {size}-byte disk (needs {needed})"),
            ));
        }
        if !l1_offset.is_multiple_of(cluster) {
            return Err(bad(
                40,
                format!("the L1 table at {l1_offset} is not cluster-aligned"),
            ));
        }
        Ok(Header {
            version,
            cluster_bits,
            size,
            l1_size,
            l1_offset,
        })
    }
}

impl Qcow2Reader {
    /// Opens `file` (named `name`) as qcow2, reading its header and L1 table.
    pub fn new(file: File, name: &str) -> Result<Qcow2Reader> {
        let file_len = file_len(&file, name)?;
        let mut h = [0u8; HEADER_BYTES];
        let have = file_len.min(HEADER_BYTES as u64) as usize;
        read_exact_at(
            &file,
            name,
            Format::Qcow2,
            &mut h[..have.max(72)],
            0,
            "header",
        )?;
        let header = Header::parse(&h, name)?;
        let (l1_offset, l1_size) = (header.l1_offset, header.l1_size);
        if l1_offset.saturating_add(l1_size * 8) > file_len {
            return Err(Error::invalid(
                name,
                Format::Qcow2,
                40,
                format!(
                    "the L1 table at {l1_offset} ({l1_size} entries) lies past the end of the {file_len}-byte file"
                ),
            ));
        }
        let mut raw = vec![0u8; (l1_size * 8) as usize];
        read_exact_at(&file, name, Format::Qcow2, &mut raw, l1_offset, "L1 table")?;
        let l1 = raw.chunks_exact(8).map(|e| be64(e, 0)).collect();
        Ok(Qcow2Reader {
            file,
            name: name.to_string(),
            file_len,
            size: header.size,
            cluster_bits: header.cluster_bits,
            version: header.version,
            l1,
            l2: None,
            inflate: Decompress::new_with_window_bits(false, 15),
            compressed: Vec::new(),
            cluster: None,
        })
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn bad(&self, offset: u64, what: String) -> Error {
        Error::invalid(&self.name, Format::Qcow2, offset, what)
    }

    /// The L2 entry of guest cluster `index` (0: unallocated).
    fn l2_entry(&mut self, index: u64) -> Result<u64> {
        let per_table = self.cluster_size() / 8;
        let l1_index = index / per_table;
        let l1 = self.l1.get(l1_index as usize).copied().unwrap_or(0);
        let table = l1 & OFFSET_MASK;
        if table == 0 {
            return Ok(0);
        }
        if !table.is_multiple_of(self.cluster_size()) || table + self.cluster_size() > self.file_len
        {
            return Err(self.bad(table, format!("L1 entry {l1_index} points to an L2 table at {table}, unaligned or past the end of the {}-byte file", self.file_len)));
        }
        if self.l2.as_ref().map(|(at, _)| *at) != Some(table) {
            let mut raw = vec![0u8; self.cluster_size() as usize];
            read_exact_at(
                &self.file,
                &self.name,
                Format::Qcow2,
                &mut raw,
                table,
                "L2 table",
            )?;
            self.l2 = Some((table, raw.chunks_exact(8).map(|e| be64(e, 0)).collect()));
        }
        Ok(self
            .l2
            .as_ref()
            .map_or(0, |(_, t)| t[(index % per_table) as usize]))
    }

    /// Inflates the compressed cluster of L2 entry `entry` into the cache.
    fn inflate(&mut self, entry: u64) -> Result<&[u8]> {
        if self.cluster.as_ref().map(|(e, _)| *e) != Some(entry) {
            let shift = 62 - (self.cluster_bits - 8);
            let host = entry & ((1 << shift) - 1);
            let sectors = ((entry >> shift) & ((1 << (self.cluster_bits - 8)) - 1)) + 1;
            let len = (sectors * 512 - (host & 511)).min(self.file_len.saturating_sub(host));
            if host >= self.file_len || len == 0 {
                return Err(self.bad(
                    host,
                    format!(
                        "a compressed cluster at {host} lies past the end of the {}-byte file",
                        self.file_len
                    ),
                ));
            }
            self.compressed.resize(len as usize, 0);
            read_exact_at(
                &self.file,
                &self.name,
                Format::Qcow2,
                &mut self.compressed,
                host,
                "compressed cluster",
            )?;
            let mut out = vec![0u8; self.cluster_size() as usize];
            self.inflate.reset(false);
            let status =
                self.inflate
                    .decompress(&self.compressed, &mut out, FlushDecompress::Finish);
            let full = self.inflate.total_out() == self.cluster_size();
            if !matches!(
                status,
                Ok(Status::StreamEnd | Status::Ok | Status::BufError)
            ) || !full
            {
                return Err(self.bad(
                    host,
                    format!(
                        "the compressed cluster at {host} does not inflate to {} bytes",
                        self.cluster_size()
                    ),
                ));
            }
            self.cluster = Some((entry, out));
        }
        Ok(self.cluster.as_ref().map_or(&[][..], |(_, c)| c))
    }
}

impl Reader for Qcow2Reader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<Extent> {
        let mut extent = Extent::Zero;
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let within = (at & (self.cluster_size() - 1)) as usize;
            let n = (buf.len() - done).min(self.cluster_size() as usize - within);
            let piece = &mut buf[done..done + n];
            let entry = self.l2_entry(at >> self.cluster_bits)?;
            let host = entry & OFFSET_MASK;
            if entry & COMPRESSED != 0 {
                piece.copy_from_slice(&self.inflate(entry)?[within..within + n]);
                extent = Extent::Data;
            } else if host == 0 || (self.version == 3 && entry & ZERO != 0) {
                piece.fill(0);
            } else {
                if !host.is_multiple_of(self.cluster_size()) || host >= self.file_len {
                    return Err(self.bad(host, format!("guest byte {at} maps to host cluster {host}, unaligned or past the end of the {}-byte file", self.file_len)));
                }
                // A last cluster the file ends inside reads as zeros past the end, as in qemu.
                let from = host + within as u64;
                let have = self.file_len.saturating_sub(from).min(n as u64) as usize;
                read_exact_at(
                    &self.file,
                    &self.name,
                    Format::Qcow2,
                    &mut piece[..have],
                    from,
                    "data cluster",
                )?;
                piece[have..].fill(0);
                extent = Extent::Data;
            }
            done += n;
        }
        Ok(extent)
    }
}
