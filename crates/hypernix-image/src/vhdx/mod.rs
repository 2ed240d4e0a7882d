//! VHDX (MS-VHDX v1): a 1 MiB header section (file identifier, two checksummed headers,
//! two region tables), a log, a metadata region (block size, disk size, sector sizes) and a
//! block allocation table (BAT) mapping fixed-size payload blocks to 1 MiB-aligned file
//! offsets, with a sector-bitmap entry after every `chunk ratio` payload entries.
//! Little-endian; GUIDs in their mixed-endian on-disk form; CRC-32C checksums.

pub mod read;
pub mod write;

/// The file identifier's signature at byte 0.
const FILE_MAGIC: &[u8; 8] = b"vhdxfile";
/// "head".
const HEADER_MAGIC: u32 = 0x6461_6568;
/// "regi".
const REGION_MAGIC: u32 = 0x6967_6572;
/// "metadata".
const METADATA_MAGIC: &[u8; 8] = b"metadata";
/// The two headers' offsets.
const HEADERS: [u64; 2] = [64 << 10, 128 << 10];
/// The two region tables' offsets.
const REGION_TABLES: [u64; 2] = [192 << 10, 256 << 10];
/// A header's checksummed size.
const HEADER_SIZE: usize = 4 << 10;
/// A region table's checksummed size.
const REGION_TABLE_SIZE: usize = 64 << 10;
/// One mebibyte: the alignment of regions and payload blocks.
pub(crate) const MIB: u64 = 1 << 20;

/// BAT state: the block is in the file.
pub(crate) const PAYLOAD_FULLY_PRESENT: u64 = 6;
/// BAT state: part of the block is in a parent (differencing disks).
pub(crate) const PAYLOAD_PARTIALLY_PRESENT: u64 = 7;

/// A GUID in its on-disk byte order from its text form's fields.
const fn guid(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> [u8; 16] {
    let a = d1.to_le_bytes();
    let b = d2.to_le_bytes();
    let c = d3.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4], d4[5],
        d4[6], d4[7],
    ]
}

/// Region: the BAT.
const BAT_REGION: [u8; 16] = guid(
    0x2DC2_7766,
    0xF623,
    0x4200,
    [0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08],
);
/// Region: the metadata.
const METADATA_REGION: [u8; 16] = guid(
    0x8B7C_A206,
    0x4790,
    0x4B9A,
    [0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E],
);
/// Metadata: block size and flags.
const FILE_PARAMETERS: [u8; 16] = guid(
    0xCAA1_6737,
    0xFA36,
    0x4D43,
    [0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B],
);
/// Metadata: virtual disk size.
const VIRTUAL_DISK_SIZE: [u8; 16] = guid(
    0x2FA5_4224,
    0xCD1B,
    0x4876,
    [0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8],
);
/// Metadata: SCSI page 83 identifier.
const PAGE83: [u8; 16] = guid(
    0xBECA_12AB,
    0xB2E6,
    0x4523,
    [0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46],
);
/// Metadata: logical sector size.
const LOGICAL_SECTOR: [u8; 16] = guid(
    0x8141_BF1D,
    0xA96F,
    0x4709,
    [0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F],
);
/// Metadata: physical sector size.
const PHYSICAL_SECTOR: [u8; 16] = guid(
    0xCDA3_48C7,
    0x445D,
    0x4471,
    [0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56],
);

/// Payload entries per sector-bitmap entry in the BAT.
fn chunk_ratio(block_size: u64, logical_sector: u64) -> u64 {
    ((1u64 << 23) * logical_sector) / block_size
}

/// The BAT index of payload block `block`.
pub(crate) fn bat_index(block: u64, ratio: u64) -> u64 {
    block + block / ratio
}

/// The CRC-32C of `buf` with its checksum field (bytes 4..8) taken as zero.
fn checksum(buf: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&buf[..4]);
    let crc = crc32c::crc32c_append(crc, &[0; 4]);
    crc32c::crc32c_append(crc, &buf[8..])
}
