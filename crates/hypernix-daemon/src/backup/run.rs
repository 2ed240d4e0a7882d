//! Running one backup source now: its units' disks through QEMU (the steps in the parent
//! module), or its host paths as a tree.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypernix_backup::nbd::{BASE_ALLOCATION, NbdClient, dirty_bitmap_context};
use hypernix_backup::{
    BackupOptions, ImageOptions, Repository, Snapshot, SnapshotKind, backup_image,
};
use hypernix_config::schema::backup::{Backup, SnapshotConsistency, Source, SourceKind};
use hypernix_events::NewEvent;
use hypernix_vmm::qmp::BlockNode;
use hypernix_vmm::{QmpClient, Vm};
use serde_json::json;
use tokio::sync::oneshot;

use super::{SnapshotInfo, open_repository};
use crate::daemon::Daemon;
use crate::error::DaemonError;
use crate::unit::Command;

/// Backups run one at a time: a repository's index has one writer.
static RUNNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How often a running backup reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The prefix of the dirty bitmaps hypernix makes: `hnx:STAMP:SOURCE`.
const BITMAP_PREFIX: &str = "hnx:";

impl Daemon {
    /// Backs up source `name` of the applied configuration now and returns the new
    /// snapshots; `backup.completed` or `backup.failed` follows on the bus.
    pub async fn backup_source(&self, name: &str) -> Result<Vec<SnapshotInfo>, DaemonError> {
        let config = self.applied_config()?.hypervisor.backup;
        let Some(source) = config.sources.get(name) else {
            return Err(DaemonError::Backup {
                name: name.into(),
                message: "not in hypervisor.backup.sources of the applied configuration; \
                          declare it and apply"
                    .into(),
            });
        };
        let _one_at_a_time = RUNNING.lock().await;
        let repository = config.repository_of(source).to_string();
        let result = self.run_source(name, &config, source).await;
        let subject = format!("backup/{name}");
        let event = match &result {
            Ok((snaps, skipped)) => NewEvent::new("backup.completed", subject).with_payload(
                json!({ "source": name, "repository": repository, "snapshots": snaps,
                        "skipped": skipped }),
            ),
            Err(e) => NewEvent::new("backup.failed", subject)
                .with_payload(json!({ "source": name, "repository": repository, "error": e })),
        };
        self.shared.publish(event).await;
        result
            .map(|(snaps, _)| snaps)
            .map_err(|message| DaemonError::Backup {
                name: name.into(),
                message,
            })
    }

    /// The snapshots of repository `name`, oldest first.
    pub async fn backup_snapshots(&self, name: &str) -> Result<Vec<SnapshotInfo>, DaemonError> {
        let config = self.applied_config()?.hypervisor.backup;
        let layout = self.shared.layout.clone();
        let _one_at_a_time = RUNNING.lock().await;
        let repo = name.to_string();
        let listed = tokio::task::spawn_blocking(move || {
            let repo = open_repository(&config, &layout, &repo)?;
            repo.snapshots().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match listed {
            Ok(snaps) => Ok(snaps.iter().map(SnapshotInfo::from).collect()),
            Err(message) => Err(DaemonError::Backup {
                name: name.into(),
                message,
            }),
        }
    }

    /// The snapshots made, and the selected units skipped because they are not running.
    async fn run_source(
        &self,
        name: &str,
        config: &Backup,
        source: &Source,
    ) -> Result<(Vec<SnapshotInfo>, Vec<String>), String> {
        if source.strategy.consistency == SnapshotConsistency::ApplicationConsistent {
            return Err(
                "strategy.consistency = \"application-consistent\" needs a guest \
                        agent, which hypernix does not run yet; use \"crash-consistent\""
                    .into(),
            );
        }
        let kind = source.effective_kind();
        if kind == SourceKind::Volume {
            return Err(
                "type = \"volume\": volumes are not backed up on their own yet; \
                        select their units with type = \"compute-unit\""
                    .into(),
            );
        }
        let (config, layout, repo_name) = (
            config.clone(),
            self.shared.layout.clone(),
            config.repository_of(source).to_string(),
        );
        let repo = blocking(move || open_repository(&config, &layout, &repo_name)).await?;
        let repo = Arc::new(repo);
        if kind == SourceKind::Path {
            let options = BackupOptions {
                source: name.to_string(),
                kind: SnapshotKind::Tree,
                paths: source.selection.paths.iter().map(PathBuf::from).collect(),
            };
            let snap = blocking(move || {
                hypernix_backup::backup(&repo, &options, &mut |_| {}).map_err(|e| e.to_string())
            })
            .await?;
            return Ok((vec![SnapshotInfo::from(&snap)], Vec::new()));
        }
        let selection = &source.selection;
        let units: Vec<String> = self
            .units()
            .into_iter()
            .filter(|u| {
                selection.ids.contains(&u.name)
                    || (!selection.labels.is_empty()
                        && selection
                            .labels
                            .iter()
                            .all(|(k, v)| u.labels.get(k) == Some(v)))
            })
            .map(|u| u.name)
            .collect();
        if units.is_empty() {
            return Err("selection matches no compute unit; check its labels and ids".into());
        }
        let (mut made, mut skipped) = (Vec::new(), Vec::new());
        for unit in units {
            let Some(vm) = self.unit_vm(&unit).await else {
                skipped.push(unit);
                continue;
            };
            let disk = DiskBackup {
                daemon: self,
                repo: repo.clone(),
                qmp: vm.qmp().clone(),
                run_dir: vm.run_dir().path().to_path_buf(),
                source: name,
                unit: &unit,
            };
            for node in disk.nodes().await? {
                let snap = disk.run(&node).await?;
                made.push(SnapshotInfo::from(&snap));
            }
        }
        Ok((made, skipped))
    }

    /// The unit's running VM, if it has one.
    pub(crate) async fn unit_vm(&self, unit: &str) -> Option<Arc<Vm>> {
        let handle = self.handle(unit).ok()?;
        let (tx, rx) = oneshot::channel();
        handle.send(Command::Vm(tx)).await.ok()?;
        rx.await.ok().flatten()
    }
}

/// Runs blocking repository work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("backup task failed: {e}"))?
}

/// The backups of one unit's disks.
struct DiskBackup<'a> {
    daemon: &'a Daemon,
    repo: Arc<Repository>,
    qmp: QmpClient,
    run_dir: PathBuf,
    source: &'a str,
    unit: &'a str,
}

