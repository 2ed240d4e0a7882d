//! qcow2 (QEMU copy-on-write, versions 2 and 3): a header, a two-level table (L1 → L2) from
//! guest clusters to host clusters, and refcounts for every host cluster. Fields are
//! big-endian. The reader handles plain, zero and zlib-compressed clusters; the writer makes
//! v3 images with 64 KiB clusters, optionally zlib-compressed like `qemu-img convert -c`.

pub mod read;
pub mod write;

/// The magic at byte 0: `QFI\xfb`.
const MAGIC: u32 = 0x5146_49fb;
/// L2 entry: the cluster is compressed.
pub(crate) const COMPRESSED: u64 = 1 << 62;
/// L1/L2 entry: refcount is exactly one (writes may go in place).
const COPIED: u64 = 1 << 63;
/// L2 entry (v3): the cluster reads as zeros.
pub(crate) const ZERO: u64 = 1;
/// The host offset bits of an L1 or uncompressed L2 entry.
pub(crate) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
