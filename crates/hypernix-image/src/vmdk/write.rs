//! The VMDK streamOptimized writer, one pass, nothing but one grain table in memory:
//!
//! ```text
//! sector 0      header (gdOffset = GD_AT_END)
//! sector 1..    descriptor, padded to 64 KiB
//! then, in guest order, each non-zero grain: marker {lba u64, size u32} + zlib data, padded to 512
//! after the last grain of a 32 MiB span: GT marker + its grain table (512 u32 sector offsets)
//! GD marker + grain directory (u32 sector offset of each GT, 0 for none)
//! footer marker + the header again with the GD's offset
//! end-of-stream marker (512 zero bytes)
//! ```

use super::{
    DEFLATE, FLAG_COMPRESSED, FLAG_MARKERS, FLAG_NL_DETECT, GD_AT_END, Header, MARKER_EOS,
    MARKER_FOOTER, MARKER_GD, MARKER_GT, marker,
};
use crate::deflate::{Deflater, Flavour};
use crate::io::whole_chunk;
use crate::sink::Sink;
use crate::{CHUNK, Error, Output, Result, Writer};

/// Grain size in sectors: one pipeline chunk.
const GRAIN_SECTORS: u64 = (CHUNK / 512) as u64;
/// Grain table entries.
const GTES: u64 = 512;
/// Sectors before the first grain (header and descriptor).
const OVERHEAD: u64 = GRAIN_SECTORS;

/// Writes a streamOptimized VMDK.
pub struct VmdkWriter {
    sink: Sink,
    header: Header,
    deflater: Option<Deflater>,
    /// The grain table being filled, and its GD index.
    table: Option<(u64, Vec<u32>)>,
    gd: Vec<u32>,
}

impl VmdkWriter {
    /// A writer for a disk of `size` bytes (rounded up to 512); writes the header now.
    pub fn new(out: Output, size: u64) -> Result<VmdkWriter> {
        let capacity = size.div_ceil(512);
        let header = Header {
            version: 3,
            flags: FLAG_NL_DETECT | FLAG_COMPRESSED | FLAG_MARKERS,
            capacity,
            grain: GRAIN_SECTORS,
            desc_offset: 1,
            desc_size: OVERHEAD - 1,
            gtes_per_gt: GTES as u32,
            rgd_offset: 0,
            gd_offset: GD_AT_END,
            overhead: OVERHEAD,
            compression: DEFLATE,
        };
        let gd_entries = capacity.div_ceil(GRAIN_SECTORS * GTES);
        let mut w = VmdkWriter {
            sink: Sink::new(out),
            header,
            deflater: Some(Deflater::new(Flavour::Zlib)),
            table: None,
            gd: vec![0; gd_entries as usize],
        };
        w.sink.write(&header.to_bytes())?;
        w.sink.write(descriptor(capacity).as_bytes())?;
        w.sink.skip_to(OVERHEAD * 512)?;
        Ok(w)
    }

    /// The current sector, as a u32 table entry (VMDK limits files to 2 TiB).
    fn sector(&self) -> Result<u32> {
        u32::try_from(self.sink.pos() / 512).map_err(|_| {
            Error::Usage(format!(
                "{}: a VMDK sparse extent cannot pass 2 TiB; use qcow2 or vhdx",
                self.sink.name()
            ))
        })
    }

    /// Writes the grain table being filled, if any.
    fn flush_table(&mut self) -> Result<()> {
        if let Some((index, table)) = self.table.take() {
            self.sink.write(&marker(GTES * 4 / 512, MARKER_GT))?;
            self.gd[index as usize] = self.sector()?;
            let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
            self.sink.write(&bytes)?;
        }
        Ok(())
    }

    /// Pads the output to a sector boundary.
    fn pad(&mut self) -> Result<()> {
        let to = self.sink.pos().next_multiple_of(512);
        self.sink.skip_to(to)
    }
}

impl VmdkWriter {
    /// Writes one compressed grain at the current position and enters it in its table.
    fn place(&mut self, offset: u64, compressed: Option<&[u8]>) -> Result<()> {
        let bytes = compressed.ok_or_else(|| {
            Error::Usage(format!(
                "{}: deflate failed on the grain at guest byte {offset}",
                self.sink.name()
            ))
        })?;
        let grain = offset / CHUNK as u64;
        let gd_index = grain / GTES;
        if self.table.as_ref().is_some_and(|(i, _)| *i != gd_index) {
            self.flush_table()?;
        }
        let at = self.sector()?;
        let table = &mut self
            .table
            .get_or_insert_with(|| (gd_index, vec![0; GTES as usize]))
            .1;
        table[(grain % GTES) as usize] = at;
        let mut head = [0u8; 12];
        head[..8].copy_from_slice(&(grain * GRAIN_SECTORS).to_le_bytes());
        head[8..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.sink.write(&head)?;
        self.sink.write(bytes)?;
        self.pad()
    }

    /// Compresses and writes the grains waiting in the deflater.
    fn flush(&mut self) -> Result<()> {
        if let Some(mut d) = self.deflater.take() {
            let r = d.drain(|offset, _, compressed| self.place(offset, compressed));
            self.deflater = Some(d);
            r?;
        }
        Ok(())
    }
}

impl Writer for VmdkWriter {
    fn write_chunks(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let mut pad = Vec::new();
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let grain = whole_chunk(chunk, &mut pad);
            let at = offset + (i * CHUNK) as u64;
            if self.deflater.as_mut().is_some_and(|d| d.push(at, grain)) {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.flush()?;
        self.flush_table()?;
        let gd_bytes: Vec<u8> = self.gd.iter().flat_map(|e| e.to_le_bytes()).collect();
        let gd_sectors = (gd_bytes.len() as u64).div_ceil(512).max(1);
        self.sink.write(&marker(gd_sectors, MARKER_GD))?;
        let gd_at = self.sink.pos() / 512;
        self.sink.write(&gd_bytes)?;
        self.pad()?;
        self.sink.skip_to((gd_at + gd_sectors) * 512)?;
        self.sink.write(&marker(1, MARKER_FOOTER))?;
        let footer = Header {
            gd_offset: gd_at,
            ..self.header
        };
        self.sink.write(&footer.to_bytes())?;
        self.sink.write(&marker(0, MARKER_EOS))?;
        let end = self.sink.pos();
        self.sink.finish(end)
    }
}

/// The embedded descriptor text.
fn descriptor(capacity: u64) -> String {
    let cylinders = (capacity / (16 * 63)).clamp(1, 16383);
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n\
         # Extent description\nRW {capacity} SPARSE \"disk.vmdk\"\n\n\
         # The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n"
    )
}
