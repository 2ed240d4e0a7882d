//! Mesh benchmarks of issue 8: leader failover, SWIM convergence, committed writes per second.
//!
//! ```text
//! cargo run --release -p hypernix-mesh --example mesh-bench -- [--json] [--rounds N]
//!     [--clients 1,16] [--seconds S] [--nodes 50] [--dir PATH] [--only failover|membership|throughput]
//! ```
//!
//! 1. failover: three Raft nodes on loopback TCP (electionTimeout 150 ms, heartbeat 50 ms),
//!    each on its own runtime; the leader's runtime is shut down and a client writes to the
//!    survivors until one commits; the time from the kill to that commit, over `--rounds`;
//! 2. membership: `--nodes` SWIM agents in this process on real UDP sockets on 127.0.0.1,
//!    all announcing to the first; the time until every agent sees all of them alive;
//! 3. throughput: N clients over TCP, each with one write in flight to the leader of three
//!    nodes, for `--seconds`; committed writes per second and commit latency.
//!
//! The redb files go under `--dir` (the system's temporary directory by default).

mod cluster;
mod raft;
mod swim;

use cluster::BenchError;
use hypernix_mesh::raft::RaftParameters;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

struct Options {
    json: bool,
    rounds: usize,
    clients: Vec<usize>,
    seconds: u64,
    nodes: usize,
    dir: PathBuf,
    only: Option<String>,
}

fn options() -> Result<Options, BenchError> {
    let mut options = Options {
        json: false,
        rounds: 10,
        clients: vec![1, 16],
        seconds: 5,
        nodes: 50,
        dir: std::env::temp_dir(),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{arg} needs a value; see the usage in the source"))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("`{v}` is not a count; use a whole number"))
        };
        match arg.as_str() {
            "--json" => options.json = true,
            "--rounds" => options.rounds = number(value()?)?.max(1),
            "--seconds" => options.seconds = number(value()?)?.max(1) as u64,
            "--nodes" => options.nodes = number(value()?)?.max(1),
            "--dir" => options.dir = PathBuf::from(value()?),
            "--clients" => {
                options.clients = value()?
                    .split(',')
                    .map(|c| number(c.to_owned()).map(|n| n.max(1)))
                    .collect::<Result<_, _>>()?;
            }
            "--only" => options.only = Some(value()?),
            other => {
                return Err(format!(
                    "unknown argument `{other}`; use --json, --rounds, --clients, --seconds, --nodes, --dir or --only"
                )
                .into());
            }
        }
    }
    Ok(options)
}

/// The nearest-rank `p` quantile of `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// Median, p90 and max of `samples` in milliseconds, with the samples.
fn summary(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e4).round() / 10.0);
    json!({
        "rounds": samples.len(),
        "medianMs": ms(percentile(&samples, 0.5)),
        "p90Ms": ms(percentile(&samples, 0.9)),
        "maxMs": ms(samples.last().copied()),
        "samplesMs": samples.iter().map(|d| ms(Some(*d))).collect::<Vec<_>>(),
    })
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn main() -> Result<(), BenchError> {
    let options = options()?;
    let wanted = |name: &str| options.only.as_deref().is_none_or(|only| only == name);
    let parameters = RaftParameters::default();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "loadBefore": load(),
        "dir": options.dir.display().to_string(),
    });
    if wanted("failover") {
        let mut samples = Vec::with_capacity(options.rounds);
        for _ in 0..options.rounds {
            samples.push(raft::failover_round(&parameters, &options.dir, &client)?);
        }
        let mut failover = summary(samples);
        failover["electionTimeoutMs"] = json!(parameters.election_timeout.as_millis() as u64);
        failover["heartbeatMs"] = json!(parameters.heartbeat_interval.as_millis() as u64);
        report["failover"] = failover;
    }
    if wanted("membership") {
        let mut samples = Vec::with_capacity(options.rounds);
        for round in 0..options.rounds {
            samples.push(swim::converge(options.nodes, round as u64 * 1000)?);
        }
        let mut membership = summary(samples);
        membership["nodes"] = json!(options.nodes);
        membership["transport"] = json!("real UDP on 127.0.0.1, all agents in one process");
        report["membership"] = membership;
    }
    if wanted("throughput") {
        let duration = Duration::from_secs(options.seconds);
        let mut runs = Vec::new();
        for clients in &options.clients {
            let run = raft::throughput(&parameters, &options.dir, &client, *clients, duration)?;
            runs.push(serde_json::to_value(run)?);
        }
        report["throughput"] = Value::Array(runs);
    }
    report["loadAfter"] = json!(load());
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(())
}

fn print_human(report: &Value) {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    println!(
        "{} cpus, load {} before, {} after; redb files in {}",
        report["cpus"],
        text(&report["loadBefore"]),
        text(&report["loadAfter"]),
        text(&report["dir"])
    );
    if let Some(f) = report.get("failover") {
        println!(
            "failover (3 nodes, TCP loopback): median {} ms, p90 {} ms, max {} ms over {} rounds",
            f["medianMs"], f["p90Ms"], f["maxMs"], f["rounds"]
        );
    }
    if let Some(m) = report.get("membership") {
        println!(
            "membership ({} agents, {}): median {} ms, p90 {} ms, max {} ms over {} rounds",
            m["nodes"],
            text(&m["transport"]),
            m["medianMs"],
            m["p90Ms"],
            m["maxMs"],
            m["rounds"]
        );
    }
    for t in report["throughput"].as_array().into_iter().flatten() {
        println!(
            "throughput ({} clients, {:.1} s): {:.0} writes/s, p50 {:.2} ms, p99 {:.2} ms, {} failed",
            t["clients"],
            t["seconds"].as_f64().unwrap_or(f64::NAN),
            t["writesPerSec"].as_f64().unwrap_or(f64::NAN),
            t["p50Ms"].as_f64().unwrap_or(f64::NAN),
            t["p99Ms"].as_f64().unwrap_or(f64::NAN),
            t["failed"]
        );
    }
}
