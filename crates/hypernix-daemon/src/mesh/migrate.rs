//! Live migration of a unit between two nodes of a cluster.
//!
//! 1. The source daemon (`hypernix migrate UNIT --to NODE`, on the node running it) checks the
//!    unit may move live (`features.persistence.migration = "live"`) and the destination runs
//!    units and is alive, then asks the destination's API to accept it.
//! 2. The destination starts the unit's QEMU waiting for the migration (`-incoming defer -S`,
//!    its disks fresh in its own storage, in its own format), exports its disk nodes over NBD
//!    on its mesh address, and answers the ports.
//!    It hashes what its disks hold (an older copy from an earlier stay, or nothing) block by
//!    block and answers the hashes too.
//! 3. The source mirrors its disks through a local [`DeltaProxy`] that drops the blocks the
//!    destination already holds (incremental transfer) into those exports, and migrates the
//!    memory ([`hypernix_vmm::migrate`]), with `hypervisor.migration`'s downtime limit and
//!    auto-converge; progress is published as `migration.progress` events.
//! 4. Done: the placement moves to the destination (released: the source is paused), the
//!    destination resumes the guest, and the source's agent stops its paused QEMU. Failed at
//!    any step: the destination drops its QEMU and the source keeps running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use hypernix_config::schema::compute::MigrationMode;
use hypernix_events::NewEvent;
use hypernix_mesh::consensus::{Command as Propose, NodeId, Table};
use hypernix_storage::nbd::client::{Address, NbdClient};
use hypernix_storage::nbd::delta::{self, DeltaExport, DeltaProxy, DeltaStats, Hash};
use hypernix_vmm::migrate::{self, Endpoint, Incoming, Options};
use hypernix_vmm::{DiskFormat, DiskSource};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Mesh;
use super::node::{NodeRecord, PlacementRecord};
use crate::daemon::Daemon;
use crate::error::DaemonError;
use crate::model::{Desired, UnitState};
use crate::unit::Command;

/// How often a migration publishes how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How long the destination waits for its incoming QEMU to start.
const START_WAIT: Duration = Duration::from_secs(30);

/// Where the destination takes a migrating unit: its NBD server and migration stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingPorts {
    /// The destination's address (its mesh IP).
    pub host: String,
    /// Its NBD server's port.
    pub nbd_port: u16,
    /// Its migration stream's port.
    pub migration_port: u16,
    /// Per disk node, what the destination's copy holds: BLAKE3 of each 64 KiB block, base64.
    #[serde(default)]
    pub digests: BTreeMap<String, String>,
}

/// What a completed migration measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    /// The unit.
    pub unit: String,
    /// The node it left.
    pub from: NodeId,
    /// The node it runs on now.
    pub to: NodeId,
    /// From the request to the destination's resume, in milliseconds.
    pub total_ms: u64,
    /// Until the disks were in step, in milliseconds.
    pub mirrored_ms: u64,
    /// The guest's pause at switch-over, in milliseconds, as QEMU measured it.
    pub downtime_ms: u64,
    /// Memory bytes sent.
    pub ram_bytes: u64,
    /// Disk bytes the mirrors copied.
    pub disk_bytes: u64,
    /// Disk data bytes sent to the destination (blocks it did not hold).
    pub disk_sent_bytes: u64,
    /// Disk bytes not sent: the destination held them already.
    pub disk_skipped_bytes: u64,
}

fn mesh_err(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Mesh(e.to_string())
}

fn unit_err(unit: &str, message: impl Into<String>) -> DaemonError {
    DaemonError::Unit {
        unit: unit.to_string(),
        message: message.into(),
    }
}

