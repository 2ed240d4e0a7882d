//! The NAB scorer against its fixed points (perfect 100, null 0) and malformed input.

use std::fs;
use std::path::Path;

use hypernix_monitor::Config;
use hypernix_monitor::nab::scorer::{self, probation_length, scaled_sigmoid};
use hypernix_monitor::nab::{self, Corpus, Error};

const PROFILES: &str = r#"{
 "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
 "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}},
 "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}}
}"#;

fn stamp(i: usize) -> String {
    let t = chrono::NaiveDate::from_ymd_opt(2014, 4, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        + chrono::Duration::minutes(5 * i as i64);
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// A NAB directory with two series of 1000 rows; `a` has two windows, `b` one.
fn corpus_dir(dir: &Path) {
    fs::create_dir_all(dir.join("data/cat")).unwrap();
    for name in ["a", "b"] {
        let mut csv = String::from("timestamp,value\n");
        for i in 0..1000 {
            let spike = if i == 420 || i == 720 { 50.0 } else { 0.0 };
            csv += &format!("{},{}\n", stamp(i), (i % 24) as f64 + spike);
        }
        fs::write(dir.join(format!("data/cat/{name}.csv")), csv).unwrap();
    }
    let w = |a: usize, b: usize| format!("[\"{}.000000\", \"{}.000000\"]", stamp(a), stamp(b));
    let windows = format!(
        "{{\"cat/a.csv\": [{}, {}], \"cat/b.csv\": [{}]}}",
        w(400, 450),
        w(700, 760),
        w(500, 540)
    );
    fs::write(dir.join("combined_windows.json"), windows).unwrap();
    fs::write(dir.join("profiles.json"), PROFILES).unwrap();
}

fn loaded() -> (tempfile::TempDir, Corpus) {
    let dir = tempfile::tempdir().unwrap();
    corpus_dir(dir.path());
    let corpus = Corpus::load(dir.path()).unwrap();
    (dir, corpus)
}

#[test]
fn sigmoid_and_probation_follow_nab() {
    assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
    assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
    assert_eq!(scaled_sigmoid(0.0), 0.0);
    assert_eq!(scaled_sigmoid(3.0), -1.0);
    assert_eq!(probation_length(1000), 150);
    assert_eq!(probation_length(22695), 750);
}

#[test]
fn windows_map_to_rows() {
    let (_dir, corpus) = loaded();
    assert_eq!(corpus.series.len(), 2);
    assert_eq!(corpus.series[0].windows, vec![(400, 450), (700, 760)]);
    assert_eq!(corpus.series[1].windows, vec![(500, 540)]);
}

#[test]
fn perfect_detector_scores_100_and_null_0() {
    let (_dir, corpus) = loaded();
    let perfect: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            let mut v = vec![0.0; s.values.len()];
            for &(a, _) in &s.windows {
                v[a] = 1.0;
            }
            v
        })
        .collect();
    let null: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| vec![0.5; s.values.len()])
        .collect();
    for profile in &corpus.profiles {
        let p = scorer::score_corpus(&corpus.series, &perfect, profile);
        assert!(
            (p.normalized - 100.0).abs() < 1e-9,
            "{}: {p:?}",
            profile.name
        );
        let n = scorer::score_corpus(&corpus.series, &null, profile);
        assert!(n.normalized.abs() < 1e-9, "{}: {n:?}", profile.name);
        assert_eq!(n.null, -3.0 * profile.costs.fn_);
    }
}

#[test]
fn late_detections_and_false_positives_cost() {
    let (_dir, corpus) = loaded();
    let standard = &corpus.profiles[0];
    // Detect every window at its last row: S(-1/w) each, below 100.
    let late: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            let mut v = vec![0.0; s.values.len()];
            for &(_, b) in &s.windows {
                v[b] = 1.0;
            }
            v
        })
        .collect();
    let p = scorer::score_corpus(&corpus.series, &late, standard);
    let expected = [51.0, 61.0, 41.0]
        .iter()
        .map(|w| scaled_sigmoid(-1.0 / w) / scaled_sigmoid(-1.0))
        .sum::<f64>();
    assert!((p.raw - expected).abs() < 1e-9, "{p:?} vs {expected}");
    // One false positive before any window costs the full FP weight.
    let mut fp = late.clone();
    fp[0][200] = 1.0;
    let q = scorer::score_corpus(&corpus.series, &fp, standard);
    assert!((q.raw - (expected - 0.11)).abs() < 1e-9, "{q:?}");
}

