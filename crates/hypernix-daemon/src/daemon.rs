//! The daemon: the state store, the event bus, one task per unit, and `apply`, which
//! turns a configuration into desired state and commands.
//!
//! Apply, in steps:
//! 1. type, validate and resolve the new configuration (any error: nothing changes);
//! 2. resolve the configuration applied last (kept in the store) and plan between them;
//! 3. write the new configuration and every unit's desired state in one transaction;
//! 4. open the storage engine if tiers were configured (see [`crate::storage`]);
//! 5. send each unit's task what the plan says: create, destroy, restart or update live.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hypernix_compute::{Action, Plan, ResolvedUnit, plan};
use hypernix_config::Config;
use hypernix_config::schema::services::Bus;
use hypernix_events::{EmbeddedBus, Event, EventBus, NatsBus, NewEvent};
use hypernix_state::{Op, RedbStore, StateStore, Table};
use hypernix_vmm::{Accel, VmSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{OnceCell, watch};

use crate::build;
use crate::error::DaemonError;
use crate::layout::Layout;
use crate::mesh::{Mesh, MeshOptions};
use crate::model::{Desired, Observed, Power, UnitSpec, UnitStatus};
use crate::monitor::Monitor;
use crate::security::Guard;
use crate::storage::StorageEngine;
use crate::unit::{Command, UnitHandle};
use hypernix_vmm::TestGuest;

/// The meta key of the configuration applied last.
pub(crate) const CONFIG_KEY: &str = "config";

/// A request about one unit.
#[derive(Debug, Clone, Copy)]
pub enum UnitAction {
    /// Start it.
    Start,
    /// Stop it.
    Stop,
    /// Restart it.
    Restart,
    /// Pause it.
    Pause,
    /// Resume it.
    Resume,
}

/// The daemon's version, pid, state directory, API address and accelerator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// hypernix's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// The state directory.
    pub state_dir: String,
    /// The API address.
    pub listen: String,
    /// The accelerator VMs run with.
    pub accel: String,
    /// Why that accelerator.
    pub accel_reason: String,
}

/// What the unit tasks share.
pub struct Shared {
    /// The state directory.
    pub layout: Layout,
    pub(crate) store: Arc<RedbStore>,
    pub(crate) bus: Arc<dyn EventBus>,
    accel: Accel,
    test_guest: OnceCell<Result<TestGuest, String>>,
    pub(crate) units: Mutex<BTreeMap<String, UnitHandle>>,
    pub(crate) storage: StorageEngine,
}

impl Shared {
    /// Writes a unit's desired state.
    pub fn save_desired(&self, unit: &str, desired: &Desired) {
        self.put(Table::Desired, unit, desired);
    }

    /// Writes a unit's observed state.
    pub fn save_observed(&self, unit: &str, observed: &Observed) {
        self.put(Table::Observed, unit, observed);
    }

    fn put<T: Serialize>(&self, table: Table, key: &str, value: &T) {
        let op = match serde_json::to_value(value) {
            Ok(value) => Op::Put {
                table,
                key: key.to_string(),
                value,
            },
            Err(e) => return tracing::error!("{key}: cannot serialize state: {e}"),
        };
        if let Err(e) = self.store.transact(vec![op]) {
            tracing::error!("{key}: cannot write state: {e}");
        }
    }

    /// Publishes an event (logged if the store fails).
    pub async fn publish(&self, event: NewEvent) {
        if let Err(e) = self.bus.publish(event).await {
            tracing::error!("cannot publish an event: {e}");
        }
    }

    /// Drops a removed unit's handle and stored state.
    pub fn forget(&self, unit: &str) {
        self.units.lock().expect("units lock").remove(unit);
        let ops = [Table::Desired, Table::Observed]
            .map(|table| Op::Delete {
                table,
                key: unit.to_string(),
            })
            .to_vec();
        if let Err(e) = self.store.transact(ops) {
            tracing::error!("{unit}: cannot remove state: {e}");
        }
    }

    /// The QEMU spec of a unit on this host, building the test guest on first use.
    pub async fn vm_spec(
        &self,
        name: &str,
        spec: &crate::model::UnitSpec,
    ) -> Result<(VmSpec, Vec<String>), String> {
        let guest = if spec.settings.image.is_none() {
            let dir = self.layout.images().join("test-guest");
            Some(
                self.test_guest
                    .get_or_init(|| async move {
                        let built = tokio::task::spawn_blocking(move || {
                            hypernix_vmm::guest::ensure_test_guest(&dir)
                        })
                        .await;
                        match built {
                            Ok(Ok(g)) => Ok(g),
                            Ok(Err(e)) => Err(format!("the test guest could not be built: {e}")),
                            Err(e) => Err(format!("the test guest build failed: {e}")),
                        }
                    })
                    .await
                    .clone(),
            )
        } else {
            None
        };
        build::vm_spec(name, spec, &self.layout, &self.storage, self.accel, || {
            guest.unwrap_or_else(|| Err("no test guest".into()))
        })
    }
}

