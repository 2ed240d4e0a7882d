//! Errors: each names the file, the offset or field at fault, and what to do.

use std::io;

use crate::Format;

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong reading or writing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call on the file failed.
    #[error("{name}: cannot {op}: {source}")]
    Io {
        /// The file (or `-` for a stream).
        name: String,
        /// What was being done.
        op: String,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// The image breaks its format's rules.
    #[error(
        "{name}: invalid {format} image at byte {offset}: {what} (is the file complete and really {format}? `qemu-img check` may say more)"
    )]
    Invalid {
        /// The file.
        name: String,
        /// The format it was read as.
        format: Format,
        /// The byte offset of the field or data at fault.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The image uses a feature this reader does not handle.
    #[error("{name}: {format} images with {feature} are not supported; {hint}")]
    Unsupported {
        /// The file.
        name: String,
        /// Its format.
        format: Format,
        /// The feature.
        feature: String,
        /// What to do instead.
        hint: String,
    },
    /// The format could not be recognised from the file's first bytes.
    #[error(
        "{name}: unknown image format (no qcow2, VMDK or VHDX magic); name it with -f raw|qcow2|vmdk|vhdx"
    )]
    UnknownFormat {
        /// The file.
        name: String,
    },
    /// A shrink would drop guest data.
    #[error(
        "shrinking {name} to {size} bytes would drop data at byte {offset}; pass --force to drop it"
    )]
    WouldLoseData {
        /// The source.
        name: String,
        /// The requested size.
        size: u64,
        /// The first non-zero byte's chunk past the new end.
        offset: u64,
    },
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// An I/O error on `name` while doing `op`.
    pub fn io(name: &str, op: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            name: name.to_string(),
            op: op.into(),
            source,
        }
    }

    /// A format violation in `name` at `offset`.
    pub fn invalid(name: &str, format: Format, offset: u64, what: impl Into<String>) -> Error {
        Error::Invalid {
            name: name.to_string(),
            format,
            offset,
            what: what.into(),
        }
    }

    /// An unsupported feature of `name`.
    pub fn unsupported(
        name: &str,
        format: Format,
        feature: impl Into<String>,
        hint: impl Into<String>,
    ) -> Error {
        Error::Unsupported {
            name: name.to_string(),
            format,
            feature: feature.into(),
            hint: hint.into(),
        }
    }
}
