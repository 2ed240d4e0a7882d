//! The time-series store: roll-ups on a known series, retention, reopening, damaged
//! files, non-finite samples, and 1-minute aggregates against the raw points.

use std::collections::BTreeMap;
use std::time::Duration;

use hypernix_monitor::tsdb::{Point, Resolution, Retention, SeriesKey, Tsdb, TsdbError};
use proptest::prelude::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn store(retention: Retention) -> (tempfile::TempDir, Tsdb) {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(&dir.path().join("metrics.redb"), retention).unwrap();
    (dir, db)
}

fn cpu() -> SeriesKey {
    SeriesKey::new("cpu").with("unit", "web")
}

/// Sample `i` at `10 s · i` with value `i`, for two hours.
fn ramp(db: &Tsdb) {
    for i in 0..720 {
        db.append(i * 10_000, &[(cpu(), i as f64)]).unwrap();
    }
}

/// The bucket of `n` consecutive ramp samples starting at sample `first`.
fn bucket(at_ms: i64, first: i64, n: i64) -> Point {
    Point {
        at_ms,
        min: first as f64,
        max: (first + n - 1) as f64,
        mean: first as f64 + (n - 1) as f64 / 2.0,
        last: (first + n - 1) as f64,
        count: n as u32,
    }
}

#[test]
fn roll_ups_are_exact_on_a_known_series() {
    let (_dir, db) = store(Retention::default());
    ramp(&db);
    let expect = |res: Resolution, k: i64| {
        let n = res.step_ms() / 10_000;
        bucket(k * res.step_ms(), k * n, n)
    };
    let check = |db: &Tsdb| {
        let minutes = db.query(&cpu(), 0, 2 * HOUR, Resolution::Minute).unwrap();
        assert_eq!(minutes.len(), 120);
        assert_eq!(minutes[0], expect(Resolution::Minute, 0));
        assert_eq!(minutes[77], expect(Resolution::Minute, 77));
        let fives = db
            .query(&cpu(), 0, 2 * HOUR, Resolution::FiveMinutes)
            .unwrap();
        assert_eq!(fives.len(), 24);
        assert_eq!(fives[13], expect(Resolution::FiveMinutes, 13));
        let hours = db.query(&cpu(), 0, 2 * HOUR, Resolution::Hour).unwrap();
        assert_eq!(
            hours,
            vec![expect(Resolution::Hour, 0), expect(Resolution::Hour, 1)]
        );
    };
    // Before compaction the buckets are aggregated from raw on the fly ...
    check(&db);
    let stats = db.compact(2 * HOUR).unwrap();
    assert_eq!(stats.buckets_written, 120 + 24 + 2);
    assert_eq!(stats.points_deleted, 0);
    // ... and after it they are read back stored, the same.
    check(&db);
    // Each bucket is rolled up once.
    assert_eq!(db.compact(2 * HOUR).unwrap().buckets_written, 0);
    let raw = db.query(&cpu(), 60_000, 80_000, Resolution::Raw).unwrap();
    assert_eq!(raw.len(), 3);
    assert_eq!(raw[1], bucket(70_000, 7, 1));
}

#[test]
fn a_late_sample_behind_the_watermark_stays_raw() {
    let (_dir, db) = store(Retention::default());
    ramp(&db);
    db.compact(2 * HOUR).unwrap();
    db.append(5_000, &[(cpu(), 1_000.0)]).unwrap();
    assert_eq!(db.compact(2 * HOUR + MIN).unwrap().buckets_written, 0);
    let first = db.query(&cpu(), 0, 0, Resolution::Minute).unwrap();
    assert_eq!(first, vec![bucket(0, 0, 6)]);
    assert_eq!(
        db.query(&cpu(), 0, 9_999, Resolution::Raw).unwrap().len(),
        2
    );
}

#[test]
fn retention_drops_old_points() {
    let hours = |h: u64| Duration::from_secs(h * 3_600);
    let (_dir, db) = store(Retention {
        raw: hours(1),
        minute: hours(2),
        five_minutes: hours(3),
        hour: hours(10),
    });
    for i in 0..1_800 {
        db.append(i * 10_000, &[(cpu(), 1.0)]).unwrap();
    }
    let stats = db.compact(5 * HOUR).unwrap();
    assert_eq!(stats.buckets_written, 300 + 60 + 5);
    // Raw before 4 h (1,440), minutes before 3 h (180), five minutes before 2 h (24).
    assert_eq!(stats.points_deleted, 1_440 + 180 + 24);
    let first = |res| db.query(&cpu(), 0, 5 * HOUR, res).unwrap()[0].at_ms;
    assert_eq!(first(Resolution::Raw), 4 * HOUR);
    assert_eq!(first(Resolution::Minute), 3 * HOUR);
    assert_eq!(first(Resolution::FiveMinutes), 2 * HOUR);
    assert_eq!(first(Resolution::Hour), 0);
    assert_eq!(db.compact(5 * HOUR).unwrap().points_deleted, 0);
}

