//! The GraphQL object types: views of the daemon's model, kept apart from it so that the
//! daemon does not depend on GraphQL.

use async_graphql::{Enum, InputObject, Json, SimpleObject};
use chrono::{DateTime, Utc};
use hypernix_daemon::model::{self, UnitStatus};
use serde_json::Value;

/// The state of a compute unit.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UnitState {
    /// Known, not started yet.
    Pending,
    /// QEMU is starting.
    Starting,
    /// QEMU runs the guest.
    Running,
    /// The guest is paused.
    Paused,
    /// Shutting down.
    Stopping,
    /// Not running, as desired.
    Stopped,
    /// Could not run; see the reason.
    Failed,
}

impl From<model::UnitState> for UnitState {
    fn from(s: model::UnitState) -> Self {
        match s {
            model::UnitState::Pending => UnitState::Pending,
            model::UnitState::Starting => UnitState::Starting,
            model::UnitState::Running => UnitState::Running,
            model::UnitState::Paused => UnitState::Paused,
            model::UnitState::Stopping => UnitState::Stopping,
            model::UnitState::Stopped => UnitState::Stopped,
            model::UnitState::Failed => UnitState::Failed,
        }
    }
}

/// What to do with a compute unit.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UnitAction {
    /// Start it.
    Start,
    /// Stop it (ACPI power-off, then quit, then kill).
    Stop,
    /// Stop, then start.
    Restart,
    /// Pause its vCPUs.
    Pause,
    /// Resume its vCPUs.
    Resume,
}

/// A label as a key and a value.
#[derive(SimpleObject, InputObject, Clone, Debug)]
#[graphql(input_name = "LabelInput")]
pub struct Label {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// A compute unit: a virtual machine and its state.
#[derive(SimpleObject, Clone, Debug)]
pub struct ComputeUnit {
    /// Name.
    pub name: String,
    /// Observed state.
    pub state: UnitState,
    /// Whether the unit should run.
    pub desired_running: bool,
    /// vCPUs configured.
    pub vcpus: u32,
    /// Memory configured, in bytes.
    pub memory: u64,
    /// vCPUs the running VM has now.
    pub live_vcpus: u32,
    /// Memory the running guest has now, in bytes.
    pub live_memory: u64,
    /// QEMU's process id.
    pub pid: Option<u32>,
    /// Accelerator (`kvm` or `tcg`).
    pub accel: Option<String>,
    /// When QEMU last started.
    pub started_at: Option<DateTime<Utc>>,
    /// The guest printed its readiness line.
    pub ready: bool,
    /// Why the unit failed or last stopped.
    pub reason: Option<String>,
    /// Restarts by policy.
    pub restarts: u32,
    /// Labels.
    pub labels: Vec<Label>,
    /// Tags the unit lists.
    pub tags: Vec<String>,
    /// The run directory (QMP and console sockets, console log) on the daemon's host.
    pub run_dir: String,
    /// Host ports forwarded into the running guest (from its blueprint's components).
    pub ports: Vec<ForwardedPort>,
}

/// A host port forwarded to a guest port.
#[derive(SimpleObject, Clone, Debug)]
pub struct ForwardedPort {
    /// Port inside the guest.
    pub internal: u16,
    /// Port on the host.
    pub external: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

impl From<UnitStatus> for ComputeUnit {
    fn from(u: UnitStatus) -> Self {
        let o = u.observed;
        ComputeUnit {
            name: u.name,
            state: o.state.into(),
            desired_running: u.power == model::Power::Running,
            vcpus: u.vcpus,
            memory: u.memory,
            live_vcpus: o.live_vcpus,
            live_memory: o.live_memory,
            pid: o.pid,
            accel: o.accel,
            started_at: o.started_at,
            ready: o.ready,
            reason: o.reason,
            restarts: o.restarts,
            labels: u
                .labels
                .into_iter()
                .map(|(key, value)| Label { key, value })
                .collect(),
            tags: u.tags,
            run_dir: u.run_dir,
            ports: o
                .ports
                .into_iter()
                .map(|p| ForwardedPort {
                    internal: p.internal,
                    external: p.external,
                    protocol: p.protocol,
                })
                .collect(),
        }
    }
}

/// Which compute units to list; every condition given must hold.
#[derive(InputObject, Default, Debug)]
pub struct ComputeUnitFilter {
    /// Units with all these labels.
    pub labels: Option<Vec<Label>>,
    /// Units that list this tag.
    pub tag: Option<String>,
    /// Units in this state.
    pub state: Option<UnitState>,
}

impl ComputeUnitFilter {
    /// Whether `u` passes.
    pub fn matches(&self, u: &ComputeUnit) -> bool {
        let labels_ok = self.labels.iter().flatten().all(|want| {
            u.labels
                .iter()
                .any(|l| l.key == want.key && l.value == want.value)
        });
        labels_ok
            && self.tag.as_ref().is_none_or(|t| u.tags.contains(t))
            && self.state.is_none_or(|s| s == u.state)
    }
}

/// An event from the event log.
#[derive(SimpleObject, Clone, Debug)]
pub struct Event {
    /// Increasing id; subscribe after it to resume.
    pub id: u64,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// What happened, such as `unit.started`.
    pub kind: String,
    /// What it is about, such as `unit/web`.
    pub subject: String,
    /// Details.
    pub payload: Json<Value>,
    /// Ties events of one request together.
    pub correlation_id: Option<String>,
}

impl From<hypernix_events::Event> for Event {
    fn from(e: hypernix_events::Event) -> Self {
        Event {
            id: e.id,
            time: e.time,
            kind: e.kind,
            subject: e.subject,
            payload: Json(e.payload),
            correlation_id: e.correlation_id,
        }
    }
}

/// Which events to deliver.
#[derive(InputObject, Default, Debug, Clone)]
pub struct EventFilter {
    /// Only these kinds (`unit.started`, ...); a kind ending in `.*` matches a prefix.
    pub kinds: Option<Vec<String>>,
    /// Only this subject (`unit/web`).
    pub subject: Option<String>,
}

impl EventFilter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &hypernix_events::Event) -> bool {
        let kind_ok = self.kinds.as_ref().is_none_or(|kinds| {
            kinds.iter().any(|k| match k.strip_suffix('*') {
                Some(prefix) => e.kind.starts_with(prefix),
                None => *k == e.kind,
            })
        });
        kind_ok && self.subject.as_ref().is_none_or(|s| *s == e.subject)
    }
}

