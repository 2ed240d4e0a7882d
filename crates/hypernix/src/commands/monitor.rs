//! `hypernix monitor ...`: the anomaly detector and its evaluation on NAB.

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

use crate::output;

/// Anomaly detection.
#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Run the detector over the Numenta Anomaly Benchmark and print its scores.
    Nab(NabArgs),
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
    #[command(flatten)]
    tuning: Tuning,
}

/// Detector tuning (defaults: the configuration benchmarked in BENCHMARKS.md).
#[derive(Debug, Args)]
struct Tuning {
    /// Quantization levels.
    #[arg(long, hide = true)]
    levels: Option<u8>,
    /// Context orders.
    #[arg(long, hide = true)]
    orders: Option<usize>,
    /// Points reported as 0 after a detection.
    #[arg(long, hide = true)]
    rest: Option<u32>,
    /// Learning points.
    #[arg(long, hide = true)]
    learning: Option<u32>,
    /// Raw score starting a rest period.
    #[arg(long, hide = true)]
    fire: Option<f64>,
    /// Weight of the deviation score.
    #[arg(long, hide = true)]
    mix: Option<f64>,
    /// Share of the range a new extreme must exceed it by.
    #[arg(long, hide = true)]
    margin: Option<f64>,
}

impl Tuning {
    fn config(&self) -> Config {
        let mut c = Config::default();
        c.levels = self.levels.unwrap_or(c.levels);
        c.orders = self.orders.unwrap_or(c.orders);
        c.rest = self.rest.unwrap_or(c.rest);
        c.learning = self.learning.unwrap_or(c.learning);
        c.fire = self.fire.unwrap_or(c.fire);
        c.mix = self.mix.unwrap_or(c.mix);
        c.margin = self.margin.unwrap_or(c.margin);
        c
    }
}

/// Runs a `monitor` command.
pub fn run(cmd: MonitorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MonitorCommand::Nab(args) => nab_run(args),
    }
}

fn nab_run(args: NabArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let corpus = Corpus::load(&args.data)
        .with_context(|| format!("loading NAB from {}", args.data.display()))?;
    let config = args.tuning.config();
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
