//! The store: opening it, appending samples, reading series back.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::rollup::{Agg, Row, bucketize};
use super::{Point, Resolution, Retention, SeriesKey, TsdbError};

/// Series key (JSON) → series id.
pub(super) const SERIES: TableDefinition<&str, u32> = TableDefinition::new("series");
/// Resolution name → end of the last bucket rolled up into it.
pub(super) const WATERMARKS: TableDefinition<&str, i64> = TableDefinition::new("watermarks");
/// `(id, at_ms)` → raw value.
pub(super) const RAW: TableDefinition<(u32, i64), f64> = TableDefinition::new("raw");
const MINUTE: TableDefinition<(u32, i64), Row> = TableDefinition::new("minute");
const FIVE_MINUTES: TableDefinition<(u32, i64), Row> = TableDefinition::new("five_minutes");
const HOUR: TableDefinition<(u32, i64), Row> = TableDefinition::new("hour");

/// The table of an aggregated resolution (`Raw` has none: it is [`RAW`]).
pub(super) fn agg_table(resolution: Resolution) -> TableDefinition<'static, (u32, i64), Row> {
    match resolution {
        Resolution::Raw | Resolution::Minute => MINUTE,
        Resolution::FiveMinutes => FIVE_MINUTES,
        Resolution::Hour => HOUR,
    }
}

/// The watermark's name in [`WATERMARKS`].
pub(super) fn mark_name(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Raw => "raw",
        Resolution::Minute => "minute",
        Resolution::FiveMinutes => "five_minutes",
        Resolution::Hour => "hour",
    }
}

/// An embedded time-series store in one redb file; share it by reference between threads.
pub struct Tsdb {
    pub(super) db: Database,
    pub(super) path: PathBuf,
    pub(super) retention: Retention,
}

impl std::fmt::Debug for Tsdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsdb")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish()
    }
}

impl Tsdb {
    /// Opens the store at `path`, creating it (and its tables) if the file does not exist.
    pub fn open(path: &Path, retention: Retention) -> Result<Tsdb, TsdbError> {
        let open = |source: redb::Error| TsdbError::Open {
            path: path.to_path_buf(),
            source,
        };
        let db = Database::create(path).map_err(|e| open(e.into()))?;
        let txn = db.begin_write().map_err(|e| open(e.into()))?;
        {
            txn.open_table(SERIES).map_err(|e| open(e.into()))?;
            txn.open_table(WATERMARKS).map_err(|e| open(e.into()))?;
            txn.open_table(RAW).map_err(|e| open(e.into()))?;
            for r in &Resolution::ALL[1..] {
                txn.open_table(agg_table(*r)).map_err(|e| open(e.into()))?;
            }
        }
        txn.commit().map_err(|e| open(e.into()))?;
        Ok(Tsdb {
            db,
            path: path.to_path_buf(),
            retention,
        })
    }

