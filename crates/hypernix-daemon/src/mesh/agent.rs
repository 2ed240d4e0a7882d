//! Every node's agent: runs the units placed on this node, stops the others, adopts the
//! replicated configuration, and fences the node when it has lost its quorum.
//!
//! Each round (every [`ROUND`]):
//! 1. a linearizable read of the replicated configuration through the leader confirms that
//!    a quorum answers; its time is the node's last quorum;
//! 2. without a quorum for `failover.fence`, the node stops its units (fenced) and starts
//!    nothing until a quorum answers again;
//! 3. with one, a configuration newer than the local copy is adopted (security, storage,
//!    monitoring), units placed elsewhere are removed, and units placed here are started
//!    (after the leader confirms the placement, so a node that is behind on the log never
//!    starts a unit that moved) or updated.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hypernix_events::NewEvent;
use hypernix_mesh::consensus::Table;
use hypernix_mesh::scheduler::{FenceDecision, Timeouts, fence};
use serde_json::{Value, json};

use super::Mesh;
use super::node::PlacementRecord;
use crate::daemon::Daemon;
use crate::model::{Desired, Power};
use crate::unit::Command;

/// Time between rounds.
const ROUND: Duration = Duration::from_millis(500);
/// How long a guest gets to power off when its unit moves away or its node leaves.
pub(crate) const MOVE_GRACE: Duration = Duration::from_secs(5);

/// Runs the agent of `mesh` for `daemon` until the daemon is dropped.
pub(crate) fn spawn(daemon: Weak<Daemon>, mesh: Arc<Mesh>) {
    tokio::spawn(async move {
        let timeouts = match mesh.timeouts() {
            Ok(t) => t,
            Err(e) => return tracing::error!("mesh agent: {e}"),
        };
        let mut last_quorum = super::now();
        let mut recovered = false;
        loop {
            tokio::time::sleep(ROUND).await;
            let Some(daemon) = daemon.upgrade() else {
                break;
            };
            if mesh.leaving.load(Ordering::SeqCst) {
                stop_all(&daemon, MOVE_GRACE).await;
                continue;
            }
            let asked = super::now();
            match mesh.linearizable(Table::Meta, super::CONFIG_KEY).await {
                Ok(config) => {
                    last_quorum = asked;
                    if mesh.fenced.swap(false, Ordering::SeqCst) {
                        tracing::info!("a quorum answers again; node {} unfenced", mesh.id);
                        publish(&daemon, &mesh, "mesh.unfenced", json!({})).await;
                    }
                    if let Some(Value::Object(raw)) = config {
                        daemon.adopt_config(raw).await;
                    }
                    daemon.sync_caps(&mesh).await;
                    if !recovered {
                        recover(&daemon, &mesh).await;
                        recovered = true;
                    }
                    reconcile(&daemon, &mesh).await;
                }
                Err(e) => {
                    tracing::debug!("mesh agent: no quorum this round: {e}");
                    if fence(last_quorum, super::now(), &timeouts) == FenceDecision::Stop
                        && !mesh.fenced.swap(true, Ordering::SeqCst)
                    {
                        tracing::warn!(
                            "node {} has not reached a quorum for {:?}; stopping its units",
                            mesh.id,
                            timeouts.fence()
                        );
                        // Fast: the cluster starts them elsewhere once the grace period ends.
                        stop_all(&daemon, Duration::ZERO).await;
                        publish(
                            &daemon,
                            &mesh,
                            "mesh.fenced",
                            json!({ "reason": e.to_string() }),
                        )
                        .await;
                    }
                }
            }
        }
    });
}

/// Takes over the units the local store remembers: placed here, they run on (re-attached
/// to their QEMU); placed elsewhere, a QEMU that outlived the daemon is stopped.
async fn recover(daemon: &Daemon, mesh: &Mesh) {
    for (name, mut desired) in daemon.stored_units() {
        match mesh.placement(&name).await {
            Ok(Some(p)) if p.node == mesh.id => daemon.run_unit(&name, desired),
            Ok(placed) => {
                desired.power = Power::Stopped;
                daemon.run_unit(&name, desired);
                if let Ok(h) = daemon.handle(&name) {
                    let _ = h.send(Command::Evict { grace: MOVE_GRACE }).await;
                }
                if let Some(p) = placed {
                    release(mesh, &name, p).await;
                }
            }
            Err(e) => tracing::warn!("{name}: cannot confirm its placement: {e}"),
        }
    }
}

