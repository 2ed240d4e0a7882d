//! Capabilities across the cluster: one key ring (so a token verifies on every node) and
//! one list of revocations, both replicated.
//!
//! - The key ring's files go in `meta/capsKeys` (`{ "keyring.json": ..., "root-N.key": ... }`):
//!   the node holding the cluster CA publishes its own when there are none; a joining node
//!   writes them into `STATE/caps` before its guard opens; a rotation on any node publishes
//!   the rotated files; every node adopts files that differ from its own.
//! - A revocation on any node is also a `revocations/<id>` entry; every node revokes the ids
//!   it finds there.

use std::collections::BTreeMap;
use std::time::Duration;

use hypernix_mesh::consensus::{Command, Table};
use serde_json::{Value, json};

use super::Mesh;
use crate::daemon::Daemon;
use crate::error::DaemonError;
use crate::layout::Layout;

/// The `meta` key of the replicated key ring.
const KEYS: &str = "capsKeys";
/// How long a joining node waits for the replicated key ring.
const KEYS_WAIT: Duration = Duration::from_secs(20);

type KeyFiles = BTreeMap<String, String>;

fn replicated_keys(mesh: &Mesh) -> Option<KeyFiles> {
    let doc = mesh.raft.read_local(Table::Meta, KEYS).ok()??;
    serde_json::from_value(doc).ok()
}

impl Mesh {
    /// On a node that does not hold the CA, waits for the cluster's key ring and writes it
    /// into `STATE/caps` (before the guard opens it).
    pub(crate) async fn take_cluster_keys(&self, layout: &Layout) -> anyhow::Result<()> {
        if self.ca.is_some() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + KEYS_WAIT;
        let files = loop {
            if let Some(files) = replicated_keys(self) {
                break files;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "node {} has not received the cluster's capability keys within {KEYS_WAIT:?}; \
                     is the node that bootstrapped the cluster running?",
                    self.id
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        crate::security::write_key_files(layout, &files)?;
        Ok(())
    }
}

impl Daemon {
    /// Publishes or adopts the key ring, and applies the cluster's revocations (each agent round).
    pub(crate) async fn sync_caps(&self, mesh: &Mesh) {
        let _one = mesh.caps_lock.lock().await;
        let layout = &self.shared.layout;
        let local = match self.guard.key_files(layout) {
            Ok(files) => files,
            Err(e) => return tracing::error!("cannot read the key ring: {e}"),
        };
        match replicated_keys(mesh) {
            None if mesh.ca.is_some() => {
                if let Err(e) = publish(mesh, &local).await {
                    tracing::warn!("cannot publish the key ring: {e}");
                }
            }
            Some(files) if files != local => match self.guard.adopt_keys(layout, &files) {
                Ok(()) => tracing::info!("adopted the cluster's capability key ring"),
                Err(e) => tracing::error!("cannot adopt the cluster's key ring: {e}"),
            },
            _ => {}
        }
        for (id, _) in mesh.list(Table::Revocations).unwrap_or_default() {
            if !self.guard.is_revoked(&id)
                && let Err(e) = self.guard.revoke(&id)
            {
                tracing::error!("cannot revoke {id}: {e}");
            }
        }
    }

    /// Revokes every token carrying revocation id `id`, on every node of a cluster.
    pub async fn revoke_token(&self, id: &str) -> Result<(), DaemonError> {
        self.guard
            .revoke(id)
            .map_err(|e| DaemonError::Store(e.to_string()))?;
        if let Some(mesh) = &self.mesh {
            let command = Command::Put {
                table: Table::Revocations,
                key: id.to_ascii_lowercase(),
                value: json!({ "at": chrono::Utc::now().to_rfc3339(), "node": mesh.id }),
            };
            mesh.propose(command)
                .await
                .map_err(|e| DaemonError::Mesh(format!("revoked here, not replicated: {e}")))?;
        }
        Ok(())
    }

    /// Makes a new root key (tokens of the old one stay valid for `grace`), on every node
    /// of a cluster; returns its id.
    pub async fn rotate_root_key(&self, grace: chrono::Duration) -> Result<u32, DaemonError> {
        let layout = &self.shared.layout;
        let caps = |e: hypernix_caps::CapsError| DaemonError::Store(e.to_string());
        let Some(mesh) = &self.mesh else {
            return self.guard.rotate(layout, grace).map_err(caps);
        };
        let _one = mesh.caps_lock.lock().await;
        let id = self.guard.rotate(layout, grace).map_err(caps)?;
        let files = self.guard.key_files(layout).map_err(caps)?;
        publish(mesh, &files)
            .await
            .map_err(|e| DaemonError::Mesh(format!("rotated here, not replicated: {e}")))?;
        Ok(id)
    }
}

async fn publish(mesh: &Mesh, files: &KeyFiles) -> Result<(), String> {
    let value: Value = serde_json::to_value(files).map_err(|e| e.to_string())?;
    let command = Command::Put {
        table: Table::Meta,
        key: KEYS.into(),
        value,
    };
    mesh.propose(command)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
