//! Live migration of a running VM into a second QEMU started to receive it
//! (`-incoming defer -S`): its disks are mirrored over NBD into the destination's own disk
//! nodes while the guest runs, then its memory is migrated, and the destination resumes.
//!
//! 1. [`prepare_incoming`] on the destination: an NBD server with a writable export of each
//!    disk node, migration capabilities, and `migrate-incoming`;
//! 2. [`migrate`] on the source: an NBD client node per disk and a `blockdev-mirror`
//!    (`sync: full`) into it, until every mirror is ready (in step with the guest's writes);
//!    then the migration capabilities and downtime limit, and `migrate`, polled until it
//!    completes (the source is paused then); then the ready mirrors are cancelled, which
//!    leaves their targets consistent with the paused source;
//! 3. [`finish_incoming`] on the destination: the NBD server stops and the guest resumes.
//!
//! Any failure in step 2 cancels the migration and the mirrors and resumes the source if
//! the migration had paused it: the source keeps running, unharmed. A dead connection
//! (the network cut, packets vanishing) raises no error in QEMU, which waits on it for
//! as long as TCP retransmits: so a mirror or a memory migration whose byte counter stays
//! put for [`Options::stall_timeout`] fails too, and the cancel first yanks (shuts down)
//! the stuck NBD and migration connections so that nothing waits on them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;

use crate::process::Vm;
use crate::qmp::{QmpClient, QmpError};

/// Where the destination listens: a unix socket path, or a TCP host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Endpoint {
    /// The `SocketAddressLegacy` form `nbd-server-start` takes.
    fn legacy_address(&self) -> Value {
        match self {
            Endpoint::Unix(path) => json!({ "type": "unix", "data": { "path": path } }),
            Endpoint::Tcp { host, port } => {
                json!({ "type": "inet", "data": { "host": host, "port": port.to_string() } })
            }
        }
    }

    /// The flat `SocketAddress` form `blockdev-add` takes.
    fn qmp_address(&self) -> Value {
        match self {
            Endpoint::Unix(path) => json!({ "type": "unix", "path": path }),
            Endpoint::Tcp { host, port } => {
                json!({ "type": "inet", "host": host, "port": port.to_string() })
            }
        }
    }

    fn uri(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
            Endpoint::Tcp { host, port } => format!("tcp:{host}:{port}"),
        }
    }
}

/// The destination's endpoints: its NBD server (disks) and its migration stream (memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Where the destination serves its disk nodes over NBD.
    pub nbd: Endpoint,
    /// Where the destination takes the migration stream.
    pub migration: Endpoint,
}

/// How to migrate (`hypervisor.migration`).
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The longest pause of the guest at switch-over QEMU aims for.
    pub downtime_limit: Duration,
    /// Throttle the guest's vCPUs when memory does not converge.
    pub auto_converge: bool,
    /// Parallel channels for memory (`multifd`), set on both sides; `None`: one stream.
    pub multifd_channels: Option<u8>,
    /// Give up (and cancel) after this long.
    pub timeout: Duration,
    /// Give up (and cancel) when no disk or memory byte moved for this long.
    pub stall_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            downtime_limit: Duration::from_millis(300),
            auto_converge: true,
            multifd_channels: None,
            timeout: Duration::from_secs(600),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// What a completed migration measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// From the first mirror to the destination's resume.
    pub total: Duration,
    /// Until every disk mirror was in step with the guest.
    pub mirrored: Duration,
    /// The guest's pause at switch-over, as QEMU measured it (ms).
    pub downtime_ms: u64,
    /// Memory bytes sent.
    pub ram_bytes: u64,
    /// Disk bytes copied by the mirrors.
    pub disk_bytes: u64,
}

