//! An embedded time-series store for metric samples, on redb.
//!
//! One redb file holds every series. The layout (see `docs/monitoring.md`):
//!
//! 1. **`series`**: the series key as JSON → a small integer id, given in order of first
//!    appearance. Points are keyed by `(id, time)`, so one series' points are contiguous
//!    and in time order.
//! 2. **`raw`**: `(id, at_ms)` → value. [`Tsdb::append`] writes one sample per series in
//!    one write transaction; a sample at an existing `(id, at_ms)` replaces it. Non-finite
//!    values (NaN, ±inf) are skipped, not stored: they carry no level to aggregate.
//! 3. **`minute`, `five_minutes`, `hour`**: `(id, bucket start)` → `(min, max, sum, last,
//!    count)`. [`Tsdb::compact`] rolls closed buckets up raw → 1 min → 5 min → 1 h, each
//!    from the one below, and keeps a per-resolution watermark in **`watermarks`** (the
//!    end of the last rolled bucket) so a bucket is rolled up once. A sample appended
//!    behind the minute watermark stays raw and is not rolled up.
//! 4. **Retention.** [`Tsdb::compact`] then deletes, per resolution, points older than
//!    its [`Retention`], but never points the next resolution has not rolled up yet.
//! 5. **Queries.** [`Tsdb::query`] reads the stored buckets before the watermark and
//!    aggregates the finer resolution after it on the fly, so recent data is visible
//!    before it is rolled up.

mod compact;
mod key;
mod resolution;
mod rollup;
mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use key::SeriesKey;
pub use resolution::{Resolution, Retention};
pub use store::Tsdb;

/// One point of a series at some resolution: a bucket's aggregates, or one raw sample
/// (then `min`, `max`, `mean` and `last` are the value and `count` is 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The sample's time, or the bucket's start, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// The mean of the samples.
    pub mean: f64,
    /// The latest sample.
    pub last: f64,
    /// How many raw samples the point covers.
    pub count: u32,
}

/// What [`Tsdb::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactStats {
    /// Buckets written by roll-ups, over all resolutions.
    pub buckets_written: u64,
    /// Points deleted by retention, over all resolutions.
    pub points_deleted: u64,
}

/// What went wrong with a time-series store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsdbError {
    /// The file could not be opened or created as a store.
    #[error(
        "{path}: cannot open the time-series store: {source} (if it is not a hypernix store \
         or is damaged, move it away and a new one is created)"
    )]
    Open {
        /// The store's file.
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
    /// A transaction, read or write failed.
    #[error("{path}: time-series store: {source}")]
    Store {
        /// The store's file.
        path: PathBuf,
        /// The cause.
        source: redb::Error,
    },
    /// An entry of the `series` table is not a series key.
    #[error("{path}: series entry {entry:?} is damaged ({reason}); move the store away")]
    BadSeries {
        /// The store's file.
        path: PathBuf,
        /// The entry as stored.
        entry: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Every series id is taken.
    #[error("{path}: {count} series, the most one store holds; start a new store")]
    TooManySeries {
        /// The store's file.
        path: PathBuf,
        /// Series in the store.
        count: u64,
    },
}
