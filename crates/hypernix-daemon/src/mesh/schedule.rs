//! The leader's scheduler loop: gathers nodes (registrations and membership), units and
//! placement from the replicated state, asks [`hypernix_mesh::scheduler`] what to do, and
//! proposes the new placement.
//!
//! Each round (every [`ROUND`], on every node):
//! 1. the members this node's SWIM agent believes alive are stamped as seen now;
//! 2. on the leader only: placement entries of removed units or unregistered nodes are
//!    deleted; units of nodes unseen for the failover grace period are re-placed
//!    ([`failover`]); unplaced units are placed ([`place`]); every
//!    `rebalancing.interval`, moves even out the load ([`rebalance`]);
//! 3. each decision is a `placement` write and an event (`mesh.placed`, `mesh.failover`,
//!    `mesh.rebalance`, `mesh.unplaced` with the reason).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hypernix_events::NewEvent;
use hypernix_mesh::consensus::{Command, NodeId, Table};
use hypernix_mesh::scheduler::{
    Algorithm, Cluster, Health, Node, Unit, failover, place, rebalance,
};
use serde_json::json;

use super::Mesh;
use super::node::{NodeRecord, PlacementRecord, placement_node};
use crate::daemon::Daemon;
use crate::model::Desired;

/// Time between rounds.
const ROUND: Duration = Duration::from_secs(1);

/// Runs the scheduler loop of `mesh` until the daemon is dropped.
pub(crate) fn spawn(daemon: Weak<Daemon>, mesh: Arc<Mesh>) {
    tokio::spawn(async move {
        let started = super::now();
        let mut unplaced_seen: BTreeMap<String, String> = BTreeMap::new();
        let mut last_rebalance = started;
        loop {
            tokio::time::sleep(ROUND).await;
            let Some(daemon) = daemon.upgrade() else {
                break;
            };
            let now = super::now();
            mesh.stamp_alive(now);
            if !mesh.is_leader() {
                continue;
            }
            let Some(input) = gather(&mesh, started) else {
                continue;
            };
            let Input { cluster, stale } = input;
            for unit in stale {
                let delete = Command::Delete {
                    table: Table::Placement,
                    key: unit.clone(),
                };
                if let Err(e) = mesh.propose(delete).await {
                    tracing::warn!("{unit}: cannot drop its stale placement: {e}");
                }
            }
            let settings = &mesh.settings.coordination;
            let algorithm = Algorithm::new(settings.scheduler.algorithm, mesh.id);
            let Ok(timeouts) = mesh.timeouts() else {
                continue;
            };
            let moved = failover(&cluster, now, &timeouts, algorithm);
            for m in &moved.moves {
                // A dead node has stopped its units: fenced before the grace period ended.
                let payload = json!({ "from": m.from, "to": m.to });
                let from = Some((m.from, true));
                write(&daemon, &mesh, &m.unit, m.to, from, "failover", payload).await;
            }
            if !moved.moves.is_empty() {
                continue;
            }
            let placed = place(&cluster, algorithm);
            for (unit, node) in &placed.placed {
                let payload = json!({ "node": node });
                write(&daemon, &mesh, unit, *node, None, "placed", payload).await;
            }
            for u in placed.unplaced.iter().chain(&moved.unplaced) {
                if unplaced_seen.get(&u.unit) != Some(&u.reason) {
                    unplaced_seen.insert(u.unit.clone(), u.reason.clone());
                    let event = NewEvent::new("mesh.unplaced", format!("unit/{}", u.unit))
                        .with_payload(json!({ "reason": u.reason }));
                    let _ = daemon.publish(event).await;
                }
            }
            unplaced_seen.retain(|unit, _| {
                placed
                    .unplaced
                    .iter()
                    .chain(&moved.unplaced)
                    .any(|u| &u.unit == unit)
            });
            let rebalancing = &settings.scheduler.rebalancing;
            if rebalancing.enable && now >= last_rebalance + rebalancing.interval.std() {
                last_rebalance = now;
                match rebalance(&cluster, rebalancing.threshold) {
                    Ok(moves) => {
                        for m in moves {
                            // It starts on its new node once the old one released it.
                            let payload = json!({ "from": m.from, "to": m.to });
                            let from = Some((m.from, false));
                            write(&daemon, &mesh, &m.unit, m.to, from, "rebalance", payload).await;
                        }
                    }
                    Err(e) => tracing::warn!("rebalancing: {e}"),
                }
            }
        }
    });
}

