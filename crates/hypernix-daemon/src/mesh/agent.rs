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
use super::node::placement_node;
use crate::daemon::Daemon;
use crate::model::{Desired, Power};
use crate::unit::Command;

/// Time between rounds.
const ROUND: Duration = Duration::from_millis(500);

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
                        stop_all(&daemon).await;
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
        match mesh.placed_on(&name).await {
            Ok(Some(node)) if node == mesh.id => daemon.run_unit(&name, desired),
            Ok(_) => {
                desired.power = Power::Stopped;
                daemon.run_unit(&name, desired);
                if let Ok(h) = daemon.handle(&name) {
                    let _ = h.send(Command::Remove).await;
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
    let placement: BTreeMap<String, Option<u64>> = placement
        .into_iter()
        .map(|(unit, doc)| (unit, placement_node(&doc)))
        .collect();
    let mine: BTreeMap<String, Desired> = units
        .into_iter()
        .filter(|(name, _)| placement.get(name) == Some(&Some(mesh.id)))
        .filter_map(|(name, doc)| Some((name, serde_json::from_value(doc).ok()?)))
        .collect();
    for (name, handle) in daemon.local_units() {
        if !mine.contains_key(&name) {
            tracing::info!("{name}: placed elsewhere now; stopping it here");
            let _ = handle.send(Command::Remove).await;
        }
    }
    if !mesh.runs_units() {
        return;
    }
    let local = daemon.local_units();
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
            None => match mesh.placed_on(&name).await {
                Ok(Some(node)) if node == mesh.id => {
                    tracing::info!("{name}: placed on node {}; starting it", mesh.id);
                    daemon.run_unit(&name, desired);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("{name}: cannot confirm its placement: {e}"),
            },
        }
    }
}

async fn stop_all(daemon: &Daemon) {
    let tasks: Vec<_> = daemon
        .local_units()
        .into_values()
        .map(|h| tokio::spawn(async move { h.send(Command::Remove).await }))
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
    /// The fencing and failover timeouts of `mesh.coordination.failover`.
    pub(crate) fn timeouts(&self) -> Result<Timeouts, String> {
        let f = &self.settings.coordination.failover;
        Timeouts::new(f.fence.std(), f.grace.std()).map_err(|e| e.to_string())
    }
}
