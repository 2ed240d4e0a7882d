//! One task per unit owns its VM: it takes commands (start, stop, restart, pause, resume,
//! update), watches the QEMU process, and applies the restart policy.
//!
//! 1. The task starts from the stored desired and observed state. If observed says QEMU
//!    ran, it re-attaches to it through the run directory (a daemon restart never kills
//!    or duplicates a VM); if that QEMU is gone, the exit is handled like any other.
//! 2. Commands arrive one at a time and are answered when done.
//! 3. A watcher task per VM reports the process exit (within a second of it) and the
//!    guest's readiness line; an exit nobody asked for is handled by the restart policy.
//! 4. Every change of observed state is written to the store and published as an event.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hypernix_events::NewEvent;
use hypernix_vmm::{Exit, RunDir, ShutdownStep, Vm};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::daemon::Shared;
use crate::model::{Desired, Observed, Power, RestartPolicy, UnitState};

/// How long a guest gets to power off after an ACPI request before QEMU is stopped.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Restarts within this window count towards the crash-loop back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A QEMU that exits sooner than this after starting failed to start; no restart.
const START_GRACE_SECS: i64 = 3;
use hypernix_vmm::guest::READY_MARKER as READY_LINE;

/// A request to a unit's task.
#[derive(Debug)]
pub enum Command {
    /// Start the VM (a person asked; resets the restart count).
    Start,
    /// Stop the VM (ACPI, then quit, then kill).
    Stop,
    /// Stop, then start.
    Restart,
    /// Pause the vCPUs.
    Pause,
    /// Resume the vCPUs.
    Resume,
    /// New desired state; `restart` when the running VM cannot take it live.
    Update {
        /// The new desired state.
        desired: Box<Desired>,
        /// Whether a restart is needed.
        restart: bool,
    },
    /// Stop the VM and end the task (the unit left the configuration).
    Remove,
    /// Stop the VM within `grace` (ACPI, then quit, then kill) and end the task: the unit
    /// runs elsewhere now, or this node lost its quorum.
    Evict {
        /// How long the guest gets to power off.
        grace: Duration,
    },
    /// Hand out the running VM (for a backup through its QMP connection).
    Vm(oneshot::Sender<Option<Arc<Vm>>>),
    /// The VM took over a live-migrated guest, which was ready on its source.
    Migrated {
        /// Whether the guest had printed its readiness line on the source.
        ready: bool,
    },
}

type Reply = oneshot::Sender<Result<Observed, String>>;

/// The handle the daemon keeps for a unit's task.
#[derive(Debug, Clone)]
pub struct UnitHandle {
    tx: mpsc::Sender<(Command, Reply)>,
    status: watch::Receiver<Observed>,
    desired: watch::Receiver<Desired>,
}

impl UnitHandle {
    /// Starts the task for `name`.
    pub fn spawn(
        shared: Arc<Shared>,
        name: String,
        desired: Desired,
        observed: Observed,
    ) -> UnitHandle {
        Self::spawn_as(shared, name, desired, observed, false)
    }

    /// Starts the task for `name` with a QEMU waiting for a live migration (`-incoming
    /// defer -S`) instead of booting.
    pub fn spawn_incoming(shared: Arc<Shared>, name: String, desired: Desired) -> UnitHandle {
        Self::spawn_as(shared, name, desired, Observed::pending(), true)
    }

    fn spawn_as(
        shared: Arc<Shared>,
        name: String,
        desired: Desired,
        observed: Observed,
        incoming: bool,
    ) -> UnitHandle {
        let (tx, rx) = mpsc::channel(16);
        let (status_tx, status) = watch::channel(observed.clone());
        let (desired_tx, desired_rx) = watch::channel(desired.clone());
        let (vm_tx, vm_rx) = mpsc::channel(16);
        let task = UnitTask {
            run_dir: RunDir::new(shared.layout.unit_dir(&name)),
            shared,
            name,
            desired,
            observed,
            vm: None,
            instance: 0,
            stopping: false,
            restart_at: None,
            incoming,
            status_tx,
            desired_tx,
            vm_tx,
        };
        tokio::spawn(task.run(rx, vm_rx));
        UnitHandle {
            tx,
            status,
            desired: desired_rx,
        }
    }

