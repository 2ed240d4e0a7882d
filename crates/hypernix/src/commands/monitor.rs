//! `hypernix monitor ...`: the daemon's metrics, alerts, their causes and capacity
//! forecasts; the anomaly detector's evaluation on NAB.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use hypernix_monitor::Config;
use hypernix_monitor::nab::{self, Corpus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::cli::OutputArgs;
use crate::output;
use hypernix_api::client::Client;

mod daemon;

/// Anomaly detection.
#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Run the detector over the Numenta Anomaly Benchmark and print its scores.
    Nab(NabArgs),
    /// List the daemon's latest alerts, newest first.
    Alerts {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Explain an alert: the units of this host and the logged events ranked as causes.
    Why {
        /// The alert's id (from `monitor alerts`).
        alert: u64,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Forecast CPU, memory, filesystem and storage tier use against capacity.
    Capacity {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print a metric's series from the daemon's time-series store.
    Query {
        /// The metric name, such as hypernix_unit_cpu_usage_ratio.
        metric: String,
        /// Only series with this label (LABEL=VALUE; repeatable).
        #[arg(long = "label", value_parser = label)]
        labels: Vec<(String, String)>,
        /// Seconds back from now.
        #[arg(long, default_value_t = 3600)]
        since: i64,
        /// Most points per series (a coarser resolution is picked to fit).
        #[arg(long, default_value_t = 500)]
        max_points: usize,
        /// Print `timestamp,value` CSV (the mean of each point) of the first series.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
}

fn label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}`: give a label as LABEL=VALUE"))
}

/// `monitor nab` arguments.
#[derive(Debug, Args)]
pub struct NabArgs {
    /// The NAB directory (data/, combined_windows.json, profiles.json), e.g. ../shared/data/nab.
    #[arg(long)]
    data: PathBuf,
    /// Where to write results (<out>/hypernix/<category>/hypernix_<series>.csv).
    #[arg(long)]
    out: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs a `monitor` command; `client` reaches the daemon.
pub fn run(cmd: MonitorCommand, client: &Client) -> anyhow::Result<ExitCode> {
    match cmd {
        MonitorCommand::Nab(args) => nab_run(args),
        MonitorCommand::Alerts { limit, out } => daemon::alerts(client, limit, out),
        MonitorCommand::Why { alert, out } => daemon::why(client, alert, out),
        MonitorCommand::Capacity { out } => daemon::capacity(client, out),
        MonitorCommand::Query {
            metric,
            labels,
            since,
            max_points,
            csv,
            out,
        } => daemon::query(client, &metric, labels, since, max_points, csv, out),
    }
}

fn nab_run(args: NabArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let corpus = Corpus::load(&args.data)
        .with_context(|| format!("loading NAB from {}", args.data.display()))?;
    // One configuration for every series: the one benchmarked in BENCHMARKS.md (tuning
    // experiments go through crates/hypernix-monitor/examples/nab.rs).
    let config = Config::default();
    let bar = ProgressBar::new(corpus.series.len() as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("nab");
    let eval = nab::run(&corpus, &config, &args.out, |key| {
        bar.set_message(key.to_string());
        bar.inc(1);
    })
    .with_context(|| format!("writing results under {}", args.out.display()))?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let profiles: serde_json::Map<_, _> = eval
            .profiles
            .iter()
            .map(|p| {
                let s = p.score;
                let v = json!({"score": s.normalized, "threshold": s.threshold,
                    "raw": s.raw, "null": s.null, "perfect": s.perfect});
                (p.profile.to_string(), v)
            })
            .collect();
        output::json(&json!({
            "detector": nab::run::DETECTOR,
            "series": eval.series,
            "rows": eval.rows,
            "profiles": profiles,
            "seconds": seconds,
            "ns_per_point": eval.ns_per_point(),
            "bytes_per_series": eval.bytes_per_series,
        }))?;
    } else {
        let mut t = output::table(["PROFILE", "SCORE", "THRESHOLD"]);
        for p in &eval.profiles {
            t.add_row([
                p.profile.to_string(),
                format!("{:.1}", p.score.normalized),
                format!("{:.4}", p.score.threshold),
            ]);
        }
        println!("{t}");
        println!(
            "{} series, {} rows in {seconds:.2} s; detector {:.0} ns/point, {} bytes/series",
            eval.series,
            eval.rows,
            eval.ns_per_point(),
            eval.bytes_per_series
        );
    }
    Ok(ExitCode::SUCCESS)
}