/// A migration that did not complete; the source keeps running.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// A QMP command failed.
    #[error("{step}: {source}")]
    Qmp {
        /// What was being done.
        step: &'static str,
        /// The QMP error.
        source: QmpError,
    },
    /// QEMU reported the migration or a mirror failed.
    #[error("{step} failed: {reason}; the source keeps running")]
    Failed {
        /// What failed.
        step: &'static str,
        /// QEMU's reason.
        reason: String,
    },
    /// It took longer than [`Options::timeout`].
    #[error("{step} did not finish within {timeout:?}; cancelled, the source keeps running")]
    Timeout {
        /// What was waited for.
        step: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// No byte moved for [`Options::stall_timeout`]: the destination or the network
    /// between them is gone.
    #[error(
        "{step} made no progress for {after:?}; cancelled, the source keeps running \
         (check the destination and the network to it)"
    )]
    Stalled {
        /// What made no progress.
        step: &'static str,
        /// The limit.
        after: Duration,
    },
}

/// A byte counter watched for progress.
struct Stall {
    step: &'static str,
    limit: Duration,
    last: u64,
    since: Instant,
}

impl Stall {
    fn new(step: &'static str, limit: Duration) -> Stall {
        Stall {
            step,
            limit,
            last: 0,
            since: Instant::now(),
        }
    }

    /// Records the counter's value now; an error once it stayed put for the limit.
    fn check(&mut self, counter: u64) -> Result<(), MigrateError> {
        if counter != self.last {
            self.last = counter;
            self.since = Instant::now();
        } else if self.since.elapsed() > self.limit {
            return Err(MigrateError::Stalled {
                step: self.step,
                after: self.limit,
            });
        }
        Ok(())
    }
}

fn qmp(step: &'static str) -> impl FnOnce(QmpError) -> MigrateError {
    move |source| MigrateError::Qmp { step, source }
}

fn capabilities(options: &Options) -> Value {
    let mut caps = vec![
        json!({ "capability": "events", "state": true }),
        json!({ "capability": "auto-converge", "state": options.auto_converge }),
    ];
    if options.multifd_channels.is_some() {
        caps.push(json!({ "capability": "multifd", "state": true }));
    }
    json!({ "capabilities": caps })
}

async fn set_multifd(q: &QmpClient, options: &Options) -> Result<(), MigrateError> {
    if let Some(n) = options.multifd_channels {
        q.call::<Value>(
            "migrate-set-parameters",
            Some(json!({ "multifd-channels": n })),
        )
        .await
        .map_err(qmp("migrate-set-parameters"))?;
    }
    Ok(())
}

/// Readies the destination (started with `-incoming defer -S` and the same disks) to take
/// the disk nodes `disks` over NBD and the migration stream at `incoming`.
pub async fn prepare_incoming(
    dst: &Vm,
    disks: &[String],
    incoming: &Incoming,
    options: &Options,
) -> Result<(), MigrateError> {
    let q = dst.qmp();
    q.call::<Value>(
        "nbd-server-start",
        Some(json!({ "addr": incoming.nbd.legacy_address() })),
    )
    .await
    .map_err(qmp("nbd-server-start"))?;
    for disk in disks {
        let args = json!({ "type": "nbd", "id": job(disk), "node-name": disk,
                           "name": disk, "writable": true });
        q.call::<Value>("block-export-add", Some(args))
            .await
            .map_err(qmp("block-export-add"))?;
    }
    q.call::<Value>("migrate-set-capabilities", Some(capabilities(options)))
        .await
        .map_err(qmp("migrate-set-capabilities"))?;
    set_multifd(q, options).await?;
    q.call::<Value>(
        "migrate-incoming",
        Some(json!({ "uri": incoming.migration.uri() })),
    )
    .await
    .map_err(qmp("migrate-incoming"))?;
    Ok(())
}

/// Stops the destination's NBD server and resumes its guest, once [`migrate`] returned.
pub async fn finish_incoming(dst: &Vm) -> Result<(), MigrateError> {
    let q = dst.qmp();
    q.call::<Value>("nbd-server-stop", None)
        .await
        .map_err(qmp("nbd-server-stop"))?;
    q.call::<Value>("cont", None).await.map_err(qmp("cont"))?;
    Ok(())
}

/// The prefix of the mirror jobs' and their NBD target nodes' names.
const JOB: &str = "migrate-";

/// The mirror job (and NBD target node) of disk node `disk`.
fn job(disk: &str) -> String {
    format!("{JOB}{disk}")
}

