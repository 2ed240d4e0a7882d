//! Publishes the cluster's changes on the daemon's bus: `mesh.topology` (the members this
//! node sees), `mesh.node` (one node's health changed) and `mesh.consensus` (leader or term).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use hypernix_events::NewEvent;
use hypernix_mesh::consensus::{Consensus, NodeId};
use hypernix_mesh::membership::Members;
use serde_json::json;

use super::Mesh;
use crate::daemon::Daemon;

/// Follows membership and leadership until the daemon is dropped.
pub(crate) fn spawn(daemon: Weak<Daemon>, mesh: Arc<Mesh>) {
    let mut members = mesh.members.clone();
    let mut leadership = mesh.raft.leadership();
    tokio::spawn(async move {
        let mut known: Members = BTreeMap::new();
        let mut last_leadership = None;
        loop {
            let Some(d) = daemon.upgrade() else { break };
            let now = members.borrow_and_update().clone();
            if now != known {
                topology(&d, &mesh, &known, &now).await;
                known = now;
            }
            let lead = *leadership.borrow_and_update();
            if last_leadership != Some(lead) {
                last_leadership = Some(lead);
                let payload = json!({ "leader": lead.leader, "term": lead.term, "node": mesh.id });
                publish(&d, "mesh.consensus", format!("node/{}", mesh.id), payload).await;
            }
            drop(d);
            tokio::select! {
                r = members.changed() => if r.is_err() { break },
                r = leadership.changed() => if r.is_err() { break },
            }
        }
    });
}

async fn topology(daemon: &Daemon, mesh: &Mesh, before: &Members, after: &Members) {
    let list: Vec<_> = after
        .iter()
        .map(|(id, m)| json!({ "id": id, "addr": m.addr, "roles": m.roles }))
        .collect();
    let payload = json!({ "observer": mesh.id, "members": list });
    publish(
        daemon,
        "mesh.topology",
        format!("node/{}", mesh.id),
        payload,
    )
    .await;
    let ids: std::collections::BTreeSet<NodeId> =
        before.keys().chain(after.keys()).copied().collect();
    for id in ids {
        let status = match (before.contains_key(&id), after.contains_key(&id)) {
            (false, true) => "alive",
            (true, false) => "dead",
            _ => continue,
        };
        let payload = json!({ "node": id, "status": status, "observer": mesh.id });
        publish(daemon, "mesh.node", format!("node/{id}"), payload).await;
    }
}

async fn publish(daemon: &Daemon, kind: &str, subject: String, payload: serde_json::Value) {
    if let Err(e) = daemon
        .publish(NewEvent::new(kind, subject).with_payload(payload))
        .await
    {
        tracing::warn!("cannot publish {kind}: {e}");
    }
}