/// A loopback-or-mesh TCP port free a moment ago.
fn free_port(host: &str) -> Result<u16, DaemonError> {
    std::net::TcpListener::bind((host, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| mesh_err(format!("no free port on {host}: {e}")))
}

impl Daemon {
    fn clustered(&self) -> Result<&std::sync::Arc<Mesh>, DaemonError> {
        self.mesh
            .as_ref()
            .ok_or_else(|| mesh_err("this daemon is not clustered; units migrate between nodes"))
    }

    fn migration_options(&self) -> Result<Options, DaemonError> {
        let m = self.applied_config()?.hypervisor.migration;
        if m.bandwidth.is_some() {
            return Err(DaemonError::Config(vec![
                "hypervisor.migration.bandwidth: a bandwidth cap is not implemented yet; remove it"
                    .into(),
            ]));
        }
        if m.compression != Default::default() {
            return Err(DaemonError::Config(vec![
                "hypervisor.migration.compression: compressed migration is not implemented yet; \
                 use \"none\""
                    .into(),
            ]));
        }
        Ok(Options {
            downtime_limit: m.downtime_limit.std(),
            auto_converge: m.auto_converge,
            // Memory in parallel streams, one per core (at most four).
            multifd_channels: Some(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4)) as u8,
            ),
            ..Options::default()
        })
    }

    /// The writable disk nodes of unit `name`'s VM, as QEMU names them, with their sources.
    async fn disk_nodes(
        &self,
        name: &str,
        desired: &Desired,
    ) -> Result<Vec<(String, DiskSource)>, DaemonError> {
        let (spec, _) = self
            .shared
            .vm_spec(name, &desired.spec)
            .await
            .map_err(|e| unit_err(name, e))?;
        Ok(spec
            .disks
            .into_iter()
            .enumerate()
            .filter(|(_, d)| !d.read_only)
            .map(|(i, d)| (hypernix_vmm::command::disk_node(i), d.source))
            .collect())
    }

    /// Destination: starts unit `name` waiting for a live migration and answers where to send it.
    pub async fn accept_migration(&self, name: &str) -> Result<IncomingPorts, DaemonError> {
        let mesh = self.clustered()?;
        if !mesh.runs_units() {
            return Err(mesh_err(format!(
                "node {} runs no units (its roles)",
                mesh.id
            )));
        }
        if self.local_units().contains_key(name) {
            return Err(unit_err(name, "already has a task on this node"));
        }
        let doc = mesh
            .list(Table::Units)
            .map_err(mesh_err)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d)
            .ok_or_else(|| DaemonError::UnknownUnit(name.to_string()))?;
        let desired: Desired = serde_json::from_value(doc).map_err(mesh_err)?;
        let sources = self.disk_nodes(name, &desired).await?;
        let disks: Vec<String> = sources.iter().map(|(d, _)| d.clone()).collect();
        mesh.incoming
            .lock()
            .expect("incoming lock")
            .insert(name.to_string());
        let result = async {
            self.run_incoming(name, desired);
            let vm = self.wait_vm(name).await?;
            let host = mesh
                .listen
                .parse::<SocketAddr>()
                .map_err(mesh_err)?
                .ip()
                .to_string();
            let mut ports = IncomingPorts {
                nbd_port: free_port(&host)?,
                migration_port: free_port(&host)?,
                host,
                digests: BTreeMap::new(),
            };
            migrate::prepare_incoming(&vm, &disks, &incoming(&ports), &self.migration_options()?)
                .await
                .map_err(|e| unit_err(name, e.to_string()))?;
            let nbd = Address::Tcp(format!("{}:{}", ports.host, ports.nbd_port));
            for (disk, source) in &sources {
                let hashes = digest(&nbd, disk, source)
                    .await
                    .map_err(|e| unit_err(name, format!("hashing disk {disk}: {e}")))?;
                ports
                    .digests
                    .insert(disk.clone(), BASE64.encode(hashes.concat()));
            }
            self.watch_incoming(mesh, name, vm);
            Ok(ports)
        }
        .await;
        if result.is_err() {
            self.drop_incoming(mesh, name).await;
        }
        result
    }

    /// Destination: resumes the migrated guest (`resume`), or drops the waiting QEMU.
    pub async fn finish_migration(
        &self,
        name: &str,
        resume: bool,
        ready: bool,
    ) -> Result<(), DaemonError> {
        let mesh = self.clustered()?;
        if !resume {
            self.drop_incoming(mesh, name).await;
            return Ok(());
        }
        let vm = self.wait_vm(name).await?;
        migrate::finish_incoming(&vm)
            .await
            .map_err(|e| unit_err(name, e.to_string()))?;
        if let Ok(h) = self.handle(name) {
            let _ = h.send(Command::Migrated { ready }).await;
        }
        mesh.incoming.lock().expect("incoming lock").remove(name);
        Ok(())
    }

    async fn drop_incoming(&self, mesh: &Mesh, name: &str) {
        if let Ok(h) = self.handle(name) {
            let _ = h
                .send(Command::Evict {
                    grace: Duration::ZERO,
                })
                .await;
        }
        mesh.incoming.lock().expect("incoming lock").remove(name);
    }

    /// The running VM of local unit `name`, once its QEMU has started.
    async fn wait_vm(&self, name: &str) -> Result<std::sync::Arc<hypernix_vmm::Vm>, DaemonError> {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        loop {
            let h = self.handle(name)?;
            let observed = h.observed();
            if observed.state == UnitState::Failed {
                return Err(unit_err(name, observed.reason.unwrap_or_default()));
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            h.send(Command::Vm(tx))
                .await
                .map_err(|e| unit_err(name, e))?;
            if let Ok(Some(vm)) = rx.await {
                return Ok(vm);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(unit_err(name, "its QEMU did not start in time"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Source: live-migrates local unit `name` to node `to`.
    pub async fn migrate_unit(
        &self,
        name: &str,
        to: NodeId,
    ) -> Result<MigrationReport, DaemonError> {
        let mesh = self.clustered()?;
        let started = std::time::Instant::now();
        let handle = self.handle(name)?;
        let desired = handle.desired();
        match desired.spec.settings.features.persistence.migration {
            MigrationMode::Live => {}
            mode => {
                return Err(unit_err(
                    name,
                    format!(
                        "features.persistence.migration is {:?}; set it to \"live\" to move it \
                         while it runs (cold moves are not implemented yet)",
                        serde_json::to_value(mode).unwrap_or_default()
                    ),
                ));
            }
        }
        if to == mesh.id {
            return Err(unit_err(name, format!("already runs on node {to}")));
        }
        let target = mesh
            .list(Table::Nodes)
            .map_err(mesh_err)?
            .into_iter()
            .filter_map(|(_, d)| serde_json::from_value::<NodeRecord>(d).ok())
            .find(|r| r.id == to)
            .ok_or_else(|| mesh_err(format!("no node {to}; `hypernix mesh status` lists them")))?;
        if !target.runs_units || !mesh.members.borrow().contains_key(&to) {
            return Err(mesh_err(format!("node {to} is not alive or runs no units")));
        }
        let vm = self.wait_vm(name).await?;
        let disks: Vec<String> = self
            .disk_nodes(name, &desired)
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let options = self.migration_options()?;
        let token = std::fs::read_to_string(self.layout().root_token()).map_err(mesh_err)?;
        self.migration_event(name, "migration.started", json!({ "to": to }))
            .await;
        let ports: IncomingPorts = call(&target.api, token.trim(), ACCEPT, json!({ "name": name }))
            .await
            .and_then(|v| serde_json::from_value(v["acceptMigration"].clone()).map_err(mesh_err))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (proxy_socket, stats, proxy) = match self.delta_proxy(name, &disks, &ports) {
            Ok(p) => p,
            Err(e) => {
                let vars = json!({ "name": name, "resume": false, "ready": false });
                let _ = call(&target.api, token.trim(), FINISH, vars).await;
                return Err(e);
            }
        };
        let endpoints = Incoming {
            nbd: Endpoint::Unix(proxy_socket.clone()),
            ..incoming(&ports)
        };
        let migrating = migrate::migrate(&vm, &disks, &endpoints, &options, move |s| {
            let _ = tx.send(s.to_string());
        });
        tokio::pin!(migrating);
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        let mut step = String::new();
        let result = loop {
            tokio::select! {
                r = &mut migrating => break r,
                Some(next) = rx.recv() => {
                    step = next;
                    let payload = json!({ "to": to, "step": step });
                    self.migration_event(name, "migration.progress", payload).await;
                }
                _ = tick.tick(), if !step.is_empty() => {
                    let mut payload = transferred(&vm, &stats).await;
                    payload["to"] = json!(to);
                    payload["step"] = json!(step);
                    self.migration_event(name, "migration.progress", payload).await;
                }
            }
        };
        proxy.abort();
        let _ = std::fs::remove_file(&proxy_socket);
        let finish = |resume: bool| {
            let vars = json!({ "name": name, "resume": resume, "ready": handle.observed().ready });
            call(&target.api, token.trim(), FINISH, vars)
        };
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                let _ = finish(false).await;
                self.migration_event(
                    name,
                    "migration.failed",
                    json!({ "to": to, "reason": e.to_string() }),
                )
                .await;
                return Err(unit_err(
                    name,
                    format!("live migration to node {to} failed: {e}"),
                ));
            }
        };
        // The source is paused: the unit is the destination's from now on.
        let record = PlacementRecord {
            node: to,
            since_ms: super::now().as_millis() as u64,
            reason: "migrate".into(),
            from: Some(mesh.id),
            released: true,
        };
        let value = serde_json::to_value(&record).map_err(mesh_err)?;
        mesh.propose(Propose::Put {
            table: Table::Placement,
            key: name.to_string(),
            value,
        })
        .await
        .map_err(mesh_err)?;
        finish(true).await?;
        let _ = handle
            .send(Command::Evict {
                grace: Duration::ZERO,
            })
            .await;
        let report = MigrationReport {
            unit: name.to_string(),
            from: mesh.id,
            to,
            total_ms: started.elapsed().as_millis() as u64,
            mirrored_ms: report.mirrored.as_millis() as u64,
            downtime_ms: report.downtime_ms,
            ram_bytes: report.ram_bytes,
            disk_bytes: report.disk_bytes,
            disk_sent_bytes: stats.sent.load(Ordering::Relaxed),
            disk_skipped_bytes: stats.skipped.load(Ordering::Relaxed),
        };
        let payload = serde_json::to_value(&report).unwrap_or_default();
        self.migration_event(name, "migration.completed", payload)
            .await;
        Ok(report)
    }

    /// Source: a proxy on a local socket through which the mirrors reach the destination's
    /// exports, sending only the blocks its `digests` say it lacks.
    fn delta_proxy(
        &self,
        name: &str,
        disks: &[String],
        ports: &IncomingPorts,
    ) -> Result<
        (
            std::path::PathBuf,
            std::sync::Arc<DeltaStats>,
            tokio::task::JoinHandle<()>,
        ),
        DaemonError,
    > {
        let far = Address::Tcp(format!("{}:{}", ports.host, ports.nbd_port));
        let mut exports = Vec::new();
        for disk in disks {
            let digest = match ports.digests.get(disk) {
                Some(b64) => decode_digest(b64).ok_or_else(|| {
                    mesh_err(format!(
                        "the destination's digest of disk {disk} is malformed"
                    ))
                })?,
                None => Vec::new(),
            };
            let export = DeltaExport {
                far: far.clone(),
                far_export: disk.clone(),
                digest,
            };
            exports.push((disk.clone(), export));
        }
        let proxy = DeltaProxy::new(exports);
        let socket = self.layout().unit_dir(name).join("migrate.sock");
        let task = proxy
            .listen(&socket)
            .map_err(|e| mesh_err(format!("{}: {e}", socket.display())))?;
        Ok((socket, proxy.stats(), task))
    }

    async fn migration_event(&self, unit: &str, kind: &str, payload: Value) {
        let _ = self
            .publish(NewEvent::new(kind, format!("unit/{unit}")).with_payload(payload))
            .await;
    }
}

/// What the destination's disk node `disk` holds, block by block: a raw file is read
/// directly (holes cost nothing), anything else through QEMU's export of it at `nbd`.
async fn digest(nbd: &Address, disk: &str, source: &DiskSource) -> Result<Vec<Hash>, String> {
    if let DiskSource::File {
        path,
        format: DiskFormat::Raw,
    } = source
    {
        let path = path.clone();
        return tokio::task::spawn_blocking(move || delta::digest_file(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
    }
    let mut c = NbdClient::connect(nbd, disk)
        .await
        .map_err(|e| e.to_string())?;
    let hashes = delta::digest(&mut c, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.disconnect().await;
    Ok(hashes)
}

/// How far a migration got ([`migrate::progress`]), with the disk bytes sent and spared.
async fn transferred(vm: &hypernix_vmm::Vm, stats: &DeltaStats) -> Value {
    let p = migrate::progress(vm).await;
    json!({
        "diskDone": p.disk_done,
        "diskTotal": p.disk_total,
        "diskSent": stats.sent.load(Ordering::Relaxed),
        "diskSkipped": stats.skipped.load(Ordering::Relaxed),
        "ramDone": p.ram_done,
        "ramTotal": p.ram_total,
    })
}

/// Block hashes from their base64 form; `None` if it is not whole 32-byte hashes.
fn decode_digest(b64: &str) -> Option<Vec<Hash>> {
    let bytes = BASE64.decode(b64).ok()?;
    if bytes.len() % 32 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32 bytes"))
            .collect(),
    )
}

fn incoming(p: &IncomingPorts) -> Incoming {
    let at = |port| Endpoint::Tcp {
        host: p.host.clone(),
        port,
    };
    Incoming {
        nbd: at(p.nbd_port),
        migration: at(p.migration_port),
    }
}

const ACCEPT: &str = "mutation($name: String!) { acceptMigration(name: $name) }";
const FINISH: &str = "mutation($name: String!, $resume: Boolean!, $ready: Boolean!) { finishMigration(name: $name, resume: $resume, ready: $ready) }";

/// One GraphQL request to another node's API, with this node's root credential (the key
/// ring is the cluster's).
async fn call(api: &str, token: &str, query: &str, variables: Value) -> Result<Value, DaemonError> {
    let url = format!("http://{api}/graphql");
    let auth = format!("Bearer {token}");
    let body = json!({ "query": query, "variables": variables });
    let answer = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        agent
            .post(&url)
            .header("Authorization", &auth)
            .send_json(body)
            .map_err(|e| e.to_string())?
            .body_mut()
            .read_json::<Value>()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(mesh_err)?
    .map_err(|e| mesh_err(format!("the destination's API at {api}: {e}")))?;
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(mesh_err(format!(
            "the destination refused: {}",
            errors[0]["message"]
        )));
    }
    Ok(answer["data"].clone())
}