/// The running daemon.
pub struct Daemon {
    pub(crate) shared: Arc<Shared>,
    listen: SocketAddr,
    accel_reason: String,
    apply_lock: tokio::sync::Mutex<()>,
    pub(crate) guard: Guard,
    shutdown: watch::Sender<bool>,
    /// Numbers jobs (applies) within this daemon's life.
    jobs: std::sync::atomic::AtomicU64,
    pub(crate) monitor: Monitor,
    pub(crate) mesh: Option<Arc<Mesh>>,
}

impl Daemon {
    /// Opens the state directory, connects the event bus (`nats_url` forces NATS
    /// JetStream; otherwise `hypervisor.events` of the configuration applied last), probes
    /// the accelerator, opens the storage engine of that configuration and starts a task
    /// per stored unit; with `mesh`, joins the cluster instead, whose agent decides which
    /// units run here.
    pub async fn open(
        layout: Layout,
        listen: SocketAddr,
        accel: Option<Accel>,
        nats_url: Option<String>,
        mesh: Option<MeshOptions>,
    ) -> anyhow::Result<Arc<Daemon>> {
        std::fs::create_dir_all(layout.root())?;
        let store = Arc::new(RedbStore::open(layout.store())?);
        let applied = match store.get(Table::Meta, CONFIG_KEY)? {
            Some(Value::Object(raw)) => Config::from_raw(raw, vec![]).ok(),
            _ => None,
        };
        let events = applied
            .as_ref()
            .map(|c| c.hypervisor.events.clone())
            .unwrap_or_default();
        // A node joins before its guard opens, so that it signs with the cluster's keys.
        let mesh = match mesh {
            Some(options) => {
                let mesh = Mesh::start(&layout, options).await?;
                mesh.take_cluster_keys(&layout).await?;
                Some(mesh)
            }
            None => None,
        };
        let guard = Guard::open(
            &layout,
            store.clone(),
            &applied
                .as_ref()
                .map(|c| c.hypervisor.security.clone())
                .unwrap_or_default(),
        )?;
        let bus: Arc<dyn EventBus> = match (nats_url, events.bus) {
            (None, Bus::Embedded) => Arc::new(EmbeddedBus::new(store.clone())),
            (url, _) => {
                let url = url.unwrap_or(events.nats.url);
                let bus =
                    NatsBus::connect(&url, &events.nats.stream, events.nats.max_age.std()).await?;
                Arc::new(bus)
            }
        };
        let (accel, accel_reason) = match accel {
            Some(a) => (a, "forced by --accel".to_string()),
            None => {
                let probe = hypernix_vmm::accel::probe().await;
                (probe.accel, probe.reason)
            }
        };
        let shared = Arc::new(Shared {
            layout,
            store,
            bus,
            accel,
            test_guest: OnceCell::new(),
            units: Mutex::new(BTreeMap::new()),
            storage: StorageEngine::default(),
        });
        if let Some(config) = &applied {
            let s = &shared;
            s.storage
                .configure(&config.hypervisor.storage, &s.layout, &s.bus)
                .await;
        }
        let observed: BTreeMap<String, Value> =
            shared.store.list(Table::Observed)?.into_iter().collect();
        // In a cluster the agent takes over stored units once the leader confirms where
        // they are placed.
        let stored = match mesh {
            Some(_) => Vec::new(),
            None => shared.store.list(Table::Desired)?,
        };
        for (name, desired) in stored {
            let desired: Desired = serde_json::from_value(desired)?;
            let observed = observed
                .get(&name)
                .and_then(|o| serde_json::from_value(o.clone()).ok())
                .unwrap_or_else(Observed::pending);
            let handle = UnitHandle::spawn(shared.clone(), name.clone(), desired, observed);
            shared
                .units
                .lock()
                .expect("units lock")
                .insert(name, handle);
        }
        let (shutdown, _) = watch::channel(false);
        let monitor = Monitor::open(
            &shared.layout,
            applied
                .as_ref()
                .map(|c| c.hypervisor.monitoring.clone())
                .unwrap_or_default(),
        );
        let daemon = Arc::new(Daemon {
            shared,
            listen,
            accel_reason,
            apply_lock: tokio::sync::Mutex::new(()),
            guard,
            shutdown,
            jobs: std::sync::atomic::AtomicU64::new(0),
            monitor,
            mesh,
        });
        if let Some(mesh) = &daemon.mesh {
            crate::mesh::spawn(Arc::downgrade(&daemon), mesh.clone());
        }
        crate::backup::Scheduler::spawn(Arc::downgrade(&daemon));
        Monitor::spawn(Arc::downgrade(&daemon));
        Ok(daemon)
    }