    /// Sends a command and waits for it to be done.
    pub async fn send(&self, cmd: Command) -> Result<Observed, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((cmd, reply))
            .await
            .map_err(|_| "the unit's task has ended".to_string())?;
        rx.await
            .map_err(|_| "the unit's task has ended".to_string())?
    }

    /// The latest observed state.
    pub fn observed(&self) -> Observed {
        self.status.borrow().clone()
    }

    /// The latest desired state.
    pub fn desired(&self) -> Desired {
        self.desired.borrow().clone()
    }
}

/// What a VM's watcher reports.
enum VmEvent {
    Exited { instance: u64, exit: Exit },
    Ready { instance: u64 },
}

struct UnitTask {
    shared: Arc<Shared>,
    name: String,
    run_dir: RunDir,
    desired: Desired,
    observed: Observed,
    vm: Option<Arc<Vm>>,
    /// Counts VM instances, so that a stale watcher's report is ignored.
    instance: u64,
    /// An exit now is one we asked for.
    stopping: bool,
    restart_at: Option<Instant>,
    /// The next start waits for a live migration instead of booting.
    incoming: bool,
    status_tx: watch::Sender<Observed>,
    desired_tx: watch::Sender<Desired>,
    vm_tx: mpsc::Sender<VmEvent>,
}

