//! VMDK hosted sparse extents (VMware's "Virtual Disk Format 5.0"): a 512-byte header, an
//! embedded text descriptor, a grain directory (GD) of grain tables (GT) mapping guest
//! grains to sectors. monolithicSparse stores grains plain; streamOptimized deflates each
//! grain behind a marker and puts the tables and a footer after the data, so it is written
//! in one pass. Fields are little-endian; offsets are in 512-byte sectors.

pub mod read;
pub mod write;

use crate::io::{le16, le32, le64};

/// `KDMV` read as a little-endian u32.
pub(crate) const MAGIC: u32 = 0x564d_444b;
/// The header's gdOffset when the GD is found through the footer.
pub(crate) const GD_AT_END: u64 = u64::MAX;
/// Flag: the newline-detection characters are valid.
const FLAG_NL_DETECT: u32 = 1;
/// Flag: a GT entry of 1 means a zeroed grain.
pub(crate) const FLAG_ZERO_GRAIN: u32 = 1 << 2;
/// Flag: grains are compressed.
const FLAG_COMPRESSED: u32 = 1 << 16;
/// Flag: grains and tables are preceded by markers.
pub(crate) const FLAG_MARKERS: u32 = 1 << 17;
/// compressAlgorithm: deflate (zlib streams).
const DEFLATE: u16 = 1;
/// Metadata marker types.
pub(crate) const MARKER_EOS: u32 = 0;
/// A grain table follows.
pub(crate) const MARKER_GT: u32 = 1;
/// The grain directory follows.
pub(crate) const MARKER_GD: u32 = 2;
/// The footer (a copy of the header) follows.
pub(crate) const MARKER_FOOTER: u32 = 3;

/// The fields of a sparse extent header that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: u32,
    pub(crate) flags: u32,
    pub(crate) capacity: u64,
    pub(crate) grain: u64,
    pub(crate) desc_offset: u64,
    pub(crate) desc_size: u64,
    pub(crate) gtes_per_gt: u32,
    pub(crate) rgd_offset: u64,
    pub(crate) gd_offset: u64,
    pub(crate) overhead: u64,
    pub(crate) compression: u16,
}

impl Header {
    /// Reads the fields of a header sector.
    pub(crate) fn parse(b: &[u8; 512]) -> Header {
        Header {
            version: le32(b, 4),
            flags: le32(b, 8),
            capacity: le64(b, 12),
            grain: le64(b, 20),
            desc_offset: le64(b, 28),
            desc_size: le64(b, 36),
            gtes_per_gt: le32(b, 44),
            rgd_offset: le64(b, 48),
            gd_offset: le64(b, 56),
            overhead: le64(b, 64),
            compression: le16(b, 77),
        }
    }

    fn to_bytes(self) -> [u8; 512] {
        let mut b = [0u8; 512];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..12].copy_from_slice(&self.flags.to_le_bytes());
        b[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        b[20..28].copy_from_slice(&self.grain.to_le_bytes());
        b[28..36].copy_from_slice(&self.desc_offset.to_le_bytes());
        b[36..44].copy_from_slice(&self.desc_size.to_le_bytes());
        b[44..48].copy_from_slice(&self.gtes_per_gt.to_le_bytes());
        b[48..56].copy_from_slice(&self.rgd_offset.to_le_bytes());
        b[56..64].copy_from_slice(&self.gd_offset.to_le_bytes());
        b[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        b[73..77].copy_from_slice(b"\n \r\n");
        b[77..79].copy_from_slice(&self.compression.to_le_bytes());
        b
    }
}

/// A 512-byte metadata marker: `numSectors`, `size` (0), `type`.
fn marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0..8].copy_from_slice(&sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}
