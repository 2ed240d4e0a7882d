//! The VHDX writer: a dynamic disk, written to a file (the BAT sits before the payload, so
//! a stream cannot carry it in one pass; use qcow2 or VMDK for pipes).
//!
//! ```text
//! 0        file identifier          64 KiB   header 1 (sequence 1)
//! 128 KiB  header 2 (sequence 2)    192 KiB  region table     256 KiB  region table copy
//! 1 MiB    log (1 MiB, empty)       2 MiB    metadata (1 MiB)  3 MiB    BAT
//! then     payload blocks, 1 MiB-aligned, in guest order as the first non-zero chunk of each arrives
//! ```
//! Payload goes out as it arrives; the headers, metadata and BAT are written at the end.

use std::hash::{BuildHasher, RandomState};

use super::{
    BAT_REGION, FILE_MAGIC, FILE_PARAMETERS, HEADER_MAGIC, HEADER_SIZE, HEADERS, LOGICAL_SECTOR,
    METADATA_MAGIC, METADATA_REGION, MIB, PAGE83, PAYLOAD_FULLY_PRESENT, PHYSICAL_SECTOR,
    REGION_MAGIC, REGION_TABLE_SIZE, REGION_TABLES, VIRTUAL_DISK_SIZE, bat_index, checksum,
    chunk_ratio,
};
use crate::sink::Sink;
use crate::{Error, Output, Result, Writer};

/// The logical sector size written.
const SECTOR: u64 = 512;
/// Where the log, metadata and BAT regions start.
const LOG_AT: u64 = MIB;
/// The metadata region.
const METADATA_AT: u64 = 2 * MIB;
/// The BAT region.
const BAT_AT: u64 = 3 * MIB;

/// Writes a dynamic VHDX to a file.
pub struct VhdxWriter {
    sink: Sink,
    size: u64,
    block: u64,
    ratio: u64,
    bat: Vec<u64>,
    /// The BAT region's length (whole MiBs).
    bat_len: u64,
    /// Where the next payload block goes.
    next: u64,
}

impl VhdxWriter {
    /// A writer for a disk of `size` bytes (rounded up to 512); `out` must be a file.
    pub fn new(out: Output, size: u64) -> Result<VhdxWriter> {
        if !out.seekable() {
            return Err(Error::Usage(
                "VHDX needs a seekable output (its block table precedes the data); write to a file, or stream qcow2 or vmdk".into(),
            ));
        }
        let size = size.next_multiple_of(SECTOR).max(SECTOR);
        // 1 MiB blocks track zeros finely; past 64 GiB, 32 MiB blocks keep the BAT small.
        let block = if size <= 64 << 30 { MIB } else { 32 * MIB };
        let ratio = chunk_ratio(block, SECTOR);
        let blocks = size.div_ceil(block);
        let entries = blocks + (blocks - 1) / ratio;
        let bat_len = (entries * 8).next_multiple_of(MIB);
        Ok(VhdxWriter {
            sink: Sink::new(out),
            size,
            block,
            ratio,
            bat: vec![0; entries as usize],
            bat_len,
            next: BAT_AT + bat_len,
        })
    }

