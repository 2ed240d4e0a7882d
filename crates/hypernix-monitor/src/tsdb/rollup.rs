//! Bucket aggregates and how they combine.

use std::collections::BTreeMap;

use super::{Point, Resolution};

/// A stored bucket: `(min, max, sum, last, count)`.
pub(super) type Row = (f64, f64, f64, f64, u32);

/// The aggregates of a set of samples; combining two in time order gives those of the
/// union (the sum, not the mean, is kept so means of unequal buckets combine exactly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Agg {
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
    count: u32,
}

impl Agg {
    /// One sample.
    pub(super) fn one(value: f64) -> Agg {
        Agg {
            min: value,
            max: value,
            sum: value,
            last: value,
            count: 1,
        }
    }

    /// A stored bucket.
    pub(super) fn from_row((min, max, sum, last, count): Row) -> Agg {
        Agg {
            min,
            max,
            sum,
            last,
            count,
        }
    }

    /// The stored form.
    pub(super) fn row(self) -> Row {
        (self.min, self.max, self.sum, self.last, self.count)
    }

    /// Adds `later`, whose samples all come after this one's.
    pub(super) fn merge(&mut self, later: Agg) {
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.sum += later.sum;
        self.last = later.last;
        self.count = self.count.saturating_add(later.count);
    }

    /// The point at `at_ms`.
    pub(super) fn point(self, at_ms: i64) -> Point {
        Point {
            at_ms,
            min: self.min,
            max: self.max,
            mean: self.sum / f64::from(self.count.max(1)),
            last: self.last,
            count: self.count,
        }
    }
}

/// Groups time-ordered aggregates into buckets of `resolution`, in time order.
pub(super) fn bucketize(
    resolution: Resolution,
    items: impl IntoIterator<Item = (i64, Agg)>,
) -> Vec<(i64, Agg)> {
    let mut buckets: BTreeMap<i64, Agg> = BTreeMap::new();
    for (at, agg) in items {
        buckets
            .entry(resolution.bucket(at))
            .and_modify(|b| b.merge(agg))
            .or_insert(agg);
    }
    buckets.into_iter().collect()
}
