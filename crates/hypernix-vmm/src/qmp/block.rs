//! Typed helpers for reading a running disk at one point in time: block nodes and their
//! dirty bitmaps, transactions, node add and delete, block jobs, and QEMU's NBD server.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::{QmpClient, QmpError};

/// How long a cancelled job or a deleted export may take to go away.
const SETTLE: Duration = Duration::from_secs(10);

/// A block node, as `query-named-block-nodes` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct BlockNode {
    /// The node name.
    #[serde(rename = "node-name")]
    pub node_name: String,
    /// The block driver (`qcow2`, `raw`, `file`, `nbd`, ...).
    pub drv: String,
    /// The image the node presents.
    pub image: ImageInfo,
    /// The node's dirty bitmaps.
    #[serde(rename = "dirty-bitmaps", default)]
    pub dirty_bitmaps: Vec<DirtyBitmap>,
}

/// What a node presents to its users.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageInfo {
    /// The size in bytes.
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
}

/// A dirty bitmap of a node.
#[derive(Debug, Clone, Deserialize)]
pub struct DirtyBitmap {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Dirty bytes.
    pub count: u64,
    /// Whether it records writes now.
    #[serde(default)]
    pub recording: bool,
    /// Whether it is stored in the image (qcow2) and survives a restart.
    #[serde(default)]
    pub persistent: bool,
    /// Whether QEMU stopped without saving it, so that it cannot be trusted.
    #[serde(default)]
    pub inconsistent: bool,
}

impl QmpClient {
    /// `query-named-block-nodes` (flat): every block node.
    pub async fn block_nodes(&self) -> Result<Vec<BlockNode>, QmpError> {
        self.call("query-named-block-nodes", Some(json!({"flat": true})))
            .await
    }

    /// `transaction`: runs `actions` (`{"type": ..., "data": ...}`) atomically.
    pub async fn transaction(&self, actions: Vec<Value>) -> Result<(), QmpError> {
        self.done("transaction", json!({"actions": actions})).await
    }

    /// `blockdev-add` with `options`.
    pub async fn blockdev_add(&self, options: Value) -> Result<(), QmpError> {
        self.done("blockdev-add", options).await
    }

    /// `blockdev-del` of `node`.
    pub async fn blockdev_del(&self, node: &str) -> Result<(), QmpError> {
        self.done("blockdev-del", json!({"node-name": node})).await
    }

    /// `block-job-cancel` of `job`, then waits until it is gone.
    pub async fn block_job_cancel(&self, job: &str) -> Result<(), QmpError> {
        self.done("block-job-cancel", json!({"device": job, "force": true}))
            .await?;
        self.settle("query-block-jobs", "device", job).await
    }

    /// `nbd-server-start` on the unix socket `socket`.
    pub async fn nbd_server_start(&self, socket: &Path) -> Result<(), QmpError> {
        let path = socket.to_string_lossy();
        let addr = json!({"type": "unix", "data": {"path": path}});
        self.done("nbd-server-start", json!({"addr": addr})).await
    }

    /// `nbd-server-stop`.
    pub async fn nbd_server_stop(&self) -> Result<(), QmpError> {
        self.call::<IgnoredAny>("nbd-server-stop", None)
            .await
            .map(|_| ())
    }

    /// `block-export-add`: exports `node` read-only over NBD as `name`, with `bitmaps` as
    /// metadata contexts.
    pub async fn nbd_export_add(
        &self,
        id: &str,
        node: &str,
        name: &str,
        bitmaps: &[String],
    ) -> Result<(), QmpError> {
        let mut args = json!({"type": "nbd", "id": id, "node-name": node, "name": name,
                              "writable": false});
        if !bitmaps.is_empty() {
            args["bitmaps"] = json!(bitmaps);
        }
        self.done("block-export-add", args).await
    }

    /// `block-export-del` of `id` (clients are cut off), then waits until it is gone.
    pub async fn block_export_del(&self, id: &str) -> Result<(), QmpError> {
        self.done("block-export-del", json!({"id": id, "mode": "hard"}))
            .await?;
        self.settle("query-block-exports", "id", id).await
    }

    /// `block-dirty-bitmap-remove` of `name` on `node`.
    pub async fn bitmap_remove(&self, node: &str, name: &str) -> Result<(), QmpError> {
        self.done(
            "block-dirty-bitmap-remove",
            json!({"node": node, "name": name}),
        )
        .await
    }

    /// Polls `query` until no entry has `key` = `value` (giving up with a warning after
    /// [`SETTLE`]; what follows then fails with QEMU's own reason).
    async fn settle(&self, query: &str, key: &str, value: &str) -> Result<(), QmpError> {
        let start = Instant::now();
        loop {
            let entries: Vec<Value> = self.call(query, None).await?;
            if !entries.iter().any(|e| e[key] == value) {
                return Ok(());
            }
            if start.elapsed() > SETTLE {
                tracing::warn!("{query}: {value} still listed after {SETTLE:?}");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn done(&self, command: &str, arguments: Value) -> Result<(), QmpError> {
        self.call::<IgnoredAny>(command, Some(arguments))
            .await
            .map(|_| ())
    }
}