impl UnitTask {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(Command, Reply)>,
        mut vm_rx: mpsc::Receiver<VmEvent>,
    ) {
        self.recover().await;
        loop {
            let restart_at = self.restart_at;
            tokio::select! {
                cmd = rx.recv() => {
                    let Some((cmd, reply)) = cmd else { break };
                    let remove = matches!(cmd, Command::Remove | Command::Evict { .. });
                    let result = self.handle(cmd).await.map(|()| self.observed.clone());
                    let _ = reply.send(result);
                    if remove {
                        break;
                    }
                }
                Some(ev) = vm_rx.recv() => self.on_vm_event(ev).await,
                _ = async { tokio::time::sleep_until(restart_at.unwrap_or_else(Instant::now)).await }, if restart_at.is_some() => {
                    self.restart_at = None;
                    if self.desired.power == Power::Running && self.vm.is_none() {
                        self.observed.restarts += 1;
                        self.start().await;
                    }
                }
            }
        }
    }

    /// Re-attaches to a VM that outlived the daemon, or starts one that should run.
    async fn recover(&mut self) {
        if self.observed.pid.is_some() {
            match Vm::attach(self.run_dir.path(), &self.name).await {
                Ok(vm) => {
                    let vm = Arc::new(vm);
                    self.observed.pid = Some(vm.pid());
                    self.watch(vm);
                    self.event("unit.reattached", json!({ "pid": self.observed.pid }))
                        .await;
                    self.publish_state();
                    if self.desired.power == Power::Stopped {
                        let _ = self.stop().await;
                    }
                    return;
                }
                Err(e) => {
                    // It ended while no daemon watched it: handle it as an unplanned exit.
                    self.observed.pid = None;
                    self.vm = None;
                    self.observed.reason =
                        Some(format!("QEMU ended while the daemon was down ({e})"));
                    self.event("unit.lost", json!({ "reason": self.observed.reason }))
                        .await;
                    if self.desired.power == Power::Running
                        && self.desired.spec.restart != RestartPolicy::Never
                    {
                        self.start().await;
                    } else {
                        self.set_state(UnitState::Stopped).await;
                    }
                    return;
                }
            }
        }
        match self.desired.power {
            Power::Running if self.observed.state != UnitState::Failed => self.start().await,
            Power::Stopped if self.observed.state != UnitState::Failed => {
                self.set_state(UnitState::Stopped).await
            }
            _ => {}
        }
    }

    async fn handle(&mut self, cmd: Command) -> Result<(), String> {
        match cmd {
            Command::Start => {
                self.set_power(Power::Running);
                self.observed.restarts = 0;
                if self.vm.is_none() {
                    self.start().await;
                }
                match self.observed.state {
                    UnitState::Failed => Err(self.observed.reason.clone().unwrap_or_default()),
                    _ => Ok(()),
                }
            }
            Command::Stop => {
                self.set_power(Power::Stopped);
                self.restart_at = None;
                self.stop().await
            }
            Command::Restart => {
                self.set_power(Power::Running);
                self.stop().await?;
                self.observed.restarts = 0;
                self.start().await;
                Ok(())
            }
            Command::Pause => {
                let vm = self.running_vm()?;
                vm.pause().await.map_err(|e| e.to_string())?;
                self.set_state(UnitState::Paused).await;
                Ok(())
            }
            Command::Resume => {
                let vm = self.running_vm()?;
                vm.resume().await.map_err(|e| e.to_string())?;
                self.set_state(UnitState::Running).await;
                Ok(())
            }
            Command::Update { desired, restart } => {
                let power = desired.power;
                self.desired = *desired;
                let _ = self.desired_tx.send(self.desired.clone());
                if self.observed.state == UnitState::Failed {
                    // A new configuration is a new chance.
                    self.observed.reason = None;
                    self.set_state(UnitState::Pending).await;
                }
                if self.vm.is_some() && restart {
                    self.stop().await?;
                } else if self.vm.is_some() {
                    self.apply_live().await?;
                }
                if power == Power::Running && self.vm.is_none() {
                    self.start().await;
                }
                Ok(())
            }
            Command::Remove => {
                self.set_power(Power::Stopped);
                self.stop().await?;
                self.shared.forget(&self.name);
                Ok(())
            }
            Command::Evict { grace } => {
                self.set_power(Power::Stopped);
                self.restart_at = None;
                let stopped = self.stop_within(grace).await;
                self.shared.forget(&self.name);
                stopped
            }
            Command::Vm(tx) => {
                let _ = tx.send(self.vm.clone());
                Ok(())
            }
            Command::Migrated { ready } => {
                self.observed.ready = ready;
                self.event("unit.migrated", json!({ "ready": ready })).await;
                self.publish_state();
                Ok(())
            }
        }
    }

    fn running_vm(&self) -> Result<Arc<Vm>, String> {
        self.vm
            .clone()
            .ok_or_else(|| format!("it is {}; start it first", self.observed.state))
    }

    fn set_power(&mut self, power: Power) {
        if self.desired.power != power {
            self.desired.power = power;
            let _ = self.desired_tx.send(self.desired.clone());
            self.shared.save_desired(&self.name, &self.desired);
        }
    }

    /// Starts QEMU; a failure makes the unit Failed with the reason.
    async fn start(&mut self) {
        self.set_state(UnitState::Starting).await;
        let mut spec = match self.shared.vm_spec(&self.name, &self.desired.spec).await {
            Ok((spec, warnings)) => {
                for w in warnings {
                    self.event("unit.warning", json!({ "message": w })).await;
                }
                spec
            }
            Err(reason) => return self.fail(reason).await,
        };
        if std::mem::take(&mut self.incoming) {
            spec.extra_args
                .extend(["-incoming", "defer", "-S"].map(String::from));
        }
        match Vm::spawn(&spec, self.run_dir.path()).await {
            Ok(vm) => {
                let vm = Arc::new(vm);
                self.observed.pid = Some(vm.pid());
                self.observed.accel = Some(spec.accel.as_str().to_string());
                self.observed.started_at = Some(Utc::now());
                self.observed.ready = false;
                self.observed.reason = None;
                self.observed.generation = self.desired.generation;
                self.observed.live_vcpus = spec.vcpus;
                self.observed.live_memory = spec.memory_bytes;
                self.observed.ports = spec
                    .nics
                    .iter()
                    .flat_map(|n| crate::compose::shown(&n.forwards))
                    .collect();
                self.stopping = false;
                if let Err(e) = crate::cgroup::limit(
                    &self.name,
                    vm.pid(),
                    self.desired.spec.cpu_quota,
                    spec.vcpus,
                ) {
                    self.event("unit.warning", json!({ "message": e })).await;
                }
                self.watch(vm);
                self.set_state(UnitState::Running).await;
                self.event(
                    "unit.started",
                    json!({ "pid": self.observed.pid, "accel": self.observed.accel }),
                )
                .await;
            }
            Err(e) => self.fail(e.to_string()).await,
        }
    }

    /// Stops QEMU if it runs: ACPI power-off, then quit, then kill.
    async fn stop(&mut self) -> Result<(), String> {
        self.stop_within(SHUTDOWN_TIMEOUT).await
    }

    /// Stops the VM, giving the guest `grace` to power off before QEMU quits or is killed.
    async fn stop_within(&mut self, grace: Duration) -> Result<(), String> {
        let Some(vm) = self.vm.take() else {
            if self.observed.state != UnitState::Failed {
                self.set_state(UnitState::Stopped).await;
            }
            return Ok(());
        };
        self.stopping = true;
        self.set_state(UnitState::Stopping).await;
        let result = vm.shutdown(grace).await;
        self.instance += 1; // The watcher's exit report for this VM is now stale.
        self.observed.pid = None;
        self.observed.ready = false;
        self.set_state(UnitState::Stopped).await;
        let how = match &result {
            Ok((ShutdownStep::Powerdown, _)) => "acpi",
            Ok((ShutdownStep::Quit, _)) => "quit",
            Ok((ShutdownStep::Killed, _)) => "killed",
            Ok((ShutdownStep::AlreadyExited, _)) => "already-exited",
            Err(_) => "error",
        };
        self.event("unit.stopped", json!({ "reason": "requested", "how": how }))
            .await;
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Applies a desired state the running VM can take without a restart.
    async fn apply_live(&mut self) -> Result<(), String> {
        let vm = self.running_vm()?;
        let spec = &self.desired.spec;
        if spec.memory != self.observed.live_memory {
            vm.balloon(spec.memory).await.map_err(|e| e.to_string())?;
            self.observed.live_memory = spec.memory;
            self.event("unit.ballooned", json!({ "memory": spec.memory }))
                .await;
        }
        if spec.vcpus != self.observed.live_vcpus {
            vm.set_vcpus(spec.vcpus as usize)
                .await
                .map_err(|e| e.to_string())?;
            self.observed.live_vcpus = spec.vcpus;
            self.event("unit.vcpus", json!({ "vcpus": spec.vcpus }))
                .await;
        }
        if let Some(pid) = self.observed.pid
            && let Err(e) = crate::cgroup::limit(&self.name, pid, spec.cpu_quota, spec.vcpus)
        {
            self.event("unit.warning", json!({ "message": e })).await;
        }
        self.event("unit.applied-live", json!({})).await;
        self.publish_state();
        Ok(())
    }

    /// Watches a VM: its exit, and its readiness line on the console.
    fn watch(&mut self, vm: Arc<Vm>) {
        self.instance += 1;
        let instance = self.instance;
        let tx = self.vm_tx.clone();
        let watched = vm.clone();
        tokio::spawn(async move {
            let exit = watched.wait_exit().await;
            let _ = tx.send(VmEvent::Exited { instance, exit }).await;
        });
        if !self.observed.ready {
            let tx = self.vm_tx.clone();
            let log = self.run_dir.console_log();
            tokio::spawn(async move {
                loop {
                    if tx.is_closed() {
                        return;
                    }
                    if let Ok(text) = tokio::fs::read(&log).await
                        && text
                            .windows(READY_LINE.len())
                            .any(|w| w == READY_LINE.as_bytes())
                    {
                        let _ = tx.send(VmEvent::Ready { instance }).await;
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        self.vm = Some(vm);
    }

    async fn on_vm_event(&mut self, ev: VmEvent) {
        match ev {
            VmEvent::Ready { instance } if instance == self.instance && self.vm.is_some() => {
                self.observed.ready = true;
                self.event("unit.ready", json!({})).await;
                self.publish_state();
            }
            VmEvent::Exited { instance, exit } if instance == self.instance && !self.stopping => {
                self.vm = None;
                self.observed.pid = None;
                self.observed.ready = false;
                let crashed = !exit.guest_shutdown();
                let lived = self.observed.started_at.map(|t| Utc::now() - t);
                if crashed && lived.is_some_and(|l| l < chrono::Duration::seconds(START_GRACE_SECS))
                {
                    // QEMU rejected its configuration: restarting would only repeat that.
                    let qemu_said = qemu_log_tail(&self.run_dir);
                    return self
                        .fail(format!("QEMU exited at start ({exit}): {qemu_said}"))
                        .await;
                }
                let reason = exit.to_string();
                self.observed.reason = Some(reason.clone());
                self.event(
                    if crashed {
                        "unit.crashed"
                    } else {
                        "unit.poweroff"
                    },
                    json!({ "exit": reason }),
                )
                .await;
                let restart = self.desired.power == Power::Running
                    && match self.desired.spec.restart {
                        RestartPolicy::Always => true,
                        RestartPolicy::OnFailure => crashed,
                        RestartPolicy::Never => false,
                    };
                if restart {
                    // Immediately the first time; doubling up to 30 s while it keeps crashing.
                    let delay = Duration::from_millis(250)
                        .saturating_mul(1 << self.observed.restarts.min(7))
                        .min(BACKOFF_MAX);
                    let delay = if self.observed.restarts == 0 {
                        Duration::ZERO
                    } else {
                        delay
                    };
                    self.restart_at = Some(Instant::now() + delay);
                    self.set_state(UnitState::Starting).await;
                } else {
                    if !crashed {
                        self.set_power(Power::Stopped);
                    }
                    self.set_state(if crashed {
                        UnitState::Failed
                    } else {
                        UnitState::Stopped
                    })
                    .await;
                }
            }
            _ => {}
        }
    }

    async fn fail(&mut self, reason: String) {
        self.vm = None;
        self.observed.pid = None;
        self.observed.reason = Some(reason.clone());
        self.set_state(UnitState::Failed).await;
        self.event("unit.failed", json!({ "reason": reason })).await;
    }

    /// Records a new state; a change is also an event (`unit.state`).
    async fn set_state(&mut self, state: UnitState) {
        let changed = self.observed.state != state;
        self.observed.state = state;
        self.publish_state();
        if changed {
            self.event("unit.state", json!({})).await;
        }
    }

    fn publish_state(&mut self) {
        let _ = self.status_tx.send(self.observed.clone());
        self.shared.save_observed(&self.name, &self.observed);
    }

    async fn event(&self, kind: &str, mut payload: serde_json::Value) {
        payload["state"] = json!(self.observed.state);
        self.shared
            .publish(NewEvent {
                kind: kind.to_string(),
                subject: format!("unit/{}", self.name),
                payload,
                correlation_id: None,
            })
            .await;
    }
}

/// The last lines QEMU printed, for a failure reason.
fn qemu_log_tail(run_dir: &RunDir) -> String {
    let text = std::fs::read_to_string(run_dir.qemu_log()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
    if tail.is_empty() {
        "it printed nothing".into()
    } else {
        tail
    }
}
