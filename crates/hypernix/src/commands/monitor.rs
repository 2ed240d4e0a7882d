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