/// What one round schedules: the checked cluster, and placements to drop.
struct Input {
    cluster: Cluster,
    stale: Vec<String>,
}

fn gather(mesh: &Mesh, started: Duration) -> Option<Input> {
    let records: Vec<NodeRecord> = mesh
        .list(Table::Nodes)
        .ok()?
        .into_iter()
        .filter_map(|(_, doc)| serde_json::from_value(doc).ok())
        .collect();
    let alive: BTreeSet<NodeId> = mesh.members.borrow().keys().copied().collect();
    let seen = mesh.last_seen.lock().ok()?.clone();
    let nodes: Vec<Node> = records
        .iter()
        .map(|r| Node {
            id: r.id,
            runs_units: r.runs_units,
            compute: r.compute,
            memory: r.memory,
            location: r.location.clone(),
            health: if alive.contains(&r.id) || r.id == mesh.id {
                Health::Alive
            } else {
                Health::Dead {
                    since: seen.get(&r.id).copied().unwrap_or(started).max(started),
                }
            },
        })
        .collect();
    let units: Vec<Unit> = mesh
        .list(Table::Units)
        .ok()?
        .into_iter()
        .filter_map(|(name, doc)| {
            let d: Desired = serde_json::from_value(doc).ok()?;
            Some(Unit {
                name,
                compute: compute_units(&d),
                memory: d.spec.memory,
                labels: d.spec.labels.clone(),
                placement: d.spec.settings.placement.clone(),
            })
        })
        .collect();
    let registered: BTreeSet<NodeId> = records.iter().map(|r| r.id).collect();
    let names: BTreeSet<&str> = units.iter().map(|u| u.name.as_str()).collect();
    let mut placement = BTreeMap::new();
    let mut stale = Vec::new();
    for (unit, doc) in mesh.list(Table::Placement).ok()? {
        match placement_node(&doc) {
            Some(node) if registered.contains(&node) && names.contains(unit.as_str()) => {
                placement.insert(unit, node);
            }
            _ => stale.push(unit),
        }
    }
    match Cluster::new(nodes, units, placement) {
        Ok(cluster) => Some(Input { cluster, stale }),
        Err(e) => {
            tracing::warn!("the scheduler cannot run: {e}");
            None
        }
    }
}

/// The compute units a unit asks for: its CPU quota in hundredths of a core.
fn compute_units(d: &Desired) -> u64 {
    let quota = (d.spec.cpu_quota * 100.0).ceil();
    if quota >= 1.0 {
        quota as u64
    } else {
        u64::from(d.spec.vcpus) * 100
    }
}

async fn write(
    daemon: &Daemon,
    mesh: &Mesh,
    unit: &str,
    node: NodeId,
    from: Option<(NodeId, bool)>,
    reason: &str,
    payload: serde_json::Value,
) {
    let record = PlacementRecord {
        node,
        since_ms: super::now().as_millis() as u64,
        reason: reason.to_string(),
        from: from.map(|f| f.0),
        released: from.is_some_and(|f| f.1),
    };
    let Ok(value) = serde_json::to_value(&record) else {
        return;
    };
    let command = Command::Put {
        table: Table::Placement,
        key: unit.to_string(),
        value,
    };
    match mesh.propose(command).await {
        Ok(_) => {
            tracing::info!("{unit}: {reason} on node {node}");
            let event = NewEvent::new(format!("mesh.{reason}"), format!("unit/{unit}"))
                .with_payload(payload);
            let _ = daemon.publish(event).await;
        }
        Err(e) => tracing::warn!("{unit}: cannot write its placement: {e}"),
    }
}

impl Mesh {
    /// Stamps the members this node's agent believes alive as seen at `now`.
    fn stamp_alive(&self, now: Duration) {
        let alive: Vec<NodeId> = self.members.borrow().keys().copied().collect();
        if let Ok(mut seen) = self.last_seen.lock() {
            for id in alive {
                seen.insert(id, now);
            }
        }
    }
}