#[derive(Debug, Deserialize)]
struct Job {
    device: String,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    len: u64,
}

#[derive(Debug, Default, Deserialize)]
struct MigrationInfo {
    #[serde(default)]
    status: String,
    #[serde(default)]
    downtime: u64,
    #[serde(default)]
    ram: Option<RamInfo>,
    #[serde(rename = "error-desc", default)]
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RamInfo {
    #[serde(default)]
    transferred: u64,
    #[serde(default)]
    total: u64,
}

/// How far a migration from a VM got, as QEMU counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Disk bytes the mirrors copied.
    pub disk_done: u64,
    /// The mirrored disks' size.
    pub disk_total: u64,
    /// Memory bytes sent.
    pub ram_done: u64,
    /// The guest's memory size.
    pub ram_total: u64,
}

/// The [`Progress`] of the migration [`migrate`] runs from `src` (zeros for what has not
/// started, or when QEMU does not answer).
pub async fn progress(src: &Vm) -> Progress {
    let q = src.qmp();
    let jobs: Vec<Job> = q.call("query-block-jobs", None).await.unwrap_or_default();
    let info: MigrationInfo = q.call("query-migrate", None).await.unwrap_or_default();
    let ours = jobs.iter().filter(|j| j.device.starts_with(JOB));
    let ram = info.ram.unwrap_or_default();
    Progress {
        disk_done: ours.clone().map(|j| j.offset).sum(),
        disk_total: ours.map(|j| j.len).sum(),
        ram_done: ram.transferred,
        ram_total: ram.total,
    }
}

/// Migrates the running `src` into the destination prepared at `incoming`, mirroring
/// the disk nodes `disks`; `progress` is told each step.
pub async fn migrate(
    src: &Vm,
    disks: &[String],
    incoming: &Incoming,
    options: &Options,
    mut progress: impl FnMut(&str),
) -> Result<Report, MigrateError> {
    let started = Instant::now();
    let q = src.qmp();
    let result = run(q, disks, incoming, options, started, &mut progress).await;
    if result.is_err() {
        progress("cancelling");
        rollback(q, disks).await;
    }
    result
}

