//! `hypernix mesh ...`: the cluster's status and roles, join tokens, joining and leaving.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::io::IsTerminal;

use anyhow::bail;
use clap::Subcommand;
use hypernix_api::client::Client;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::{DaemonArgs, OutputArgs};
use crate::output;

/// The cluster.
#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Nodes, roles, leader, term, health and the units on each node.
    Status {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Each node's roles and what they make it do: vote, run units.
    Roles {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Issue a single-use join token (on the node that bootstrapped the cluster).
    Token {
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Start a daemon in the background that joins the cluster through ADDR, and wait
    /// until it is registered.
    Join {
        /// The mesh address of a node of the cluster.
        addr: String,
        /// The join token (`hypernix mesh token` on the bootstrap node).
        #[arg(long, env = "HYPERNIX_JOIN_TOKEN", hide_env_values = true)]
        join_token: String,
        /// This node's settings: a configuration whose `hypervisor.mesh` describes it.
        #[arg(long)]
        node: PathBuf,
        /// Where this node serves Raft (TCP) and gossip (UDP).
        #[arg(long)]
        mesh_listen: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Take the node answering at --api out of the cluster; its units go elsewhere.
    Leave,
    /// Move a running unit to another node without stopping it (live migration; ask the
    /// node running it).
    Migrate {
        /// The unit.
        unit: String,
        /// The node to move it to.
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    id: u64,
    addr: String,
    roles: Vec<String>,
    runs_units: bool,
    consensus: String,
    health: String,
    units: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    cluster: String,
    node: u64,
    leader: Option<u64>,
    term: u64,
    fenced: bool,
    peers: u32,
    min_peers: u32,
    degraded: bool,
    nodes: Vec<Node>,
    unplaced: Vec<String>,
}

const STATUS: &str = "query { meshStatus { cluster node leader term fenced peers minPeers degraded unplaced \
    nodes { id addr api roles runsUnits consensus health lastSeenSecs compute memory zone units } } }";

fn status(client: &Client) -> anyhow::Result<Value> {
    Ok(client.request(STATUS, json!({}), "meshStatus")?)
}

/// Runs a `mesh` subcommand against the daemon at `client`.
pub fn run(cmd: MeshCommand, client: &Client, api: &str) -> anyhow::Result<ExitCode> {
    match cmd {
        MeshCommand::Status { out } => {
            let raw = status(client)?;
            if out.json {
                output::json(&raw)?;
                return Ok(ExitCode::SUCCESS);
            }
            let s: Status = serde_json::from_value(raw)?;
            let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
            println!(
                "cluster {}: leader {leader}, term {}, seen from node {} ({} peers, minPeers {}){}{}",
                s.cluster,
                s.term,
                s.node,
                s.peers,
                s.min_peers,
                if s.degraded { " DEGRADED" } else { "" },
                if s.fenced {
                    " FENCED: no quorum, its units stopped"
                } else {
                    ""
                }
            );
            let mut t = output::table(["NODE", "ADDRESS", "ROLES", "CONSENSUS", "HEALTH", "UNITS"]);
            for n in s.nodes {
                let id = if Some(n.id) == s.leader {
                    format!("{}*", n.id)
                } else {
                    n.id.to_string()
                };
                t.add_row([
                    id,
                    n.addr,
                    n.roles.join(","),
                    n.consensus,
                    n.health,
                    n.units.join(","),
                ]);
            }
            println!("{t}");
            if !s.unplaced.is_empty() {
                println!("unplaced: {}", s.unplaced.join(", "));
            }
        }
        MeshCommand::Roles { out } => {
            let s: Status = serde_json::from_value(status(client)?)?;
            let rows: Vec<Value> = s
                .nodes
                .iter()
                .map(|n| {
                    json!({ "id": n.id, "roles": n.roles, "votes": n.consensus == "voter",
                            "consensus": n.consensus, "runsUnits": n.runs_units })
                })
                .collect();
            if out.json {
                output::json(&rows)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = output::table(["NODE", "ROLES", "CONSENSUS", "RUNS UNITS"]);
            for n in s.nodes {
                let runs = if n.runs_units { "yes" } else { "no" };
                t.add_row([
                    n.id.to_string(),
                    n.roles.join(","),
                    n.consensus,
                    runs.into(),
                ]);
            }
            println!("{t}");
        }
        MeshCommand::Token { ttl } => {
            let q = "mutation($ttl: Int!) { meshJoinToken(ttlSecs: $ttl) }";
            let token: String = client.request(q, json!({ "ttl": ttl }), "meshJoinToken")?;
            println!("{token}");
        }
        MeshCommand::Join {
            addr,
            join_token,
            node,
            mesh_listen,
            daemon,
        } => {
            if client.health().is_ok() {
                bail!("a daemon already answers at {api}; pass another --api for the new node");
            }
            let extra = [
                "--node".into(),
                node.display().to_string(),
                "--mesh-listen".into(),
                mesh_listen,
                "--join".into(),
                addr,
                "--join-token".into(),
                join_token,
            ];
            super::daemon::start_daemon(client, &daemon, &extra)?;
            let client = super::authed(Client::new(api), None, &daemon.state_dir);
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(s) =
                    status(&client).and_then(|v| Ok(serde_json::from_value::<Status>(v)?))
                    && s.nodes.iter().any(|n| n.id == s.node)
                {
                    println!("node {} joined cluster {}", s.node, s.cluster);
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the node did not register within 60 s; see its daemon log");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        MeshCommand::Migrate { unit, to, out } => {
            let r = migrate(client, &unit, to)?;
            if out.json {
                output::json(&r)?;
            } else {
                println!(
                    "{unit}: node {} → node {} in {} ms (disks in step after {} ms), downtime {} ms, \
                     {} MiB of memory and {} MiB of disk sent, {} MiB of disk already there",
                    r["from"],
                    r["to"],
                    r["totalMs"],
                    r["mirroredMs"],
                    r["downtimeMs"],
                    r["ramBytes"].as_u64().unwrap_or(0) >> 20,
                    r["diskSentBytes"].as_u64().unwrap_or(0) >> 20,
                    r["diskSkippedBytes"].as_u64().unwrap_or(0) >> 20
                );
            }
        }
        MeshCommand::Leave => {
            let _: bool = client.request("mutation { meshLeave }", json!({}), "meshLeave")?;
            println!("left the cluster; its units are placed elsewhere");
        }
    }
    Ok(ExitCode::SUCCESS)
}

const MIGRATE: &str = "mutation($unit: String!, $to: Int!) { migrateUnit(name: $unit, to: $to) \
    { unit from to totalMs mirroredMs downtimeMs ramBytes diskBytes diskSentBytes diskSkippedBytes } }";
const PROGRESS: &str =
    "subscription($unit: String!) { migrationProgress(unit: $unit) { kind payload } }";

/// Live-migrates `unit` to node `to`, showing its progress from the `migrationProgress`
/// subscription on stderr; answers the measurements.
fn migrate(client: &Client, unit: &str, to: u64) -> anyhow::Result<Value> {
    let bar = ProgressBar::new(0);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("migrating {unit} to node {to}"));
    bar.enable_steady_tick(Duration::from_millis(200));
    // Without the subscription the migration still runs, without a bar.
    let mut progress = client.subscribe(PROGRESS, json!({ "unit": unit })).ok();
    let (c, u) = (client.clone(), unit.to_string());
    let call = std::thread::spawn(move || {
        c.request::<Value>(MIGRATE, json!({ "unit": u, "to": to }), "migrateUnit")
    });
    while !call.is_finished() {
        let Some(sub) = progress.as_mut() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        match sub.next(Duration::from_millis(200)) {
            Ok(Some(data)) => show(&bar, &data["migrationProgress"]),
            Ok(None) => {}
            Err(_) => progress = None,
        }
    }
    bar.finish_and_clear();
    Ok(call
        .join()
        .map_err(|_| anyhow::anyhow!("the migration request panicked"))??)
}

/// Moves the bar to what a `migration.progress` event says: disks while they mirror,
/// then memory.
fn show(bar: &ProgressBar, event: &Value) {
    let p = &event["payload"];
    let Some(step) = p["step"].as_str() else {
        return;
    };
    bar.set_message(step.to_string());
    let (done, total) = if step == "mirroring disks" {
        (&p["diskDone"], &p["diskTotal"])
    } else {
        (&p["ramDone"], &p["ramTotal"])
    };
    if let (Some(done), Some(total)) = (done.as_u64(), total.as_u64()) {
        bar.set_length(total);
        bar.set_position(done.min(total));
    }
}
