//! Pack files: `"HNXPACK2" || blob* || sealed(header) || u32le(len)` (docs/backup-format.md);
//! version 1's `"HNXPACK1"` packs, with 81-byte entries, are read too.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::crypto::Keys;
use crate::error::{IoContext, Result, corrupt};

/// The first eight bytes of every pack written by repository version 2.
pub const MAGIC: &[u8; 8] = b"HNXPACK2";
/// The first eight bytes of a version 1 pack.
pub const MAGIC_V1: &[u8; 8] = b"HNXPACK1";
/// Bytes per header entry.
const ENTRY: usize = 85;
/// Bytes per header entry of a version 1 pack (no `start`).
const ENTRY_V1: usize = 81;
/// The size past which an open pack is written out.
pub const TARGET_SIZE: usize = 16 << 20;
/// The plaintext size at which an open group is compressed and closed; a group holds at
/// most this plus one chunk.
pub const GROUP_SIZE: usize = 2 << 20;

/// How a blob's payload encodes its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// The chunk itself.
    Raw,
    /// A zstd frame of the chunk.
    Zstd,
    /// A zstd frame compressed with the base chunk as dictionary.
    Delta,
}

impl BlobKind {
    fn code(self) -> u8 {
        match self {
            BlobKind::Raw => 0,
            BlobKind::Zstd => 1,
            BlobKind::Delta => 2,
        }
    }

    fn from_code(code: u8) -> Option<BlobKind> {
        Some(match code {
            0 => BlobKind::Raw,
            1 => BlobKind::Zstd,
            2 => BlobKind::Delta,
            _ => return None,
        })
    }
}

/// Where one chunk lies in a pack, and how it is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The chunk id.
    pub id: [u8; 32],
    /// The encoding.
    pub kind: BlobKind,
    /// Offset of the blob from the start of the pack.
    pub offset: u64,
    /// Bytes of the sealed blob.
    pub stored_len: u32,
    /// Bytes of the chunk.
    pub plain_len: u32,
    /// The base chunk of a delta; zero otherwise.
    pub base: [u8; 32],
    /// Where the chunk starts in its blob's decompressed payload (non-zero only in groups).
    pub start: u32,
}

impl Entry {
    /// The 85-byte encoding, or version 1's 81 bytes without `start` when `v1` (the chunk
    /// id is left out when `with_id` is false).
    pub fn encode(&self, with_id: bool, v1: bool, out: &mut Vec<u8>) {
        if with_id {
            out.extend_from_slice(&self.id);
        }
        out.push(self.kind.code());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.stored_len.to_le_bytes());
        out.extend_from_slice(&self.plain_len.to_le_bytes());
        out.extend_from_slice(&self.base);
        if !v1 {
            out.extend_from_slice(&self.start.to_le_bytes());
        }
    }

    /// Decodes `id` plus the 53 bytes after it (49 for version 1, `start` then 0); `None`
    /// when malformed.
    pub fn decode(id: [u8; 32], rest: &[u8]) -> Option<Entry> {
        let start = match rest.len() {
            l if l == ENTRY_V1 - 32 => 0,
            l if l == ENTRY - 32 => u32::from_le_bytes(rest[49..53].try_into().ok()?),
            _ => return None,
        };
        let u32_at = |i: usize| u32::from_le_bytes(rest[i..i + 4].try_into().unwrap_or_default());
        Some(Entry {
            id,
            kind: BlobKind::from_code(rest[0])?,
            offset: u64::from_le_bytes(rest[1..9].try_into().ok()?),
            stored_len: u32_at(9),
            plain_len: u32_at(13),
            base: rest[17..49].try_into().ok()?,
            start,
        })
    }
}

/// A pack being filled in memory.
#[derive(Debug, Default)]
pub struct PackBuilder {
    data: Vec<u8>,
    entries: Vec<Entry>,
    /// Writes version 1's layout (into a version 1 repository).
    v1: bool,
}

impl PackBuilder {
    /// An empty pack in the layout of repository `version`.
    pub fn new(version: u32) -> PackBuilder {
        PackBuilder {
            v1: version < 2,
            ..PackBuilder::default()
        }
    }

    /// Appends a sealed blob holding one chunk.
    pub fn push(
        &mut self,
        id: [u8; 32],
        kind: BlobKind,
        sealed: &[u8],
        plain_len: usize,
        base: [u8; 32],
    ) {
        self.push_group(kind, sealed, &[(id, plain_len)], base);
    }