impl DiskBackup<'_> {
    /// The unit's disks: the format nodes `disk0`, `disk1`, ...
    async fn nodes(&self) -> Result<Vec<BlockNode>, String> {
        let nodes = self
            .qmp
            .block_nodes()
            .await
            .map_err(|e| format!("unit `{}`: {e}", self.unit))?;
        let mut disks = Vec::new();
        for index in 0.. {
            let name = hypernix_vmm::command::disk_node(index);
            match nodes.iter().find(|n| n.node_name == name) {
                Some(node) => disks.push(node.clone()),
                None => break,
            }
        }
        Ok(disks)
    }

    /// Backs up one disk (steps 1 to 7 of the module docs).
    async fn run(&self, node: &BlockNode) -> Result<Snapshot, String> {
        let disk = &node.node_name;
        let key = format!("{}/{}/{disk}", self.source, self.unit);
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("unit `{}` disk {disk}: {what}: {e}", self.unit)
        };
        // Step 1: the parent, and bitmaps of this source left by failed runs.
        let repo = self.repo.clone();
        let all = blocking(move || repo.snapshots().map_err(|e| e.to_string())).await?;
        let usable = |b: &str| {
            node.dirty_bitmaps
                .iter()
                .any(|d| d.name == b && !d.inconsistent)
        };
        let parent = all
            .into_iter()
            .rfind(|s| s.source == key)
            .filter(|s| s.bitmap.as_deref().is_some_and(usable));
        let old = parent.as_ref().and_then(|p| p.bitmap.clone());
        for stale in node.dirty_bitmaps.iter().filter(|d| {
            bitmap_source(&d.name) == Some(self.source) && Some(&d.name) != old.as_ref()
        }) {
            self.qmp
                .bitmap_remove(disk, &stale.name)
                .await
                .map_err(|e| fail("removing a stale bitmap", &e))?;
        }
        let stamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let new = format!("{BITMAP_PREFIX}{stamp:016x}:{}", self.source);
        // Step 2: the overlay.
        let fleece = format!("hnx-fleece-{disk}");
        let job = format!("hnx-backup-{disk}");
        let overlay = self.run_dir.join(format!("backup-{disk}.qcow2"));
        let socket = self.run_dir.join(format!("backup-{disk}.sock"));
        // A daemon that died mid-backup may have left them in QEMU.
        self.teardown(&fleece, &job, &overlay, &socket, false).await;
        create_overlay(&overlay, node.image.virtual_size)
            .await
            .map_err(|e| fail("creating the overlay", &e))?;
        let added = self
            .qmp
            .blockdev_add(json!({"driver": "qcow2", "node-name": fleece,
                "file": {"driver": "file", "filename": overlay}, "backing": disk}))
            .await;
        if let Err(e) = added {
            let _ = std::fs::remove_file(&overlay);
            return Err(fail("adding the overlay", &e));
        }
        // Steps 3 to 5.
        let result = self
            .read(node, &key, parent, &new, &fleece, &job, &socket)
            .await;
        // Step 6.
        self.teardown(&fleece, &job, &overlay, &socket, true).await;
        // Step 7.
        match (&result, &old) {
            (Ok(_), Some(old)) => {
                let _ = self.qmp.bitmap_remove(disk, old).await;
            }
            (Err(_), Some(old)) => {
                let _ = self
                    .qmp
                    .transaction(vec![
                        json!({"type": "block-dirty-bitmap-enable",
                               "data": {"node": disk, "name": old}}),
                        json!({"type": "block-dirty-bitmap-merge",
                               "data": {"node": disk, "target": old, "bitmaps": [new]}}),
                    ])
                    .await;
                let _ = self.qmp.bitmap_remove(disk, &new).await;
            }
            (Err(_), None) => {
                let _ = self.qmp.bitmap_remove(disk, &new).await;
            }
            (Ok(_), None) => {}
        }
        result
    }

    /// Step 6: removes the export, the NBD server, the job and the overlay; with `warn`,
    /// an overlay node that cannot be removed is logged.
    async fn teardown(&self, fleece: &str, job: &str, overlay: &Path, socket: &Path, warn: bool) {
        let _ = self.qmp.block_export_del(job).await;
        let _ = self.qmp.nbd_server_stop().await;
        let _ = self.qmp.block_job_cancel(job).await;
        if let Err(e) = self.qmp.blockdev_del(fleece).await
            && warn
        {
            tracing::warn!("unit {}: removing the overlay {fleece}: {e}", self.unit);
        }
        let _ = std::fs::remove_file(overlay);
        let _ = std::fs::remove_file(socket);
    }

    /// Steps 3 to 5: the point-in-time transaction, the export, and the engine's read.
    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        node: &BlockNode,
        key: &str,
        parent: Option<Snapshot>,
        new: &str,
        fleece: &str,
        job: &str,
        socket: &Path,
    ) -> Result<Snapshot, String> {
        let disk = node.node_name.clone();
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("unit `{}` disk {disk}: {what}: {e}", self.unit)
        };
        let old = parent.as_ref().and_then(|p| p.bitmap.clone());
        let mut actions = vec![json!({"type": "block-dirty-bitmap-add", "data": {
            "node": disk, "name": new, "persistent": node.drv == "qcow2"}})];
        if let Some(old) = &old {
            actions.push(json!({"type": "block-dirty-bitmap-disable",
                                "data": {"node": disk, "name": old}}));
        }
        actions.push(json!({"type": "blockdev-backup", "data": {
            "device": disk, "target": fleece, "sync": "none", "job-id": job}}));
        self.qmp
            .transaction(actions)
            .await
            .map_err(|e| fail("starting the point-in-time view", &e))?;
        self.qmp
            .nbd_server_start(socket)
            .await
            .map_err(|e| fail("starting QEMU's NBD server", &e))?;
        let bitmaps: Vec<String> = old.iter().cloned().collect();
        self.qmp
            .nbd_export_add(job, fleece, &disk, &bitmaps)
            .await
            .map_err(|e| fail("exporting the point-in-time view", &e))?;

        let options = ImageOptions {
            source: key.to_string(),
            path: format!("{}/{disk}", self.unit),
            parent,
            changed: Vec::new(),
            bitmap: Some(new.to_string()),
        };
        let (repo, socket) = (self.repo.clone(), socket.to_path_buf());
        let runtime = tokio::runtime::Handle::current();
        let shared = self.daemon.shared.clone();
        let progress_payload = json!({ "source": self.source, "unit": self.unit, "disk": disk,
                                       "total": node.image.virtual_size });
        let subject = format!("backup/{}", self.source);
        blocking(move || {
            let context = match &old {
                Some(b) => dirty_bitmap_context(b),
                None => BASE_ALLOCATION.to_string(),
            };
            let mut nbd =
                NbdClient::connect(&socket, &disk, Some(&context)).map_err(|e| e.to_string())?;
            let changed = match old {
                Some(_) => nbd.ranges_with(1),
                None => nbd.allocated(),
            }
            .map_err(|e| e.to_string())?;
            let options = ImageOptions { changed, ..options };
            let total = nbd.size();
            let (mut done, mut last) = (0u64, Instant::now());
            let mut progress = |n: u64| {
                done += n;
                if last.elapsed() >= PROGRESS_EVERY || done >= total {
                    last = Instant::now();
                    let mut payload = progress_payload.clone();
                    payload["done"] = json!(done);
                    let event =
                        NewEvent::new("backup.progress", subject.clone()).with_payload(payload);
                    runtime.block_on(shared.publish(event));
                }
            };
            backup_image(&repo, &options, &mut nbd, &mut progress).map_err(|e| e.to_string())
        })
        .await
    }
}

/// The source a hypernix bitmap belongs to (`hnx:STAMP:SOURCE`).
fn bitmap_source(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(BITMAP_PREFIX)?;
    let (stamp, source) = rest.split_once(':')?;
    (stamp.len() == 16).then_some(source)
}

/// Creates an empty qcow2 overlay of `size` bytes.
async fn create_overlay(path: &Path, size: u64) -> Result<(), String> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size.to_string())
        .output()
        .await
        .map_err(|e| format!("cannot run qemu-img: {e}; install qemu-utils"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