    /// The header section, metadata region and BAT, written at the end.
    fn metadata(&mut self) -> Result<()> {
        let random = RandomState::new();
        let guid = |salt: u64| {
            let mut g = [0u8; 16];
            g[..8].copy_from_slice(&random.hash_one(salt).to_le_bytes());
            g[8..].copy_from_slice(&random.hash_one(!salt).to_le_bytes());
            g[7] = (g[7] & 0x0f) | 0x40; // a version 4 (random) GUID
            g
        };
        let mut ident = vec![0u8; 64 << 10];
        ident[..8].copy_from_slice(FILE_MAGIC);
        for (i, unit) in "hypernix".encode_utf16().enumerate() {
            ident[8 + 2 * i..10 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
        self.sink.write_at(&ident, 0)?;
        let (file_guid, data_guid) = (guid(1), guid(2));
        for (seq, at) in HEADERS.iter().enumerate() {
            let mut h = vec![0u8; HEADER_SIZE];
            h[0..4].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
            h[8..16].copy_from_slice(&(seq as u64 + 1).to_le_bytes());
            h[16..32].copy_from_slice(&file_guid);
            h[32..48].copy_from_slice(&data_guid);
            h[66..68].copy_from_slice(&1u16.to_le_bytes()); // version
            h[68..72].copy_from_slice(&(MIB as u32).to_le_bytes()); // log length
            h[72..80].copy_from_slice(&LOG_AT.to_le_bytes());
            let crc = checksum(&h);
            h[4..8].copy_from_slice(&crc.to_le_bytes());
            self.sink.write_at(&h, *at)?;
        }
        let mut rt = vec![0u8; REGION_TABLE_SIZE];
        rt[0..4].copy_from_slice(&REGION_MAGIC.to_le_bytes());
        rt[8..12].copy_from_slice(&2u32.to_le_bytes());
        for (i, (id, at, len)) in [
            (BAT_REGION, BAT_AT, self.bat_len),
            (METADATA_REGION, METADATA_AT, MIB),
        ]
        .into_iter()
        .enumerate()
        {
            let e = 16 + 32 * i;
            rt[e..e + 16].copy_from_slice(&id);
            rt[e + 16..e + 24].copy_from_slice(&at.to_le_bytes());
            rt[e + 24..e + 28].copy_from_slice(&(len as u32).to_le_bytes());
            rt[e + 28..e + 32].copy_from_slice(&1u32.to_le_bytes()); // required
        }
        let crc = checksum(&rt);
        rt[4..8].copy_from_slice(&crc.to_le_bytes());
        for at in REGION_TABLES {
            self.sink.write_at(&rt, at)?;
        }
        self.sink
            .write_at(&self.metadata_region(guid(3)), METADATA_AT)?;
        let bat: Vec<u8> = self.bat.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.sink.write_at(&bat, BAT_AT)
    }

    /// The metadata table (first 64 KiB) and its items (from 64 KiB on).
    fn metadata_region(&self, page83: [u8; 16]) -> Vec<u8> {
        const VIRTUAL: u32 = 2;
        const REQUIRED: u32 = 4;
        let mut params = [0u8; 8];
        params[..4].copy_from_slice(&(self.block as u32).to_le_bytes());
        let items: [([u8; 16], Vec<u8>, u32); 5] = [
            (FILE_PARAMETERS, params.to_vec(), REQUIRED),
            (
                VIRTUAL_DISK_SIZE,
                self.size.to_le_bytes().to_vec(),
                VIRTUAL | REQUIRED,
            ),
            (PAGE83, page83.to_vec(), VIRTUAL | REQUIRED),
            (
                LOGICAL_SECTOR,
                (SECTOR as u32).to_le_bytes().to_vec(),
                VIRTUAL | REQUIRED,
            ),
            (
                PHYSICAL_SECTOR,
                4096u32.to_le_bytes().to_vec(),
                VIRTUAL | REQUIRED,
            ),
        ];
        let mut m = vec![0u8; 64 << 10];
        m[0..8].copy_from_slice(METADATA_MAGIC);
        m[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
        let mut data_at = 64 << 10;
        for (i, (id, value, flags)) in items.iter().enumerate() {
            let e = 32 + 32 * i;
            m[e..e + 16].copy_from_slice(id);
            m[e + 16..e + 20].copy_from_slice(&(data_at as u32).to_le_bytes());
            m[e + 20..e + 24].copy_from_slice(&(value.len() as u32).to_le_bytes());
            m[e + 24..e + 28].copy_from_slice(&flags.to_le_bytes());
            m.resize(data_at + value.len(), 0);
            m[data_at..].copy_from_slice(value);
            data_at += value.len().next_multiple_of(8);
        }
        m
    }
}

impl Writer for VhdxWriter {
    fn write_chunks(&mut self, mut offset: u64, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let within = offset % self.block;
            let n = data.len().min((self.block - within) as usize);
            let entry = bat_index(offset / self.block, self.ratio) as usize;
            if self.bat[entry] == 0 {
                self.bat[entry] = self.next | PAYLOAD_FULLY_PRESENT;
                self.next += self.block;
            }
            let at = (self.bat[entry] & !(MIB - 1)) + within;
            self.sink.write_at(&data[..n], at)?;
            (offset, data) = (offset + n as u64, &data[n..]);
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.metadata()?;
        let end = self.next;
        self.sink.finish(end)
    }
}
