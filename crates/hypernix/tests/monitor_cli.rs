//! `hypernix monitor nab` on a two-series corpus, and on malformed data directories;
//! `hypernix monitor backtest` on the real NAB corpus, on a CSV file and on malformed ones.

mod kit;

use std::fs;
use std::path::{Path, PathBuf};

use kit::{hypernix, text};

const PROFILES: &str = r#"{
 "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
 "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}},
 "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}}
}"#;

/// Row `i` is 5 minutes after row `i - 1`, from 2014-04-01 00:00 (row 288 is a day later).
fn stamp(i: usize) -> String {
    let (day, rest) = (i / 288, i % 288);
    format!(
        "2014-04-{:02} {:02}:{:02}:00",
        1 + day,
        rest / 12,
        rest % 12 * 5
    )
}

/// Two series of 2000 rows in two categories; each has one spike inside its window.
fn corpus(dir: &Path) {
    let mut windows = Vec::new();
    for (category, name, spike) in [("catA", "one", 1200), ("catB", "two", 1500)] {
        fs::create_dir_all(dir.join("data").join(category)).unwrap();
        let mut csv = String::from("timestamp,value\n");
        for i in 0..2000 {
            let v = (i % 48) as f64 + if i == spike { 500.0 } else { 0.0 };
            csv += &format!("{},{v}\n", stamp(i));
        }
        fs::write(dir.join(format!("data/{category}/{name}.csv")), csv).unwrap();
        windows.push(format!(
            "\"{category}/{name}.csv\": [[\"{}.000000\", \"{}.000000\"]]",
            stamp(spike - 50),
            stamp(spike + 50)
        ));
    }
    fs::write(
        dir.join("combined_windows.json"),
        format!("{{{}}}", windows.join(",")),
    )
    .unwrap();
    fs::write(dir.join("profiles.json"), PROFILES).unwrap();
}

#[test]
fn nab_writes_results_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path());
    let out = dir.path().join("out");
    let data = dir.path().to_str().unwrap();
    let o = hypernix(&[
        "monitor",
        "nab",
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["series"], 2);
    assert_eq!(report["rows"], 4000);
    for profile in ["standard", "reward_low_FP_rate", "reward_low_FN_rate"] {
        let score = report["profiles"][profile]["score"].as_f64().unwrap();
        assert!(score.is_finite() && score <= 100.0, "{profile}: {score}");
    }
    assert!(report["ns_per_point"].as_f64().unwrap() > 0.0);
    for (category, name) in [("catA", "one"), ("catB", "two")] {
        let path = out.join(format!("hypernix/{category}/hypernix_{name}.csv"));
        let text = fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
        let mut labelled = 0;
        let mut rows = 0;
        for line in lines {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 4, "{line}");
            let score: f64 = cols[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&score), "{line}");
            labelled += usize::from(cols[3] == "1");
            rows += 1;
        }
        assert_eq!((rows, labelled), (2000, 101));
    }

    let table = hypernix(&[
        "monitor",
        "nab",
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("standard") && text.contains("ns/point"),
        "{text}"
    );
}

#[test]
fn nab_reports_malformed_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |data: &Path| {
        hypernix(&[
            "monitor",
            "nab",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = run(&dir.path().join("missing"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("combined_windows.json"));

    corpus(dir.path());
    fs::write(
        dir.path().join("data/catA/one.csv"),
        "timestamp,value\n2014-04-01 00:00:00,x\n",
    )
    .unwrap();
    let o = run(dir.path());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("one.csv:2") && err.contains("bad value"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The real NAB corpus beside the checkout (`../shared/data/nab`).
fn real_nab() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab");
    assert!(
        dir.join("data/realAWSCloudwatch").is_dir(),
        "{} is missing beside the checkout",
        dir.display()
    );
    dir
}

#[test]
fn backtest_runs_over_real_aws_cloudwatch() {
    let data = real_nab();
    let o = hypernix(&[
        "monitor",
        "backtest",
        "--data",
        data.to_str().unwrap(),
        "--origins",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["horizon"], 12);
    assert!(report["season"].is_null(), "{report}");
    let rows = report["series"].as_array().unwrap();
    assert_eq!(rows.len(), 17);
    let mut sum = 0.0;
    for row in rows {
        let name = row["series"].as_str().unwrap();
        assert!(name.starts_with("realAWSCloudwatch/"), "{row}");
        assert_eq!(row["origins"], 1, "{row}");
        let model = row["model_mase"].as_f64().unwrap();
        assert!(model.is_finite() && model >= 0.0, "{row}");
        assert!(row["naive_mase"].as_f64().unwrap() >= 0.0, "{row}");
        sum += model;
    }
    let mean = report["mean"]["model_mase"].as_f64().unwrap();
    assert!((mean - sum / 17.0).abs() < 1e-12, "{report}");
    assert!(report["seconds"].as_f64().unwrap() > 0.0);
}

/// A 5-minute `timestamp,value` file of `n` rows with a season of 24 points.
fn seasonal_csv(path: &Path, n: usize) {
    let mut csv = String::from("timestamp,value\n");
    for i in 0..n {
        let v = 10.0 + 5.0 * (i as f64 / 24.0 * std::f64::consts::TAU).sin() + (i % 5) as f64 * 0.1;
        csv += &format!("{},{v}\n", stamp(i));
    }
    fs::write(path, csv).unwrap();
}

#[test]
fn backtest_runs_on_a_csv_file() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("vm.csv");
    seasonal_csv(&csv, 600);
    let o = hypernix(&[
        "monitor",
        "backtest",
        "--csv",
        csv.to_str().unwrap(),
        "--season",
        "24",
        "--origins",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("MODEL MASE") && out.contains("vm.csv"),
        "{out}"
    );
    assert!(out.contains("mean over 1 series"), "{out}");
}

#[test]
fn backtest_reports_malformed_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    let run = || {
        hypernix(&[
            "monitor",
            "backtest",
            "--csv",
            csv.to_str().unwrap(),
            "--origins",
            "2",
        ])
    };
    fs::write(
        &csv,
        "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,oops\n",
    )
    .unwrap();
    let o = run();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("bad.csv:3") && err.contains("bad value"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    fs::write(&csv, "when,what\n").unwrap();
    let err = text(&run().stderr);
    assert!(err.contains("header"), "{err}");

    // Too short for two origins of 12 after the 10 points a forecast needs.
    seasonal_csv(&csv, 20);
    let o = run();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("backtesting") && err.contains("at least 34"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