/// Brings the local units in line with the replicated placement.
async fn reconcile(daemon: &Daemon, mesh: &Mesh) {
    let (Ok(units), Ok(placement)) = (mesh.list(Table::Units), mesh.list(Table::Placement)) else {
        return;
    };
    let placement: BTreeMap<String, PlacementRecord> = placement
        .into_iter()
        .filter_map(|(unit, doc)| Some((unit, PlacementRecord::parse(&doc)?)))
        .collect();
    let mine: BTreeMap<String, Desired> = units
        .into_iter()
        .filter(|(name, _)| placement.get(name).is_some_and(|p| p.node == mesh.id))
        .filter_map(|(name, doc)| Some((name, serde_json::from_value(doc).ok()?)))
        .collect();
    let incoming = mesh.incoming.lock().map(|i| i.clone()).unwrap_or_default();
    for (name, handle) in daemon.local_units() {
        if !mine.contains_key(&name) && !incoming.contains(&name) {
            tracing::info!("{name}: placed elsewhere now; stopping it here");
            let _ = handle.send(Command::Evict { grace: MOVE_GRACE }).await;
        }
    }
    // Units moving away from this node that it no longer runs: let them start.
    let local = daemon.local_units();
    for (name, p) in &placement {
        if p.from == Some(mesh.id) && !p.released && !local.contains_key(name) {
            release(mesh, name, p.clone()).await;
        }
    }
    if !mesh.runs_units() {
        return;
    }
    for (name, desired) in mine {
        match local.get(&name) {
            Some(handle) => {
                let current = handle.desired();
                if current.spec != desired.spec || current.generation != desired.generation {
                    let restart = current.generation != desired.generation;
                    let cmd = Command::Update {
                        desired: Box::new(Desired {
                            power: current.power,
                            ..desired
                        }),
                        restart,
                    };
                    if let Err(e) = handle.send(cmd).await {
                        tracing::warn!("{name}: update failed: {e}");
                    }
                }
            }
            None => match mesh.placement(&name).await {
                Ok(Some(p)) if p.node == mesh.id && mesh.may_start(&p) => {
                    tracing::info!("{name}: placed on node {}; starting it", mesh.id);
                    daemon.run_unit(&name, desired);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("{name}: cannot confirm its placement: {e}"),
            },
        }
    }
}

/// Marks a unit that moved away from this node as stopped here, unless its placement
/// changed meanwhile.
async fn release(mesh: &Mesh, unit: &str, p: PlacementRecord) {
    if p.from != Some(mesh.id) || p.released {
        return;
    }
    let (Ok(expected), Ok(new)) = (
        serde_json::to_value(&p),
        serde_json::to_value(PlacementRecord {
            released: true,
            ..p.clone()
        }),
    ) else {
        return;
    };
    let cas = hypernix_mesh::consensus::Command::CompareAndSwap {
        table: Table::Placement,
        key: unit.to_string(),
        expected: Some(expected),
        new: Some(new),
    };
    match mesh.propose(cas).await {
        Ok(_) => tracing::info!("{unit}: stopped here; released to node {}", p.node),
        Err(e) => tracing::warn!("{unit}: cannot release it: {e}"),
    }
}

/// Stops every local unit, giving each guest `grace` to power off.
pub(crate) async fn stop_all(daemon: &Daemon, grace: Duration) {
    let tasks: Vec<_> = daemon
        .local_units()
        .into_values()
        .map(|h| tokio::spawn(async move { h.send(Command::Evict { grace }).await }))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn publish(daemon: &Daemon, mesh: &Mesh, kind: &str, payload: Value) {
    let event = NewEvent::new(kind, format!("node/{}", mesh.id)).with_payload(payload);
    if let Err(e) = daemon.publish(event).await {
        tracing::warn!("cannot publish {kind}: {e}");
    }
}

impl Mesh {
    /// Whether a unit placed here may start: it was not moved here from a node that may
    /// still run it. The node it came from released it, or has not been seen for longer
    /// than the fencing timeout (so it stopped it, or died).
    fn may_start(&self, p: &PlacementRecord) -> bool {
        let Some(from) = p.from.filter(|f| *f != self.id && !p.released) else {
            return true;
        };
        let Ok(t) = self.timeouts() else { return false };
        let seen = self
            .last_seen
            .lock()
            .ok()
            .and_then(|s| s.get(&from).copied());
        let alive = self.members.borrow().contains_key(&from);
        !alive && seen.is_none_or(|at| super::now().saturating_sub(at) > t.fence())
    }

    /// The fencing and failover timeouts of `mesh.coordination.failover`.
    pub(crate) fn timeouts(&self) -> Result<Timeouts, String> {
        let f = &self.settings.coordination.failover;
        Timeouts::new(f.fence.std(), f.grace.std()).map_err(|e| e.to_string())
    }
}
