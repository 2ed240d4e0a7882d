//! The Numenta Anomaly Benchmark: corpus, scorer and a runner.
//!
//! A NAB directory holds `data/<category>/<series>.csv` (columns `timestamp,value`),
//! `combined_windows.json` (labelled anomaly windows per `<category>/<series>.csv`) and
//! `profiles.json` (the cost matrices). An evaluation:
//!
//! 1. [`Corpus::load`] reads and validates the series, their windows and the profiles.
//! 2. [`run()`] feeds each series, in time order, to a fresh [`crate::Detector`] and writes
//!    `<out>/<detector>/<category>/<detector>_<series>.csv`.
//! 3. [`scorer::score_corpus`] optimises the threshold of each profile over all series
//!    together and normalises the score (null detector 0, perfect detector 100).

mod corpus;
pub mod run;
pub mod scorer;

use std::path::PathBuf;

pub use corpus::{Corpus, CostMatrix, Profile, Series, read_csv};
pub use run::{Evaluation, ProfileResult, run};

/// What went wrong reading a NAB directory or writing results.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A CSV row is malformed.
    #[error("{path}:{line}: {reason}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A JSON file does not have the expected shape.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A window does not fit its series.
    #[error("{series}: window [{start}, {end}] {reason}")]
    Window {
        /// `<category>/<series>.csv`.
        series: String,
        /// The window's start as written.
        start: String,
        /// The window's end as written.
        end: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A series has no entry in `combined_windows.json`.
    #[error("{0}: no entry in combined_windows.json")]
    NoWindows(String),
    /// The data directory holds no series.
    #[error("{0}: no series (expected data/<category>/<series>.csv)")]
    Empty(PathBuf),
    /// A required profile is missing from `profiles.json`.
    #[error("profiles.json: profile {0:?} missing")]
    NoProfile(&'static str),
}
