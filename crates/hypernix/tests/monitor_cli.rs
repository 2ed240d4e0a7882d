//! `hypernix monitor nab` on a two-series corpus, and on malformed data directories.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const PROFILES: &str = r#"{
 "standard": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}},
 "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0}},
 "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0}}
}"#;

fn hypernix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hypernix"))
        .args(args)
        .output()
        .expect("run hypernix")
}

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
