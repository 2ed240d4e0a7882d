//! Raft on three loopback TCP nodes: leader failover time and committed writes per second.

use crate::cluster::{BenchError, Cluster, put};
use hypernix_mesh::raft::tcp::TcpDialer;
use hypernix_mesh::raft::{Channel, RaftParameters};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// How long one client call may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes through clients to whichever node accepts, until one commits; returns when it did.
async fn commit_anywhere(
    addrs: &[String],
    key: &str,
    deadline: Duration,
) -> Result<Instant, BenchError> {
    let started = Instant::now();
    let channels: Vec<_> = addrs
        .iter()
        .map(|addr| Channel::new(Arc::new(TcpDialer), addr.clone()))
        .collect();
    let mut n = 0;
    while started.elapsed() < deadline {
        for channel in &channels {
            n += 1;
            let attempt = channel.propose(put(key.to_owned(), n), Duration::from_secs(1));
            if attempt.await.is_ok() {
                return Ok(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(format!("no node committed a write within {deadline:?}").into())
}

/// One failover: a fresh cluster of three, its leader killed; the time until a survivor commits.
pub fn failover_round(
    parameters: &RaftParameters,
    dir: &Path,
    client: &Runtime,
) -> Result<Duration, BenchError> {
    let mut cluster = Cluster::start(3, parameters, dir)?;
    cluster.leader()?;
    client.block_on(commit_anywhere(
        &cluster.addrs(),
        "before",
        Duration::from_secs(10),
    ))?;
    let leader = cluster.leader()?;
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|(id, _)| **id != leader)
        .map(|(_, n)| n.addr.clone())
        .collect();
    let killed = Instant::now();
    cluster.kill(leader);
    let committed = client.block_on(commit_anywhere(
        &survivors,
        "after",
        Duration::from_secs(10),
    ))?;
    Ok(committed - killed)
}

/// What `clients` concurrent clients committed on the leader of three nodes.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Throughput {
    /// Concurrent clients, each with its own connection and one write in flight.
    pub clients: usize,
    /// How long they wrote, in seconds.
    pub seconds: f64,
    /// Writes committed and answered.
    pub committed: usize,
    /// Writes that failed or timed out.
    pub failed: usize,
    /// Committed writes per second.
    pub writes_per_sec: f64,
    /// Median commit latency seen by a client, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile commit latency, in milliseconds.
    pub p99_ms: f64,
}

/// Runs `clients` clients writing to the leader of a fresh cluster of three for `duration`.
pub fn throughput(
    parameters: &RaftParameters,
    dir: &Path,
    client: &Runtime,
    clients: usize,
    duration: Duration,
) -> Result<Throughput, BenchError> {
    let cluster = Cluster::start(3, parameters, dir)?;
    cluster.leader()?;
    client.block_on(commit_anywhere(
        &cluster.addrs(),
        "warm-up",
        Duration::from_secs(10),
    ))?;
    let leader = cluster.leader()?;
    let addr = cluster.nodes[&leader].addr.clone();
    let (latencies, failed, elapsed) = client.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let channel = Channel::new(Arc::new(TcpDialer), addr.clone());
                tokio::spawn(async move {
                    let (mut latencies, mut failed) = (Vec::new(), 0usize);
                    let mut n = 0u64;
                    while started.elapsed() < duration {
                        n += 1;
                        let key = format!("client-{c}-{}", n % 64);
                        let sent = Instant::now();
                        match channel.propose(put(key, n), CALL_TIMEOUT).await {
                            Ok(_) => latencies.push(sent.elapsed()),
                            Err(_) => failed += 1,
                        }
                    }
                    (latencies, failed)
                })
            })
            .collect();
        let (mut all, mut failed) = (Vec::new(), 0);
        for task in tasks {
            let (latencies, f) = task.await?;
            all.extend(latencies);
            failed += f;
        }
        Ok::<_, BenchError>((all, failed, started.elapsed()))
    })?;
    let mut sorted = latencies;
    sorted.sort();
    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    Ok(Throughput {
        clients,
        seconds: elapsed.as_secs_f64(),
        committed: sorted.len(),
        failed,
        writes_per_sec: sorted.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(crate::percentile(&sorted, 0.50)),
        p99_ms: ms(crate::percentile(&sorted, 0.99)),
    })
}