    /// The authorizer and audit log every request passes.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Metrics, anomaly detection and alerts.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The state directory's layout.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    /// Resolves when the daemon has been asked to stop.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Version, pid and accelerator.
    pub fn health(&self) -> Health {
        Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            state_dir: self.shared.layout.root().display().to_string(),
            listen: self.listen.to_string(),
            accel: self.shared.accel.as_str().to_string(),
            accel_reason: self.accel_reason.clone(),
        }
    }

    pub(crate) fn resolve(
        raw: Map<String, Value>,
    ) -> Result<BTreeMap<String, ResolvedUnit>, DaemonError> {
        Self::resolve_config(raw).map(|(_, units)| units)
    }

    pub(crate) fn resolve_config(
        raw: Map<String, Value>,
    ) -> Result<(Config, BTreeMap<String, ResolvedUnit>), DaemonError> {
        let config = Config::from_raw(raw, vec![])
            .map_err(|e| DaemonError::Config(e.0.iter().map(ToString::to_string).collect()))?;
        if config.hypervisor.mesh.enable {
            // A node's cluster settings are its own; an applied configuration goes to every
            // node of the cluster, so it cannot carry them.
            return Err(DaemonError::Config(vec![
                "hypervisor.mesh.enable: a node joins a cluster when its daemon starts \
                 (`hypernix serve --node FILE --mesh-listen ADDR`, with the node's \
                 hypervisor.mesh in FILE); remove mesh.enable from the applied configuration"
                    .into(),
            ]));
        }
        let units = hypernix_compute::resolve_all(&config)
            .map_err(|e| DaemonError::Config(e.iter().map(ToString::to_string).collect()))?;
        Ok((config, units))
    }

    /// The storage engine (tiers, volumes, heat, placement).
    pub fn storage(&self) -> &StorageEngine {
        &self.shared.storage
    }

    /// Removes a volume for good, unless a unit of the applied configuration uses it.
    pub fn delete_volume(&self, volume: &str) -> Result<(), DaemonError> {
        for (unit, resolved) in self.applied()? {
            if let Some(d) = resolved
                .settings
                .storage
                .iter()
                .find(|d| crate::storage::volume_name(&unit, &d.name) == volume)
            {
                return Err(DaemonError::Unit {
                    unit,
                    message: format!(
                        "its disk {} is volume {volume}; remove the disk (or the unit) from                          the configuration first",
                        d.name
                    ),
                });
            }
        }
        self.shared
            .storage
            .remove_volume(volume)
            .map_err(DaemonError::Storage)
    }

    fn applied(&self) -> Result<BTreeMap<String, ResolvedUnit>, DaemonError> {
        match self
            .shared
            .store
            .get(Table::Meta, CONFIG_KEY)
            .map_err(store)?
        {
            Some(Value::Object(raw)) => Self::resolve(raw),
            _ => Ok(BTreeMap::new()),
        }
    }

    /// The configuration applied last, as written (without defaults).
    pub fn applied_raw(&self) -> Result<Map<String, Value>, DaemonError> {
        match self
            .shared
            .store
            .get(Table::Meta, CONFIG_KEY)
            .map_err(store)?
        {
            Some(Value::Object(raw)) => Ok(raw),
            _ => Ok(Map::new()),
        }
    }

    /// The configuration applied last, typed.
    pub fn applied_config(&self) -> Result<Config, DaemonError> {
        Config::from_raw(self.applied_raw()?, vec![])
            .map_err(|e| DaemonError::Config(e.0.iter().map(ToString::to_string).collect()))
    }

    /// The id of the newest event.
    pub async fn last_event_id(&self) -> Result<Option<u64>, DaemonError> {
        self.shared.bus.last_id().await.map_err(store)
    }

    /// Publishes an event on the daemon's bus (for subsystems that report through it).
    pub async fn publish(&self, event: NewEvent) -> Result<Event, DaemonError> {
        self.shared.bus.publish(event).await.map_err(store)
    }

    /// Every event after `after`, then every later one as it is published.
    pub fn subscribe(
        &self,
        after: Option<u64>,
    ) -> futures::stream::BoxStream<'static, Result<Arc<Event>, hypernix_events::BusError>> {
        self.shared.bus.subscribe(after)
    }

    /// The plan from the applied configuration to `raw`.
    pub fn plan(&self, raw: Map<String, Value>) -> Result<Plan, DaemonError> {
        let new = Self::resolve(raw)?;
        Ok(self.planned(&self.applied()?, &new).0)
    }

    /// The plan from `old` to `new` and the specs of `new`'s units: a unit whose
    /// composition changed from its running one's is marked to restart.
    fn planned(
        &self,
        old: &BTreeMap<String, ResolvedUnit>,
        new: &BTreeMap<String, ResolvedUnit>,
    ) -> (Plan, BTreeMap<String, UnitSpec>) {
        let mut plan = plan(old, new);
        let specs: BTreeMap<String, UnitSpec> = new
            .iter()
            .map(|(name, unit)| (name.clone(), build::unit_spec(unit)))
            .collect();
        let running = self
            .shared
            .units
            .lock()
            .expect("units lock")
            .iter()
            .map(|(name, h)| (name.clone(), h.desired().spec.composition))
            .collect();
        let wanted = specs
            .iter()
            .map(|(name, s)| (name.clone(), s.composition.clone()))
            .collect();
        crate::compose::plan_recomposed(&mut plan, &running, &wanted);
        (plan, specs)
    }

    /// Applies a configuration: every configured unit should run.
    pub async fn apply(&self, raw: Map<String, Value>) -> Result<Plan, DaemonError> {
        let _one_at_a_time = self.apply_lock.lock().await;
        let (config, new) = Self::resolve_config(raw.clone())?;
        self.guard
            .configure(&config.hypervisor.security)
            .map_err(|e| DaemonError::Config(vec![format!("security: {e}")]))?;
        let old = self.applied().unwrap_or_default();
        let (plan, specs) = self.planned(&old, &new);
        let actions: BTreeMap<&str, Action> = plan
            .units
            .iter()
            .map(|u| (u.unit.as_str(), u.action))
            .collect();

        if let Some(mesh) = &self.mesh {
            let restarts = actions
                .iter()
                .filter(|(_, a)| **a == Action::Restart)
                .map(|(u, _)| u.to_string())
                .collect();
            return self
                .apply_to_cluster(mesh, raw, plan, specs, restarts)
                .await;
        }
        let handles = self.shared.units.lock().expect("units lock").clone();
        let mut ops = vec![Op::Put {
            table: Table::Meta,
            key: CONFIG_KEY.into(),
            value: Value::Object(raw),
        }];
        let mut desired = BTreeMap::new();
        for (name, spec) in specs {
            let old = handles.get(&name).map(|h| h.desired());
            let restart = actions.get(name.as_str()) == Some(&Action::Restart);
            let generation = old.map(|o| o.generation).unwrap_or(0) + u64::from(restart);
            let d = Desired {
                spec,
                power: Power::Running,
                generation,
            };
            ops.push(Op::Put {
                table: Table::Desired,
                key: name.clone(),
                value: serde_json::to_value(&d).map_err(|e| store(e.to_string()))?,
            });
            desired.insert(name.clone(), d);
        }
        for name in handles.keys().filter(|n| !new.contains_key(*n)) {
            ops.push(Op::Delete {
                table: Table::Desired,
                key: name.clone(),
            });
        }
        self.shared.store.transact(ops).map_err(store)?;
        let s = &self.shared;
        s.storage
            .configure(&config.hypervisor.storage, &s.layout, &s.bus)
            .await;
        self.monitor.configure(&config.hypervisor.monitoring);
        for change in &plan.units {
            let payload = serde_json::to_value(change).unwrap_or_default();
            self.shared
                .publish(
                    NewEvent::new("unit.configured", format!("unit/{}", change.unit))
                        .with_payload(payload),
                )
                .await;
        }

        let job = self.next_job("apply");
        let total = handles.keys().filter(|n| !new.contains_key(*n)).count() + desired.len();
        self.job_event(&job, "job.started", 0, total).await;
        let mut tasks = Vec::new();
        for name in handles.keys().filter(|n| !new.contains_key(*n)) {
            let h = handles[name].clone();
            tasks.push(tokio::spawn(async move { h.send(Command::Remove).await }));
        }
        for (name, d) in desired {
            let restart = actions.get(name.as_str()) == Some(&Action::Restart);
            match handles.get(&name) {
                Some(h) => {
                    let h = h.clone();
                    tasks.push(tokio::spawn(async move {
                        h.send(Command::Update {
                            desired: Box::new(d),
                            restart,
                        })
                        .await
                    }));
                }
                None => {
                    let h = UnitHandle::spawn(
                        self.shared.clone(),
                        name.clone(),
                        d,
                        Observed::pending(),
                    );
                    self.shared
                        .units
                        .lock()
                        .expect("units lock")
                        .insert(name, h);
                }
            }
        }
        // Units change in parallel; failures are in each unit's state and events. A unit
        // created here starts on its own task, so it counts as done once handed over.
        let mut done = total - tasks.len();
        for t in tasks {
            let _ = t.await;
            done += 1;
            self.job_event(&job, "job.progress", done, total).await;
        }
        self.job_event(&job, "job.completed", done, total).await;
        Ok(plan)
    }

    pub(crate) fn next_job(&self, kind: &str) -> String {
        let n = self.jobs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        format!("{kind}-{}-{n}", chrono::Utc::now().timestamp_millis())
    }

    pub(crate) async fn job_event(&self, job: &str, kind: &str, done: usize, total: usize) {
        let payload = serde_json::json!({ "job": job, "done": done, "total": total });
        self.shared
            .publish(NewEvent::new(kind, format!("job/{job}")).with_payload(payload))
            .await;
    }

    pub(crate) fn handle(&self, name: &str) -> Result<UnitHandle, DaemonError> {
        let local = self
            .shared
            .units
            .lock()
            .expect("units lock")
            .get(name)
            .cloned();
        local.ok_or_else(
            || match self.mesh.as_ref().and_then(|m| m.elsewhere(name)) {
                Some(message) => DaemonError::Unit {
                    unit: name.to_string(),
                    message,
                },
                None => DaemonError::UnknownUnit(name.to_string()),
            },
        )
    }

    fn status(&self, name: &str, h: &UnitHandle) -> UnitStatus {
        let desired = h.desired();
        UnitStatus {
            name: name.to_string(),
            power: desired.power,
            observed: h.observed(),
            vcpus: desired.spec.vcpus,
            memory: desired.spec.memory,
            run_dir: self.shared.layout.unit_dir(name).display().to_string(),
            labels: desired.spec.labels.clone(),
            tags: desired.spec.settings.tags.clone(),
        }
    }

    /// Every unit's status.
    pub fn units(&self) -> Vec<UnitStatus> {
        let handles = self.shared.units.lock().expect("units lock").clone();
        handles.iter().map(|(n, h)| self.status(n, h)).collect()
    }

    /// One unit's status.
    pub fn unit(&self, name: &str) -> Result<UnitStatus, DaemonError> {
        Ok(self.status(name, &self.handle(name)?))
    }

    /// Starts, stops, restarts, pauses or resumes a unit.
    pub async fn act(&self, name: &str, action: UnitAction) -> Result<UnitStatus, DaemonError> {
        let h = self.handle(name)?;
        let cmd = match action {
            UnitAction::Start => Command::Start,
            UnitAction::Stop => Command::Stop,
            UnitAction::Restart => Command::Restart,
            UnitAction::Pause => Command::Pause,
            UnitAction::Resume => Command::Resume,
        };
        h.send(cmd).await.map_err(|message| DaemonError::Unit {
            unit: name.to_string(),
            message,
        })?;
        Ok(self.status(name, &h))
    }

    /// The last `tail` bytes of a unit's console log.
    pub fn console_log(&self, name: &str, tail: u64) -> Result<String, DaemonError> {
        self.handle(name)?;
        let path = hypernix_vmm::RunDir::new(self.shared.layout.unit_dir(name)).console_log();
        let bytes = std::fs::read(&path).unwrap_or_default();
        let start = bytes
            .len()
            .saturating_sub(usize::try_from(tail).unwrap_or(usize::MAX));
        Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
    }

    /// Events after `after`, at most `limit`.
    pub async fn events(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, DaemonError> {
        self.shared.bus.read(after, limit).await.map_err(store)
    }

    /// Stops the daemon; with `stop_units`, stops every unit first.
    pub async fn shutdown(&self, stop_units: bool) -> Result<(), DaemonError> {
        if stop_units {
            let handles = self.shared.units.lock().expect("units lock").clone();
            let tasks: Vec<_> = handles
                .into_values()
                .map(|h| tokio::spawn(async move { h.send(Command::Stop).await }))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
        }
        let _ = self.shutdown.send(true);
        Ok(())
    }
}

fn store(e: impl ToString) -> DaemonError {
    DaemonError::Store(e.to_string())
}