async fn run(
    q: &QmpClient,
    disks: &[String],
    incoming: &Incoming,
    options: &Options,
    started: Instant,
    progress: &mut impl FnMut(&str),
) -> Result<Report, MigrateError> {
    let deadline = started + options.timeout;
    for disk in disks {
        let target = job(disk);
        let node = json!({ "driver": "nbd", "node-name": target, "export": disk,
                           "server": incoming.nbd.qmp_address() });
        q.call::<Value>("blockdev-add", Some(node))
            .await
            .map_err(qmp("blockdev-add (NBD target)"))?;
        let mirror = json!({ "job-id": target, "device": disk, "target": target,
                             "sync": "full", "auto-dismiss": false });
        q.call::<Value>("blockdev-mirror", Some(mirror))
            .await
            .map_err(qmp("blockdev-mirror"))?;
    }
    progress("mirroring disks");
    let mut stall = Stall::new("disk mirror", options.stall_timeout);
    let disk_bytes = loop {
        let jobs: Vec<Job> = q
            .call("query-block-jobs", None)
            .await
            .map_err(qmp("query-block-jobs"))?;
        let ours: Vec<&Job> = jobs
            .iter()
            .filter(|j| disks.iter().any(|d| j.device == job(d)))
            .collect();
        if ours.len() < disks.len() {
            return Err(MigrateError::Failed {
                step: "disk mirror",
                reason: "a mirror job ended before it was ready".into(),
            });
        }
        let copied = ours.iter().map(|j| j.offset).sum();
        if ours.iter().all(|j| j.ready) {
            break copied;
        }
        stall.check(copied)?;
        if Instant::now() > deadline {
            return Err(MigrateError::Timeout {
                step: "disk mirror",
                timeout: options.timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mirrored = started.elapsed();
    progress("migrating memory");
    q.call::<Value>("migrate-set-capabilities", Some(capabilities(options)))
        .await
        .map_err(qmp("migrate-set-capabilities"))?;
    set_multifd(q, options).await?;
    let limit = u64::try_from(options.downtime_limit.as_millis()).unwrap_or(u64::MAX);
    q.call::<Value>(
        "migrate-set-parameters",
        Some(json!({ "downtime-limit": limit })),
    )
    .await
    .map_err(qmp("migrate-set-parameters"))?;
    q.call::<Value>("migrate", Some(json!({ "uri": incoming.migration.uri() })))
        .await
        .map_err(qmp("migrate"))?;
    let mut stall = Stall::new("memory migration", options.stall_timeout);
    let info = loop {
        let info: MigrationInfo = q
            .call("query-migrate", None)
            .await
            .map_err(qmp("query-migrate"))?;
        match info.status.as_str() {
            "completed" => break info,
            "failed" | "cancelled" => {
                return Err(MigrateError::Failed {
                    step: "memory migration",
                    reason: info.error.unwrap_or(info.status),
                });
            }
            _ if Instant::now() > deadline => {
                return Err(MigrateError::Timeout {
                    step: "memory migration",
                    timeout: options.timeout,
                });
            }
            _ => {
                stall.check(info.ram.as_ref().map_or(0, |r| r.transferred))?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The source is paused: cancelling a ready mirror flushes it, so each target now holds
    // the disk as the paused guest left it.
    progress("completing disk mirrors");
    for disk in disks {
        q.call::<Value>("block-job-cancel", Some(json!({ "device": job(disk) })))
            .await
            .map_err(qmp("block-job-cancel"))?;
    }
    wait_jobs_concluded(q, disks, deadline, options.timeout).await?;
    remove_jobs(q, disks).await;
    Ok(Report {
        total: started.elapsed(),
        mirrored,
        downtime_ms: info.downtime,
        ram_bytes: info.ram.map_or(0, |r| r.transferred),
        disk_bytes,
    })
}

/// Waits until the mirror jobs have concluded (flushed and stopped).
async fn wait_jobs_concluded(
    q: &QmpClient,
    disks: &[String],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), MigrateError> {
    loop {
        let jobs: Vec<Value> = q
            .call("query-jobs", None)
            .await
            .map_err(qmp("query-jobs"))?;
        let pending = jobs.iter().any(|j| {
            disks.iter().any(|d| j["id"] == job(d))
                && j["status"] != "concluded"
                && j["status"] != "null"
        });
        if !pending {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(MigrateError::Timeout {
                step: "completing the disk mirrors",
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Dismisses the concluded mirror jobs and deletes their NBD target nodes.
async fn remove_jobs(q: &QmpClient, disks: &[String]) {
    for disk in disks {
        let job = job(disk);
        let _ = q
            .call::<Value>("job-dismiss", Some(json!({ "id": job })))
            .await;
        let _ = q
            .call::<Value>("blockdev-del", Some(json!({ "node-name": job })))
            .await;
    }
}

/// Undoes whatever [`run`] started: the migration, the mirrors and their NBD nodes, and
/// resumes the source if the migration had paused it. Their connections are yanked first:
/// ending a migration drains every disk, mirror targets included, and on a cut network
/// their requests in flight would hold QEMU's main loop, and the guest, until TCP gives up.
async fn rollback(q: &QmpClient, disks: &[String]) {
    let nodes = disks
        .iter()
        .map(|d| json!({ "type": "block-node", "node-name": job(d) }));
    // The NBD nodes before the migration, whose end drains them; one instance per call:
    // `yank` fails whole on an instance that is not there.
    for instance in nodes.chain([json!({ "type": "migration" })]) {
        let _ = q
            .call::<Value>("yank", Some(json!({ "instances": [instance] })))
            .await;
    }
    let _ = q.call::<Value>("migrate_cancel", None).await;
    for disk in disks {
        let _ = q
            .call::<Value>(
                "block-job-cancel",
                Some(json!({ "device": job(disk), "force": true })),
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let _ = wait_jobs_concluded(q, disks, deadline, Duration::from_secs(10)).await;
    remove_jobs(q, disks).await;
    if let Ok(status) = q.query_status().await
        && !status.running
    {
        let _ = q.cont().await;
    }
}
