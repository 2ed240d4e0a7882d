//! The `monitor` subcommands that ask the daemon: alerts, why, capacity, query.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use hypernix_api::client::Client;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::OutputArgs;
use crate::output;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    id: u64,
    time: DateTime<Utc>,
    detector: String,
    series: String,
    value: f64,
    score: f64,
}

const ALERT_FIELDS: &str = "id time detector series metric unit value score";

pub fn alerts(client: &Client, limit: usize, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let q = format!("query($limit: Int!) {{ alerts(limit: $limit) {{ {ALERT_FIELDS} }} }}");
    let alerts: Value = client.request(&q, json!({ "limit": limit }), "alerts")?;
    if out.json {
        output::json(&alerts)?;
        return Ok(ExitCode::SUCCESS);
    }
    let alerts: Vec<Alert> = serde_json::from_value(alerts)?;
    let mut t = output::table(["ID", "TIME", "DETECTOR", "SERIES", "VALUE", "SCORE"]);
    for a in alerts {
        t.add_row([
            a.id.to_string(),
            a.time.format("%Y-%m-%d %H:%M:%S").to_string(),
            a.detector,
            a.series,
            format!("{:.4}", a.value),
            format!("{:.2}", a.score),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub fn why(client: &Client, alert: u64, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let q = format!(
        "query($id: Int!) {{ whyAlert(id: $id) {{ alert {{ {ALERT_FIELDS} }} windowSecs \
         causes {{ kind name score explanation }} }} }}"
    );
    let why: Value = client.request(&q, json!({ "id": alert }), "whyAlert")?;
    if out.json {
        output::json(&why)?;
        return Ok(ExitCode::SUCCESS);
    }
    let a: Alert = serde_json::from_value(why["alert"].clone())?;
    println!(
        "alert {} at {}: {} on {} (value {:.4}, score {:.2})",
        a.id, a.time, a.detector, a.series, a.value, a.score
    );
    println!(
        "likely causes, from the {} s before it:",
        why["windowSecs"].as_i64().unwrap_or(0)
    );
    let mut t = output::table(["#", "KIND", "NAME", "SCORE", "WHY"]);
    for (i, c) in why["causes"].as_array().into_iter().flatten().enumerate() {
        let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        t.add_row([
            (i + 1).to_string(),
            text("kind"),
            text("name"),
            format!("{:.2}", c["score"].as_f64().unwrap_or(0.0)),
            text("explanation"),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

pub fn capacity(client: &Client, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let q = "{ capacity { horizonSecs resources { name used capacity historyPoints horizonSecs crossesAt note } } }";
    let report: Value = client.request(q, json!({}), "capacity")?;
    if out.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(["RESOURCE", "USED", "CAPACITY", "USE", "FULL BY", "HISTORY"]);
    for r in report["resources"].as_array().into_iter().flatten() {
        let used = r["used"].as_f64().unwrap_or(0.0);
        let cap = r["capacity"].as_f64().unwrap_or(0.0);
        let full = match (r["crossesAt"].as_str(), r["note"].as_str()) {
            (Some(at), _) => at.to_string(),
            (None, Some(note)) => note.to_string(),
            (None, None) => format!(
                "not within {}",
                span(r["horizonSecs"].as_u64().unwrap_or(0))
            ),
        };
        let name = r["name"].as_str().unwrap_or_default().to_string();
        let amount = |v: f64| {
            if name == "cpu" {
                format!("{:.1}%", v * 100.0)
            } else {
                bytes(v)
            }
        };
        t.add_row([
            name.clone(),
            amount(used),
            amount(cap),
            if cap > 0.0 {
                format!("{:.1}%", used / cap * 100.0)
            } else {
                "-".into()
            },
            full,
            format!("{} points", r["historyPoints"].as_u64().unwrap_or(0)),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// `v` bytes in the largest binary unit that keeps it at 1 or more.
fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `secs` as days, hours or minutes.
fn span(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{:.1} d", s as f64 / 86_400.0),
        s if s >= 3600 => format!("{:.1} h", s as f64 / 3600.0),
        s => format!("{} min", s / 60),
    }
}

pub fn query(
    client: &Client,
    metric: &str,
    labels: Vec<(String, String)>,
    since: i64,
    max_points: usize,
    csv: bool,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let q = "query($name: String!, $labels: JSON, $since: Int!, $max: Int!) { \
             metrics(name: $name, labels: $labels, since: $since, maxPoints: $max) { \
             name labels resolution points { time min max mean last count } } }";
    let labels: serde_json::Map<String, Value> = labels
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let vars = json!({ "name": metric, "labels": labels, "since": since, "max": max_points });
    let series: Value = client.request(q, vars, "metrics")?;
    let list = series.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        eprintln!(
            "{metric}: no series in the last {since} s; `hypernix monitor query` takes a metric name from /metrics"
        );
        return Ok(ExitCode::from(output::EXIT_FAILURE));
    }
    if out.json {
        output::json(&series)?;
    } else if csv {
        println!("timestamp,value");
        for p in list[0]["points"].as_array().into_iter().flatten() {
            let at = p["time"].as_str().unwrap_or_default();
            let at = DateTime::parse_from_rfc3339(at)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            println!("{at},{}", p["mean"].as_f64().unwrap_or(f64::NAN));
        }
    } else {
        for s in &list {
            println!(
                "{}{} ({})",
                s["name"].as_str().unwrap_or_default(),
                s["labels"],
                s["resolution"].as_str().unwrap_or_default()
            );
            for p in s["points"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {}",
                    p["time"].as_str().unwrap_or_default(),
                    p["mean"]
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