#[test]
fn run_writes_nab_layout() {
    let (dir, corpus) = loaded();
    let out = dir.path().join("results");
    let eval = nab::run(&corpus, &Config::default(), &out, |_| {}).unwrap();
    assert_eq!(eval.rows, 2000);
    assert_eq!(eval.profiles.len(), 3);
    let text = fs::read_to_string(out.join("hypernix/cat/hypernix_a.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[400][3], "1");
    assert_eq!(rows[399][3], "0");
    for r in &rows {
        let s: f64 = r[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&s));
    }
}

#[test]
fn malformed_input_is_a_clear_error() {
    let missing = tempfile::tempdir().unwrap();
    let e = Corpus::load(missing.path()).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(e.to_string().contains("combined_windows.json"), "{e}");

    let (dir, _) = loaded();
    fs::write(dir.path().join("profiles.json"), "{not json").unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Json { .. }), "{e}");

    fs::write(
        dir.path().join("profiles.json"),
        r#"{"standard": {"CostMatrix": {"tpWeight": 1, "fpWeight": 1, "fnWeight": 1}}}"#,
    )
    .unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(matches!(e, Error::NoProfile("reward_low_FP_rate")), "{e}");

    fs::write(dir.path().join("profiles.json"), PROFILES).unwrap();
    fs::write(
        dir.path().join("data/cat/a.csv"),
        "timestamp,value\n2014-04-01 00:00:00,1\nnonsense\n",
    )
    .unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("a.csv:3"), "{e}");

    fs::write(
        dir.path().join("data/cat/a.csv"),
        "timestamp,value\n2014-04-01 00:00:00,abc\n",
    )
    .unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("bad value"), "{e}");

    fs::write(dir.path().join("data/cat/a.csv"), "time,v\n").unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("header"), "{e}");

    fs::write(
        dir.path().join("data/cat/c.csv"),
        "timestamp,value\n2014-04-01 00:00:00,1\n",
    )
    .unwrap();
    fs::remove_file(dir.path().join("data/cat/a.csv")).unwrap();
    let e = Corpus::load(dir.path()).unwrap_err();
    assert!(matches!(e, Error::NoWindows(_)), "{e}");
}

#[test]
fn detector_is_bounded_and_in_range() {
    let mut d = hypernix_monitor::Detector::new(Config::default());
    for i in 0..50_000 {
        let s = d.step(((i % 97) as f64).sin() * 10.0 + if i % 5000 == 0 { 100.0 } else { 0.0 });
        assert!((0.0..=1.0).contains(&s));
    }
    assert!(d.memory_bytes() < 16 * 1024, "{}", d.memory_bytes());
    assert_eq!(d.step(f64::NAN), 0.0);
}

/// The real corpus, when present beside the checkout (`../shared/data/nab`).
#[test]
fn real_corpus_fixed_points() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab");
    if !dir.join("combined_windows.json").exists() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let corpus = Corpus::load(&dir).unwrap();
    assert_eq!(corpus.series.len(), 58);
    assert_eq!(corpus.rows(), 365_558);
    let perfect: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| {
            let mut v = vec![0.0; s.values.len()];
            for &(a, _) in &s.windows {
                v[a] = 1.0;
            }
            v
        })
        .collect();
    let null: Vec<Vec<f64>> = corpus
        .series
        .iter()
        .map(|s| vec![0.5; s.values.len()])
        .collect();
    for profile in &corpus.profiles {
        let p = scorer::score_corpus(&corpus.series, &perfect, profile);
        assert!(
            (p.normalized - 100.0).abs() < 1e-9,
            "{}: {p:?}",
            profile.name
        );
        let n = scorer::score_corpus(&corpus.series, &null, profile);
        assert!(n.normalized.abs() < 1e-9, "{}: {n:?}", profile.name);
    }
}

#[test]
fn read_csv_gives_epoch_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vm.csv");
    fs::write(
        &path,
        "timestamp,value\n1970-01-01 00:00:01,2.5\n2014-04-01 00:05:00,-1\n",
    )
    .unwrap();
    let rows = nab::read_csv(&path).unwrap();
    assert_eq!(rows, vec![(1_000, 2.5), (1_396_310_700_000, -1.0)]);
    fs::write(&path, "timestamp,value\n2014-04-01 25:00:00,1\n").unwrap();
    let e = nab::read_csv(&path).unwrap_err();
    assert!(e.to_string().contains("vm.csv:2: bad timestamp"), "{e}");
}
