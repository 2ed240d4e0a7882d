//! `hypernix monitor ...`: the daemon's metrics, alerts, their causes and capacity
//! forecasts; the anomaly detector's evaluation on NAB and the forecast backtest.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use hypernix_monitor::Config;
use hypernix_monitor::forecast::{self, Backtest};
use hypernix_monitor::nab::{self, Corpus};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::cli::OutputArgs;
use crate::output;
use hypernix_api::client::Client;

mod daemon;

/// Anomaly detection and forecasting.
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
    /// Backtest the forecaster (MASE of the model and of the naive forecast) on NAB's
    /// realAWSCloudwatch series or on one CSV file.
    Backtest(BacktestArgs),
}

/// The NAB category `monitor backtest --data` runs over.
const BACKTEST_CATEGORY: &str = "realAWSCloudwatch";

/// `monitor backtest` arguments.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["data", "csv"])))]
pub struct BacktestArgs {
    /// The NAB directory (data/, combined_windows.json, profiles.json), e.g. ../shared/data/nab.
    #[arg(long)]
    data: Option<PathBuf>,
    /// One `timestamp,value` CSV file (NAB's timestamps, evenly spaced) instead of NAB.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Points forecast from each origin.
    #[arg(long, default_value_t = 12)]
    horizon: usize,
    /// Forecast origins per series, at its end, one horizon apart.
    #[arg(long, default_value_t = 10)]
    origins: usize,
    /// Seasonal period in points (288: a day of 5-minute points), modelled by MSTL; 0
    /// for none (AutoETS alone, which did better on realAWSCloudwatch: BENCHMARKS.md).
    #[arg(long, default_value_t = 0)]
    season: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
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
        MonitorCommand::Backtest(args) => backtest_run(args),
    }
}

fn nab_run(args: NabArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let corpus = Corpus::load(&args.data)
        .with_context(|| format!("loading NAB from {}", args.data.display()))?;
    // One configuration for every series: the one benchmarked in BENCHMARKS.md (tuning
    // experiments go through crates/hypernix-monitor/examples/nab.rs).
    let config = Config::default();
    let bar = progress(corpus.series.len(), "nab");
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

/// A progress bar of `len` steps on stderr, hidden when stderr is not a terminal.
fn progress(len: usize, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// The series `monitor backtest` runs over, named: the CSV file, or NAB's category.
fn backtest_series(args: &BacktestArgs) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    Ok(match (&args.data, &args.csv) {
        (_, Some(csv)) => {
            let rows = nab::read_csv(csv).with_context(|| format!("reading {}", csv.display()))?;
            vec![(
                csv.display().to_string(),
                rows.into_iter().map(|(_, v)| v).collect(),
            )]
        }
        (Some(data), None) => {
            let corpus = Corpus::load(data)
                .with_context(|| format!("loading NAB from {}", data.display()))?;
            let picked: Vec<_> = corpus
                .series
                .into_iter()
                .filter(|s| s.category == BACKTEST_CATEGORY)
                .map(|s| (s.key(), s.values))
                .collect();
            anyhow::ensure!(
                !picked.is_empty(),
                "{}: no series in data/{BACKTEST_CATEGORY}",
                data.display()
            );
            picked
        }
        (None, None) => anyhow::bail!("give --data DIR or --csv FILE"),
    })
}

fn backtest_run(args: BacktestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let series = backtest_series(&args)?;
    let season = (args.season > 0).then_some(args.season);
    let bar = progress(series.len(), "backtest");
    let mut results: Vec<(String, usize, Backtest)> = Vec::with_capacity(series.len());
    for (name, values) in series {
        bar.set_message(name.clone());
        let b = forecast::backtest(&values, args.horizon, season, args.origins)
            .with_context(|| format!("backtesting {name}"))?;
        results.push((name, values.len(), b));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let n = results.len() as f64;
    let model = results.iter().map(|r| r.2.model_mase).sum::<f64>() / n;
    let naive = results.iter().map(|r| r.2.naive_mase).sum::<f64>() / n;
    if args.json {
        let rows: Vec<_> = results
            .iter()
            .map(|(name, points, b)| {
                json!({"series": name, "points": points, "origins": b.origins,
                    "model_mase": b.model_mase, "naive_mase": b.naive_mase})
            })
            .collect();
        output::json(&json!({
            "horizon": args.horizon,
            "origins": args.origins,
            "season": season,
            "series": rows,
            "mean": {"model_mase": model, "naive_mase": naive},
            "seconds": seconds,
        }))?;
    } else {
        let mut t = output::table(["SERIES", "POINTS", "ORIGINS", "MODEL MASE", "NAIVE MASE"]);
        for (name, points, b) in &results {
            t.add_row([
                name.clone(),
                points.to_string(),
                b.origins.to_string(),
                format!("{:.3}", b.model_mase),
                format!("{:.3}", b.naive_mase),
            ]);
        }
        println!("{t}");
        println!(
            "mean over {} series: model {model:.3}, naive {naive:.3} (horizon {}, {} origins, \
             season {}) in {seconds:.1} s",
            results.len(),
            args.horizon,
            args.origins,
            season.map_or("none".to_string(), |s| s.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}
