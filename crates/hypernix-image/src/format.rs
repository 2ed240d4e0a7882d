//! Format names and probing by magic.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::str::FromStr;

use crate::{Error, Result};

/// A disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Plain bytes, holes for zeros.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
    /// VMware virtual disk (monolithicSparse, streamOptimized).
    Vmdk,
    /// Hyper-V virtual hard disk v2.
    Vhdx,
}

impl Format {
    /// Every format, in the order benchmarks and tests list them.
    pub const ALL: [Format; 4] = [Format::Raw, Format::Qcow2, Format::Vmdk, Format::Vhdx];

    /// The name qemu-img uses.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhdx => "vhdx",
        }
    }

    /// The format a file name's extension names (`.img` and `.raw` are raw).
    pub fn from_extension(path: &str) -> Option<Format> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "raw" | "img" => Some(Format::Raw),
            "qcow2" => Some(Format::Qcow2),
            "vmdk" => Some(Format::Vmdk),
            "vhdx" => Some(Format::Vhdx),
            _ => None,
        }
    }

    /// The format of a file's first bytes, if it carries a known magic.
    pub fn from_magic(head: &[u8]) -> Option<Format> {
        if head.starts_with(b"QFI\xfb") {
            Some(Format::Qcow2)
        } else if head.starts_with(b"KDMV") {
            Some(Format::Vmdk)
        } else if head.starts_with(b"vhdxfile") {
            Some(Format::Vhdx)
        } else {
            None
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown format {s:?}; use raw, qcow2, vmdk or vhdx"
                ))
            })
    }
}

/// The format of `file` from its magic; a file without one is raw only when it is named so.
pub fn probe(file: &File, name: &str) -> Result<Format> {
    let mut head = [0u8; 8];
    let n = file
        .read_at(&mut head, 0)
        .map_err(|e| Error::io(name, "read", e))?;
    match Format::from_magic(&head[..n]) {
        Some(f) => Ok(f),
        None if Format::from_extension(name) == Some(Format::Raw) => Ok(Format::Raw),
        None => Err(Error::UnknownFormat {
            name: name.to_string(),
        }),
    }
}
