//! Daemon errors.

use thiserror::Error;

/// Something a daemon request could not do.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration does not load or resolve.
    #[error("the configuration is invalid:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    /// No such unit.
    #[error("no compute unit `{0}`; `hypernix units` lists them")]
    UnknownUnit(String),
    /// The unit cannot do that now.
    #[error("unit `{unit}`: {message}")]
    Unit {
        /// The unit.
        unit: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The storage engine could not do it.
    #[error("storage: {0}")]
    Storage(String),
    /// A backup source cannot be backed up, or its repository not read.
    #[error("backup `{name}`: {message}")]
    Backup {
        /// The source (or repository) name.
        name: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    Store(String),
    /// The cluster could not do it.
    #[error("cluster: {0}")]
    Mesh(String),
    /// Monitoring could not answer.
    #[error("monitoring: {0}")]
    Monitor(String),
}