    /// Appends a sealed blob holding `members` (id, plain length) one after the other.
    pub fn push_group(
        &mut self,
        kind: BlobKind,
        sealed: &[u8],
        members: &[([u8; 32], usize)],
        base: [u8; 32],
    ) {
        if self.data.is_empty() {
            self.data
                .extend_from_slice(if self.v1 { MAGIC_V1 } else { MAGIC });
        }
        let offset = self.data.len() as u64;
        let mut start = 0;
        for &(id, plain_len) in members {
            self.entries.push(Entry {
                id,
                kind,
                offset,
                stored_len: sealed.len() as u32,
                plain_len: plain_len as u32,
                base,
                start: start as u32,
            });
            start += plain_len;
        }
        self.data.extend_from_slice(sealed);
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// No blob yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Finishes the pack: its bytes and entries; the builder is left empty.
    pub fn finish(&mut self, keys: &Keys) -> (Vec<u8>, Vec<Entry>) {
        let mut header = (self.entries.len() as u32).to_le_bytes().to_vec();
        for entry in &self.entries {
            entry.encode(true, self.v1, &mut header);
        }
        let sealed = keys.seal(&header);
        let mut data = std::mem::take(&mut self.data);
        data.extend_from_slice(&sealed);
        data.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        (data, std::mem::take(&mut self.entries))
    }
}

/// Reads the header of the pack bytes `data` read from `path`, checking every entry's bounds.
pub fn read_header(data: &[u8], keys: &Keys, path: &Path) -> Result<Vec<Entry>> {
    if data.len() < MAGIC.len() + 4 {
        return Err(corrupt(path, "not a pack (bad magic or too short)"));
    }
    let entry_len = entry_len(&data[..MAGIC.len()], path)?;
    let len_at = data.len() - 4;
    let header_len = u32::from_le_bytes(data[len_at..].try_into().unwrap_or_default()) as usize;
    let header_start = header_start(len_at, header_len, path)?;
    parse_header(
        &data[header_start..len_at],
        header_start,
        entry_len,
        keys,
        path,
    )
}

/// Reads only the magic and the header of the pack file at `path` (for a structure check,
/// which need not read the blobs).
pub fn read_file_header(path: &Path, keys: &Keys) -> Result<Vec<Entry>> {
    let mut file = File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let mut magic = [0u8; MAGIC.len()];
    if len < (MAGIC.len() + 4) as u64 || file.read_exact(&mut magic).is_err() {
        return Err(corrupt(path, "not a pack (bad magic or too short)"));
    }
    let entry_len = entry_len(&magic, path)?;
    let len_at = usize::try_from(len - 4).map_err(|_| corrupt(path, "pack too large"))?;
    let mut len_bytes = [0u8; 4];
    file.seek(SeekFrom::Start(len_at as u64)).at(path)?;
    file.read_exact(&mut len_bytes).at(path)?;
    let start = header_start(len_at, u32::from_le_bytes(len_bytes) as usize, path)?;
    let mut sealed = vec![0u8; len_at - start];
    file.seek(SeekFrom::Start(start as u64)).at(path)?;
    file.read_exact(&mut sealed).at(path)?;
    parse_header(&sealed, start, entry_len, keys, path)
}

/// The header entry size the pack magic `magic` implies.
fn entry_len(magic: &[u8], path: &Path) -> Result<usize> {
    match magic {
        m if m == MAGIC => Ok(ENTRY),
        m if m == MAGIC_V1 => Ok(ENTRY_V1),
        _ => Err(corrupt(path, "not a pack (bad magic or too short)")),
    }
}

/// Where the sealed header starts, given where its length field is.
fn header_start(len_at: usize, header_len: usize, path: &Path) -> Result<usize> {
    len_at
        .checked_sub(header_len)
        .filter(|&s| s >= MAGIC.len())
        .ok_or_else(|| corrupt(path, "header length points outside the pack"))
}

/// Opens and decodes a sealed header found at `header_start`, checking every entry's bounds.
fn parse_header(
    sealed: &[u8],
    header_start: usize,
    entry_len: usize,
    keys: &Keys,
    path: &Path,
) -> Result<Vec<Entry>> {
    let header = keys.open(sealed, path)?;
    let count = header
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .ok_or_else(|| corrupt(path, "header is too short"))?;
    if Some(header.len()) != count.checked_mul(entry_len).map(|n| n + 4) {
        return Err(corrupt(
            path,
            "header length does not match its entry count",
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for raw in header[4..].chunks_exact(entry_len) {
        let id: [u8; 32] = raw[..32].try_into().unwrap_or_default();
        let entry =
            Entry::decode(id, &raw[32..]).ok_or_else(|| corrupt(path, "bad header entry"))?;
        let end = entry.offset.checked_add(u64::from(entry.stored_len));
        if entry.offset < MAGIC.len() as u64 || end.is_none_or(|e| e > header_start as u64) {
            return Err(corrupt(path, "a header entry points outside the blob area"));
        }
        entries.push(entry);
    }
    Ok(entries)
}
