//! Properties of the retention selection.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::{GfsCounts, Policy, Rule, select};

const NOW: i64 = 1_800_000_000;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap()
}

fn kept(times: &[DateTime<Utc>], policy: &Policy) -> Vec<DateTime<Utc>> {
    select(times, at(NOW), policy)
        .into_iter()
        .filter(|d| d.keep)
        .map(|d| times[d.index])
        .collect()
}

fn times() -> impl Strategy<Value = Vec<DateTime<Utc>>> {
    // Up to two years back, so every rule band is populated.
    prop::collection::vec(0i64..(2 * 365 * 86_400), 0..120)
        .prop_map(|ages| ages.into_iter().map(|a| at(NOW - a)).collect())
}

fn progressive() -> impl Strategy<Value = Policy> {
    (0u64..10, prop::collection::vec((1u64..400, 1u64..40), 0..5)).prop_map(|(keep_days, rules)| {
        let day = 86_400;
        Policy::Progressive {
            keep_all: Duration::from_secs(keep_days * day),
            rules: rules
                .into_iter()
                .map(|(age, interval)| Rule {
                    age: Duration::from_secs(age * day),
                    interval: Duration::from_secs(interval * 3_600),
                })
                .collect(),
        }
    })
}

fn gfs() -> impl Strategy<Value = GfsCounts> {
    let n = || prop::option::of(0u32..8);
    (n(), n(), n(), n(), n(), n()).prop_map(|(last, hourly, daily, weekly, monthly, yearly)| {
        GfsCounts {
            last,
            hourly,
            daily,
            weekly,
            monthly,
            yearly,
        }
    })
}

proptest! {
    #[test]
    fn progressive_keeps_young_ones_and_one_per_bucket(times in times(), policy in progressive()) {
        let Policy::Progressive { keep_all, rules } = &policy else { unreachable!() };
        let decisions = select(&times, at(NOW), &policy);
        let mut per_bucket: HashMap<(usize, i64), (usize, DateTime<Utc>)> = HashMap::new();
        for d in &decisions {
            let t = times[d.index];
            let age = (at(NOW) - t).to_std().unwrap();
            if age < *keep_all {
                prop_assert!(d.keep, "young snapshot {t} forgotten");
                continue;
            }
            let Some((r, rule)) = rules.iter().enumerate().filter(|(_, r)| r.age <= age).max_by_key(|(_, r)| r.age) else {
                prop_assert!(d.keep);
                continue;
            };
            let bucket = t.timestamp().div_euclid(rule.interval.as_secs() as i64);
            let entry = per_bucket.entry((r, bucket)).or_insert((0, t));
            entry.0 += usize::from(d.keep);
            entry.1 = entry.1.max(t);
            if d.keep {
                prop_assert_eq!(entry.1, t, "a kept snapshot is the newest in its bucket");
            }
        }
        for ((_, _), (count, _)) in per_bucket {
            prop_assert_eq!(count, 1, "exactly one snapshot kept per bucket");
        }
    }

    #[test]
    fn progressive_is_idempotent(times in times(), policy in progressive()) {
        let once = kept(&times, &policy);
        let twice = kept(&once, &policy);
        prop_assert_eq!(once.len(), twice.len());
    }

    #[test]
    fn gfs_keeps_the_last_n_and_no_more_than_the_counts(times in times(), counts in gfs()) {
        let policy = Policy::Gfs(counts);
        let kept = kept(&times, &policy);
        let limits = [counts.last, counts.hourly, counts.daily, counts.weekly, counts.monthly, counts.yearly];
        if limits.iter().all(Option::is_none) {
            prop_assert_eq!(kept.len(), times.len());
            return Ok(());
        }
        let total: u32 = limits.iter().flatten().sum();
        prop_assert!(kept.len() <= total as usize);
        let mut newest = times.clone();
        newest.sort_by(|a, b| b.cmp(a));
        let kept_set: HashSet<_> = kept.iter().collect();
        for t in newest.iter().take(counts.last.unwrap_or(0) as usize) {
            prop_assert!(kept_set.contains(t), "one of the last {:?} forgotten", counts.last);
        }
        let again = super::select(&kept, at(NOW), &policy);
        prop_assert!(again.iter().all(|d| d.keep), "GFS is idempotent");
    }
}

#[test]
fn daily_keeps_the_newest_of_each_day() {
    let day = 86_400;
    let times = [
        at(NOW - 10),
        at(NOW - 20),
        at(NOW - day - 5),
        at(NOW - day - 50),
        at(NOW - 3 * day),
    ];
    let policy = Policy::Gfs(GfsCounts {
        daily: Some(2),
        ..GfsCounts::default()
    });
    let keep: Vec<bool> = select(&times, at(NOW), &policy)
        .iter()
        .map(|d| d.keep)
        .collect();
    // NOW is 1_800_000_000 = 2027-01-15T08:00:00Z, so NOW-10 and NOW-20 share a day.
    assert_eq!(keep, [true, false, true, false, false]);
}
