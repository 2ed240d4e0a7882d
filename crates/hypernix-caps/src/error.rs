//! Errors of the key ring, token handling and the audit log, and the reasons a request is
//! denied.

use std::path::PathBuf;

/// A failure outside authorization decisions: files, keys, token building.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// A key ring or audit file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key ring file is not in the expected format.
    #[error("{path}: {message}; restore it from a backup or run `hypernix caps rotate`")]
    KeyRing {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The configuration does not define what was asked for.
    #[error("{0}")]
    Config(String),
    /// A token could not be parsed, built or attenuated.
    #[error("token: {0}")]
    Token(String),
    /// An audit log line is not a record.
    #[error("{path}:{line}: not an audit record: {message}")]
    Audit {
        /// The audit file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl CapsError {
    /// Wraps an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CapsError {
        let path = path.into();
        move |source| CapsError::Io { path, source }
    }
}

/// Why a request was refused; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No token came with the request.
    #[error(
        "no capability token; pass one with --token, HYPERNIX_TOKEN or an Authorization: Bearer header"
    )]
    Missing,
    /// The bytes are not a token, or its signature does not verify.
    #[error("token is malformed or its signature does not verify ({0}); ask for a new token")]
    Malformed(String),
    /// Signed by a root key this daemon does not know (or no longer accepts).
    #[error(
        "token is signed by root key {0}, which this daemon does not accept; ask for a new token"
    )]
    UnknownKey(String),
    /// The token was revoked.
    #[error("token {0} has been revoked")]
    Revoked(String),
    /// The token's validity has ended.
    #[error("token has expired; ask for a new token")]
    Expired,
    /// The token's validity has not begun.
    #[error("token is not valid yet")]
    NotYetValid,
    /// Outside every schedule window of the grant.
    #[error("outside the grant's schedule windows ({0})")]
    OutsideSchedule(String),
    /// More attenuation blocks than the capability allows.
    #[error("token is delegated {depth} times, capability {capability} allows {max}")]
    DelegationDepth {
        /// The capability.
        capability: String,
        /// Attenuation blocks on the token.
        depth: usize,
        /// The most allowed.
        max: u32,
    },
    /// The capability may not be delegated at all.
    #[error("capability {0} may not be delegated, but the token was attenuated")]
    DelegationNotAllowed(String),
    /// The resource lacks a label the token is scoped to.
    #[error("{resource} is outside the token's label scope ({scope})")]
    Scope {
        /// The resource.
        resource: String,
        /// The labels required.
        scope: String,
    },
    /// More units than `limits.maxUnits`.
    #[error("the request acts on {units} units, over the capability's maxUnits")]
    MaxUnits {
        /// Units the request acts on.
        units: u64,
    },
    /// The grant's use count or rate is exhausted.
    #[error("usage limit of the grant reached: {0}")]
    Usage(String),
    /// The token holds no right for the operation.
    #[error("the token does not allow {0}")]
    NotAllowed(String),
}

impl Denial {
    /// A short machine-readable code for the reason.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::Malformed(_) => "malformed",
            Denial::UnknownKey(_) => "unknown-key",
            Denial::Revoked(_) => "revoked",
            Denial::Expired => "expired",
            Denial::NotYetValid => "not-yet-valid",
            Denial::OutsideSchedule(_) => "outside-schedule",
            Denial::DelegationDepth { .. } => "delegation-depth",
            Denial::DelegationNotAllowed(_) => "delegation-not-allowed",
            Denial::Scope { .. } => "scope",
            Denial::MaxUnits { .. } => "max-units",
            Denial::Usage(_) => "usage",
            Denial::NotAllowed(_) => "not-allowed",
        }
    }
}
