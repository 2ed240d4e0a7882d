//! Roll-ups of closed buckets and retention.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use super::rollup::{Agg, Row, bucketize};
use super::store::{RAW, SERIES, WATERMARKS, agg_table, mark_name};
use super::{CompactStats, Resolution, Tsdb, TsdbError};

/// The aggregated resolutions, each rolled up from the one before it.
const ROLLED: [Resolution; 3] = [
    Resolution::Minute,
    Resolution::FiveMinutes,
    Resolution::Hour,
];

impl Tsdb {
    /// Rolls every bucket closed at `now_ms` up raw → 1 min → 5 min → 1 h (each bucket
    /// once: a per-resolution watermark marks the end of the last one rolled), then
    /// deletes points older than each resolution's retention (never points not yet rolled
    /// up); one write transaction.
    pub fn compact(&self, now_ms: i64) -> Result<CompactStats, TsdbError> {
        let txn = self.db.begin_write().map_err(self.err())?;
        let ids = self.ids(&txn.open_table(SERIES).map_err(self.err())?)?;
        let mut stats = CompactStats::default();
        let mut source_mark = i64::MAX;
        for resolution in ROLLED {
            // Aligned to the bucket, and within what the source has rolled up.
            let end = resolution.bucket(now_ms.min(source_mark));
            stats.buckets_written += self.roll_up(&txn, &ids, resolution, end)?;
            source_mark = self.mark(&txn, resolution)?;
        }
        for resolution in Resolution::ALL {
            let mut cutoff = self.retention.cutoff(resolution, now_ms);
            if let Some(&next) = ROLLED.iter().find(|r| r.source() == Some(resolution)) {
                cutoff = cutoff.min(self.mark(&txn, next)?);
            }
            stats.points_deleted += match resolution {
                Resolution::Raw => self.expire(&txn, RAW, &ids, cutoff)?,
                r => self.expire(&txn, agg_table(r), &ids, cutoff)?,
            };
        }
        txn.commit().map_err(self.err())?;
        Ok(stats)
    }

    /// The watermark of `resolution` (`i64::MIN` before its first roll-up).
    fn mark(&self, txn: &WriteTransaction, resolution: Resolution) -> Result<i64, TsdbError> {
        let marks = txn.open_table(WATERMARKS).map_err(self.err())?;
        let mark = marks.get(mark_name(resolution)).map_err(self.err())?;
        Ok(mark.map_or(i64::MIN, |g| g.value()))
    }

    /// Rolls the source points from the watermark up to `end` into `resolution`'s
    /// buckets and moves the watermark to `end`; returns the buckets written.
    fn roll_up(
        &self,
        txn: &WriteTransaction,
        ids: &[u32],
        resolution: Resolution,
        end: i64,
    ) -> Result<u64, TsdbError> {
        let mark = self.mark(txn, resolution)?;
        if end <= mark {
            return Ok(0);
        }
        let mut target = txn.open_table(agg_table(resolution)).map_err(self.err())?;
        let span = (resolution, mark, end);
        let written = match resolution.source() {
            Some(Resolution::Raw) | None => {
                let raw = txn.open_table(RAW).map_err(self.err())?;
                self.roll_series(&raw, &mut target, ids, span, Agg::one)?
            }
            Some(source) => {
                let table = txn.open_table(agg_table(source)).map_err(self.err())?;
                self.roll_series(&table, &mut target, ids, span, Agg::from_row)?
            }
        };
        let mut marks = txn.open_table(WATERMARKS).map_err(self.err())?;
        marks
            .insert(mark_name(resolution), end)
            .map_err(self.err())?;
        Ok(written)
    }

    /// For each series, aggregates the `source` points in `[from, end)` into buckets of
    /// `resolution` and writes them to `target`; returns the buckets written.
    fn roll_series<V: redb::Value + 'static>(
        &self,
        source: &impl ReadableTable<(u32, i64), V>,
        target: &mut Table<(u32, i64), Row>,
        ids: &[u32],
        (resolution, from, end): (Resolution, i64, i64),
        agg: impl Fn(V::SelfType<'_>) -> Agg,
    ) -> Result<u64, TsdbError> {
        let mut written = 0;
        for &id in ids {
            let mut items = Vec::new();
            for entry in source.range((id, from)..(id, end)).map_err(self.err())? {
                let (k, v) = entry.map_err(self.err())?;
                items.push((k.value().1, agg(v.value())));
            }
            for (bucket, a) in bucketize(resolution, items) {
                target.insert((id, bucket), a.row()).map_err(self.err())?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Deletes every point of `table` before `cutoff`; returns how many.
    fn expire<V: redb::Value + 'static>(
        &self,
        txn: &WriteTransaction,
        table: TableDefinition<(u32, i64), V>,
        ids: &[u32],
        cutoff: i64,
    ) -> Result<u64, TsdbError> {
        if cutoff == i64::MIN {
            return Ok(0);
        }
        let mut table = txn.open_table(table).map_err(self.err())?;
        let mut deleted = 0;
        for &id in ids {
            let gone = table
                .extract_from_if((id, i64::MIN)..(id, cutoff), |_, _| true)
                .map_err(self.err())?;
            for entry in gone {
                entry.map_err(self.err())?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}
