//! Retention: which snapshots a policy keeps. Pure functions of the snapshot times and
//! "now", so they are tested exhaustively with proptest.
//!
//! - Progressive: every snapshot younger than `keep_all` is kept; past each rule's `age`
//!   (the oldest rule whose age is reached applies), the newest snapshot of each
//!   `interval`-long time bucket is kept.
//! - GFS: the `last` newest, then the newest of each of the latest N hours, days, ISO
//!   weeks, months and years that have snapshots (restic's `forget --keep-*`).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;

/// A progressive thinning rule: past `age`, one snapshot per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Age from which the rule applies.
    pub age: Duration,
    /// Bucket length.
    pub interval: Duration,
}

/// Counts per period of the grandfather-father-son scheme (the configuration's
/// `retention.gfs`); `None` keeps none by it.
pub use hypernix_config::schema::backup::Gfs as GfsCounts;

/// A retention policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Fewer snapshots the older they are.
    Progressive {
        /// Everything younger is kept.
        keep_all: Duration,
        /// Thinning rules.
        rules: Vec<Rule>,
    },
    /// Counts per period; a policy with no count keeps everything.
    Gfs(GfsCounts),
}

impl From<&hypernix_config::schema::backup::Retention> for Policy {
    fn from(r: &hypernix_config::schema::backup::Retention) -> Self {
        use hypernix_config::schema::backup::RetentionMode;
        match r.mode {
            RetentionMode::Progressive => Policy::Progressive {
                keep_all: r.progressive.keep_all.std(),
                rules: r
                    .progressive
                    .rules
                    .iter()
                    .map(|rule| Rule {
                        age: rule.age.std(),
                        interval: rule.interval.std(),
                    })
                    .collect(),
            },
            RetentionMode::GrandfatherFatherSon => Policy::Gfs(r.gfs),
        }
    }
}

/// The verdict on one snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Index into the input.
    pub index: usize,
    /// Kept or forgotten.
    pub keep: bool,
    /// Why.
    pub reason: String,
}

/// Decides, for each snapshot time, whether `policy` keeps it at `now`.
pub fn select(times: &[DateTime<Utc>], now: DateTime<Utc>, policy: &Policy) -> Vec<Decision> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((times[i], i)));
    let mut out = match policy {
        Policy::Progressive { keep_all, rules } => {
            progressive(times, &order, now, *keep_all, rules)
        }
        Policy::Gfs(counts) => gfs(times, &order, counts),
    };
    out.sort_by_key(|d| d.index);
    out
}

fn progressive(
    times: &[DateTime<Utc>],
    order: &[usize],
    now: DateTime<Utc>,
    keep_all: Duration,
    rules: &[Rule],
) -> Vec<Decision> {
    let mut seen = HashSet::new();
    order
        .iter()
        .map(|&index| {
            let age = (now - times[index]).to_std().unwrap_or_default();
            let (keep, reason) = if age < keep_all {
                (true, "within keepAll".to_string())
            } else {
                match rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.age <= age)
                    .max_by_key(|(_, r)| r.age)
                {
                    None => (true, "younger than every rule".to_string()),
                    Some((r, rule)) => {
                        let interval = rule.interval.as_secs().max(1) as i64;
                        let bucket = times[index].timestamp().div_euclid(interval);
                        let keep = seen.insert((r, bucket));
                        let what = if keep { "newest" } else { "not the newest" };
                        (
                            keep,
                            format!(
                                "{what} in its {}s interval past {}s",
                                interval,
                                rule.age.as_secs()
                            ),
                        )
                    }
                }
            };
            Decision {
                index,
                keep,
                reason,
            }
        })
        .collect()
}

/// The bucket of a time within one GFS period.
type BucketOf = fn(&DateTime<Utc>) -> i64;

fn gfs(times: &[DateTime<Utc>], order: &[usize], c: &GfsCounts) -> Vec<Decision> {
    let periods: [(&str, Option<u32>, BucketOf); 5] = [
        ("hourly", c.hourly, |t| t.timestamp().div_euclid(3600)),
        ("daily", c.daily, |t| i64::from(t.num_days_from_ce())),
        ("weekly", c.weekly, |t| {
            let w = t.iso_week();
            i64::from(w.year()) * 100 + i64::from(w.week())
        }),
        ("monthly", c.monthly, |t| {
            i64::from(t.year()) * 100 + i64::from(t.month())
        }),
        ("yearly", c.yearly, |t| i64::from(t.year())),
    ];
    let no_policy = c.last.is_none() && periods.iter().all(|p| p.1.is_none());
    let mut left: Vec<u32> = periods.iter().map(|p| p.1.unwrap_or(0)).collect();
    let mut last_bucket: Vec<Option<i64>> = vec![None; periods.len()];
    order
        .iter()
        .enumerate()
        .map(|(rank, &index)| {
            let mut reasons = Vec::new();
            if no_policy {
                reasons.push("no GFS count is set".to_string());
            }
            if c.last.is_some_and(|n| (rank as u64) < u64::from(n)) {
                reasons.push("last".to_string());
            }
            for (p, (name, _, bucket_of)) in periods.iter().enumerate() {
                let bucket = bucket_of(&times[index]);
                if left[p] > 0 && last_bucket[p] != Some(bucket) {
                    left[p] -= 1;
                    reasons.push(name.to_string());
                }
                last_bucket[p] = Some(bucket);
            }
            Decision {
                index,
                keep: !reasons.is_empty(),
                reason: if reasons.is_empty() {
                    "matches no count".into()
                } else {
                    reasons.join(", ")
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