    /// Maps a redb error to [`TsdbError::Store`] naming this store.
    pub(super) fn err<E: Into<redb::Error>>(&self) -> impl FnOnce(E) -> TsdbError + '_ {
        |e| TsdbError::Store {
            path: self.path.clone(),
            source: e.into(),
        }
    }

    /// Appends one sample per series at `at_ms`, in one write transaction. Non-finite
    /// values are skipped; a sample at a time already stored for its series replaces it.
    pub fn append(&self, at_ms: i64, samples: &[(SeriesKey, f64)]) -> Result<(), TsdbError> {
        let txn = self.db.begin_write().map_err(self.err())?;
        {
            let mut series = txn.open_table(SERIES).map_err(self.err())?;
            let mut raw = txn.open_table(RAW).map_err(self.err())?;
            for (key, value) in samples {
                if !value.is_finite() {
                    continue;
                }
                let name = encode(key);
                let known = series
                    .get(name.as_str())
                    .map_err(self.err())?
                    .map(|g| g.value());
                let id = match known {
                    Some(id) => id,
                    None => {
                        let count = series.len().map_err(self.err())?;
                        let id = u32::try_from(count).map_err(|_| TsdbError::TooManySeries {
                            path: self.path.clone(),
                            count,
                        })?;
                        series.insert(name.as_str(), id).map_err(self.err())?;
                        id
                    }
                };
                raw.insert((id, at_ms), value).map_err(self.err())?;
            }
        }
        txn.commit().map_err(self.err())
    }

    /// The points of `key` in `[from_ms, to_ms]` at `resolution`, in time order (buckets
    /// whose start lies in the range; empty for an unknown series).
    pub fn query(
        &self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<Point>, TsdbError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let series = txn.open_table(SERIES).map_err(self.err())?;
        let Some(id) = series
            .get(encode(key).as_str())
            .map_err(self.err())?
            .map(|g| g.value())
        else {
            return Ok(Vec::new());
        };
        let reader = Reader {
            db: self,
            txn: &txn,
        };
        let rows = reader.aggregates(id, from_ms, to_ms, resolution)?;
        Ok(rows.into_iter().map(|(at, agg)| agg.point(at)).collect())
    }

    /// The finest resolution whose retention covers `from_ms` now and that yields at most
    /// `max_points` over `[from_ms, to_ms]` (see [`Retention::pick`]).
    pub fn pick(&self, from_ms: i64, to_ms: i64, max_points: usize) -> Resolution {
        self.retention.pick(now_ms(), from_ms, to_ms, max_points)
    }

    /// Every series in the store, sorted.
    pub fn series(&self) -> Result<Vec<SeriesKey>, TsdbError> {
        let txn = self.db.begin_read().map_err(self.err())?;
        let table = txn.open_table(SERIES).map_err(self.err())?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(self.err())? {
            let (name, _) = entry.map_err(self.err())?;
            out.push(self.decode(name.value())?);
        }
        out.sort();
        Ok(out)
    }

    /// The series ids, in id order.
    pub(super) fn ids(
        &self,
        table: &impl ReadableTable<&'static str, u32>,
    ) -> Result<Vec<u32>, TsdbError> {
        let mut ids = Vec::new();
        for entry in table.iter().map_err(self.err())? {
            ids.push(entry.map_err(self.err())?.1.value());
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn decode(&self, name: &str) -> Result<SeriesKey, TsdbError> {
        serde_json::from_str(name).map_err(|e| TsdbError::BadSeries {
            path: self.path.clone(),
            entry: name.to_string(),
            reason: e.to_string(),
        })
    }
}

/// Reads aggregates of one series within a read transaction.
struct Reader<'a> {
    db: &'a Tsdb,
    txn: &'a redb::ReadTransaction,
}

impl Reader<'_> {
    /// Stored buckets before the resolution's watermark, then the finer resolution
    /// aggregated on the fly from the watermark on.
    fn aggregates(
        &self,
        id: u32,
        from: i64,
        to: i64,
        resolution: Resolution,
    ) -> Result<Vec<(i64, Agg)>, TsdbError> {
        if to < from {
            return Ok(Vec::new());
        }
        let Some(source) = resolution.source() else {
            let raw = self.txn.open_table(RAW).map_err(self.db.err())?;
            let mut out = Vec::new();
            for entry in raw.range((id, from)..=(id, to)).map_err(self.db.err())? {
                let (k, v) = entry.map_err(self.db.err())?;
                out.push((k.value().1, Agg::one(v.value())));
            }
            return Ok(out);
        };
        let marks = self.txn.open_table(WATERMARKS).map_err(self.db.err())?;
        let mark = marks
            .get(mark_name(resolution))
            .map_err(self.db.err())?
            .map_or(i64::MIN, |g| g.value());
        let start = resolution.bucket(from);
        let stored_end = to.saturating_add(1).min(mark);
        let mut out = Vec::new();
        if start < stored_end {
            let table = self
                .txn
                .open_table(agg_table(resolution))
                .map_err(self.db.err())?;
            for entry in table
                .range((id, start)..(id, stored_end))
                .map_err(self.db.err())?
            {
                let (k, v) = entry.map_err(self.db.err())?;
                out.push((k.value().1, Agg::from_row(v.value())));
            }
        }
        if to >= mark {
            let finer = self.aggregates(id, start.max(mark), to, source)?;
            out.extend(bucketize(resolution, finer));
        }
        Ok(out)
    }
}

/// A series key's stored name: its JSON (labels in order, so one key has one name).
fn encode(key: &SeriesKey) -> String {
    serde_json::to_string(key).expect("a series key (strings only) always serializes")
}

/// Milliseconds since the epoch by the system clock.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