#[test]
fn retention_never_drops_points_not_yet_rolled_up() {
    let (_dir, db) = store(Retention {
        raw: Duration::ZERO,
        ..Retention::default()
    });
    for i in 0..10 {
        db.append(i * 10_000, &[(cpu(), i as f64)]).unwrap();
    }
    // The minute [0, 60 s) is rolled up and its raw samples go; 60..90 s stay raw.
    let stats = db.compact(95_000).unwrap();
    assert_eq!(stats.points_deleted, 6);
    assert_eq!(db.query(&cpu(), 0, HOUR, Resolution::Raw).unwrap().len(), 4);
    db.compact(120_000).unwrap();
    let minutes = db.query(&cpu(), 0, HOUR, Resolution::Minute).unwrap();
    assert_eq!(minutes, vec![bucket(0, 0, 6), bucket(MIN, 6, 4)]);
}

#[test]
fn reopening_keeps_series_points_and_watermarks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.redb");
    let mem = SeriesKey::new("mem").with("unit", "db");
    {
        let db = Tsdb::open(&path, Retention::default()).unwrap();
        ramp(&db);
        db.append(0, &[(mem.clone(), 42.0)]).unwrap();
        db.compact(HOUR).unwrap();
    }
    let db = Tsdb::open(&path, Retention::default()).unwrap();
    assert_eq!(db.series().unwrap(), vec![cpu(), mem.clone()]);
    let m = db.query(&mem, 0, 0, Resolution::Raw).unwrap();
    assert_eq!(m, vec![bucket(0, 42, 1)]);
    assert_eq!(db.compact(HOUR).unwrap().buckets_written, 0);
    let hours = db.query(&cpu(), 0, 2 * HOUR, Resolution::Hour).unwrap();
    assert_eq!(hours.len(), 2);
    assert_eq!(hours[0], bucket(0, 0, 360));
}

#[test]
fn a_garbage_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.redb");
    let garbage: Vec<u8> = (0..65_536u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, garbage).unwrap();
    let e = Tsdb::open(&path, Retention::default()).unwrap_err();
    assert!(matches!(e, TsdbError::Open { .. }), "{e}");
    assert!(e.to_string().contains("metrics.redb"), "{e}");
    assert!(e.to_string().contains("move it away"), "{e}");
}

#[test]
fn non_finite_samples_are_skipped() {
    let (_dir, db) = store(Retention::default());
    let nan = SeriesKey::new("nan");
    let samples = [
        (cpu(), f64::NAN),
        (nan.clone(), f64::INFINITY),
        (cpu(), 3.0),
    ];
    db.append(1_000, &samples).unwrap();
    db.append(2_000, &[(cpu(), f64::NEG_INFINITY)]).unwrap();
    assert_eq!(db.series().unwrap(), vec![cpu()]);
    let points = db.query(&cpu(), 0, 10_000, Resolution::Raw).unwrap();
    assert_eq!(points, vec![bucket(1_000, 3, 1)]);
    assert!(
        db.query(&nan, 0, 10_000, Resolution::Raw)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn shared_between_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let (_dir, db) = store(Retention::default());
    send_sync(&db);
    std::thread::scope(|s| {
        for t in 0..2 {
            let db = &db;
            s.spawn(move || {
                let key = SeriesKey::new("t").with("n", t.to_string());
                for i in 0..50 {
                    db.append(i * 1_000, &[(key.clone(), i as f64)]).unwrap();
                }
            });
        }
    });
    assert_eq!(db.series().unwrap().len(), 2);
    let key = SeriesKey::new("t").with("n", "1");
    let minute = db.query(&key, 0, MIN, Resolution::Minute).unwrap();
    assert_eq!(minute, vec![bucket(0, 0, 50)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// 1-minute buckets, stored by compaction, equal aggregates of the raw points.
    #[test]
    fn minute_buckets_aggregate_the_raw_points(
        samples in prop::collection::vec((0i64..10 * MIN, -1e6f64..1e6), 1..200)
    ) {
        let (_dir, db) = store(Retention::default());
        let mut expected: BTreeMap<i64, f64> = BTreeMap::new();
        for &(at, v) in &samples {
            db.append(at, &[(cpu(), v)]).unwrap();
            expected.insert(at, v);
        }
        db.compact(HOUR).unwrap();
        let minutes = db.query(&cpu(), 0, 10 * MIN, Resolution::Minute).unwrap();
        let raw = db.query(&cpu(), 0, 10 * MIN, Resolution::Raw).unwrap();
        prop_assert_eq!(raw.len(), expected.len());
        let mut direct: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for p in &raw {
            direct.entry(p.at_ms - p.at_ms % MIN).or_default().push(p.last);
        }
        prop_assert_eq!(minutes.len(), direct.len());
        for (m, (at, values)) in minutes.iter().zip(&direct) {
            prop_assert_eq!(m.at_ms, *at);
            prop_assert_eq!(m.count as usize, values.len());
            prop_assert_eq!(m.min, values.iter().copied().fold(f64::INFINITY, f64::min));
            prop_assert_eq!(m.max, values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            prop_assert_eq!(m.last, *values.last().unwrap());
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            prop_assert!((m.mean - mean).abs() <= 1e-9 * (1.0 + mean.abs()), "{} vs {}", m.mean, mean);
        }
    }
}