/// A change of a compute unit's state.
#[derive(SimpleObject, Clone, Debug)]
pub struct UnitStateChange {
    /// The event's id.
    pub event_id: u64,
    /// The unit.
    pub unit: String,
    /// Its new state.
    pub state: UnitState,
    /// The event kind that carried it.
    pub kind: String,
    /// When.
    pub time: DateTime<Utc>,
}

/// A tag.
#[derive(SimpleObject, Clone, Debug)]
pub struct Tag {
    /// Name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Priority; higher wins.
    pub priority: i64,
    /// Free text.
    pub description: Option<String>,
    /// The unit settings it contributes.
    pub values: Json<Value>,
}

/// A policy.
#[derive(SimpleObject, Clone, Debug)]
pub struct Policy {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Tags every unit under it gets.
    pub tags: Vec<String>,
    /// Policies it includes.
    pub policies: Vec<String>,
    /// The unit settings it contributes.
    pub defaults: Json<Value>,
}

/// One changed field of a plan.
#[derive(SimpleObject, Clone, Debug)]
pub struct FieldChange {
    /// Field path inside the unit.
    pub path: String,
    /// Old value.
    pub old: Json<Value>,
    /// New value.
    pub new: Json<Value>,
    /// Whether the running unit takes it without a restart.
    pub live: bool,
    /// Why.
    pub reason: String,
}

/// What a plan does to one unit.
#[derive(SimpleObject, Clone, Debug)]
pub struct UnitChange {
    /// The unit.
    pub unit: String,
    /// `create`, `destroy`, `apply-live` or `restart`.
    pub action: String,
    /// The fields that change.
    pub fields: Vec<FieldChange>,
}

/// The changes between two configurations.
#[derive(SimpleObject, Clone, Debug)]
pub struct Plan {
    /// Units that change.
    pub units: Vec<UnitChange>,
}

impl From<hypernix_compute::Plan> for Plan {
    fn from(p: hypernix_compute::Plan) -> Self {
        let action = |a| {
            serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        Plan {
            units: p
                .units
                .into_iter()
                .map(|u| UnitChange {
                    unit: u.unit,
                    action: action(u.action),
                    fields: u
                        .fields
                        .into_iter()
                        .map(|f| FieldChange {
                            path: f.path,
                            old: Json(f.old),
                            new: Json(f.new),
                            live: f.live,
                            reason: f.reason,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The daemon's version, pid and accelerator.
#[derive(SimpleObject, Clone, Debug)]
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

impl From<hypernix_daemon::Health> for Health {
    fn from(h: hypernix_daemon::Health) -> Self {
        Health {
            version: h.version,
            pid: h.pid,
            state_dir: h.state_dir,
            listen: h.listen,
            accel: h.accel,
            accel_reason: h.accel_reason,
        }
    }
}

/// The progress of a job (an apply).
#[derive(SimpleObject, Clone, Debug)]
pub struct JobProgress {
    /// The event's id.
    pub event_id: u64,
    /// The job, such as `apply-1764168000000-0`.
    pub job: String,
    /// `started`, `progress` or `completed`.
    pub phase: String,
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
    /// When.
    pub time: DateTime<Utc>,
}

impl JobProgress {
    /// The progress a `job.*` event reports, if it is one.
    pub fn from_event(e: &hypernix_events::Event) -> Option<JobProgress> {
        let phase = e.kind.strip_prefix("job.")?.to_string();
        Some(JobProgress {
            event_id: e.id,
            job: e.payload.get("job")?.as_str()?.to_string(),
            phase,
            done: e.payload.get("done")?.as_u64()?,
            total: e.payload.get("total")?.as_u64()?,
            time: e.time,
        })
    }
}

impl ComputeUnit {
    /// Whether the unit carries every label of a token's `scope`.
    pub fn within(&self, scope: &std::collections::BTreeMap<String, String>) -> bool {
        scope
            .iter()
            .all(|(k, v)| self.labels.iter().any(|l| &l.key == k && &l.value == v))
    }
}
