//! What the daemon keeps per unit: the desired state (from configuration and commands)
//! and the observed state (from the VM), both stored as JSON in the state store.

use chrono::{DateTime, Utc};
use hypernix_config::schema::compute::WorkloadKind;
use serde::{Deserialize, Serialize};

/// Whether a unit should be running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Power {
    /// Keep it running.
    Running,
    /// Keep it stopped.
    Stopped,
}

/// What the daemon does when a unit's VM exits without being asked to.
///
/// From the unit's `workload.type`: `persistent` → `Always` (a crash or a guest-initiated
/// power-off restarts it), `batch` → `OnFailure` (only a crash does; a power-off means
/// done), `ephemeral` and `interactive` → `Never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart after any unplanned exit.
    Always,
    /// Restart after a crash only.
    OnFailure,
    /// Never restart.
    Never,
}

impl From<WorkloadKind> for RestartPolicy {
    fn from(kind: WorkloadKind) -> Self {
        match kind {
            WorkloadKind::Persistent => RestartPolicy::Always,
            WorkloadKind::Batch => RestartPolicy::OnFailure,
            WorkloadKind::Ephemeral | WorkloadKind::Interactive => RestartPolicy::Never,
        }
    }
}

/// The state of a unit as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

impl std::fmt::Display for UnitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// Everything the daemon needs to run a unit, resolved from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitSpec {
    /// vCPUs at boot.
    pub vcpus: u32,
    /// vCPU hotplug maximum.
    pub max_vcpus: u32,
    /// CPU time the vCPUs may use together, in cores.
    pub cpu_quota: f64,
    /// Memory in bytes.
    pub memory: u64,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The resolved settings, for display and for building the VM.
    pub settings: hypernix_config::schema::compute::Unit,
    /// The unit's composed blueprint, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composition: Option<UnitComposition>,
}

/// A unit's blueprint, composed when the configuration was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitComposition {
    /// The blueprint.
    pub blueprint: String,
    /// Why the blueprint does not compose; the unit fails with it.
    pub error: Option<String>,
    /// The cloud-init seed, attached as a CD-ROM.
    pub seed: Option<hypernix_compose::Seed>,
    /// Ports the components listen on; each is forwarded from the host.
    pub ports: Vec<ComposedPort>,
    /// The components' persistent volumes, each a disk of the unit.
    #[serde(default)]
    pub disks: Vec<ComposedDisk>,
}

/// A component's persistent volume, attached as a disk the guest finds by serial number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposedDisk {
    /// The volume's name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// A guest port a component listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposedPort {
    /// Port inside the guest.
    pub internal: u16,
    /// Fixed host port; unset, the daemon picks a free one and keeps it.
    pub external: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ForwardedPort {
    /// Port inside the guest.
    pub internal: u16,
    /// Port on the host.
    pub external: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// The desired state of a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    /// What to run.
    pub spec: UnitSpec,
    /// Whether to run it.
    pub power: Power,
    /// Bumped whenever the spec changes in a way that needs a restart.
    pub generation: u64,
}

/// The observed state of a unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// State.
    pub state: UnitState,
    /// QEMU's process id, while it runs.
    pub pid: Option<u32>,
    /// The accelerator QEMU runs with (`kvm` or `tcg`).
    pub accel: Option<String>,
    /// When QEMU last started.
    pub started_at: Option<DateTime<Utc>>,
    /// The guest printed its readiness line.
    pub ready: bool,
    /// Why the unit failed or last stopped.
    pub reason: Option<String>,
    /// Restarts by policy since the unit was last started by a person.
    pub restarts: u32,
    /// The desired generation the running VM was built from.
    pub generation: u64,
    /// vCPUs the running VM has now (after hotplug).
    pub live_vcpus: u32,
    /// Memory in bytes the guest has now (after ballooning).
    pub live_memory: u64,
    /// Host ports forwarded into the guest by the running VM.
    #[serde(default)]
    pub ports: Vec<ForwardedPort>,
}

impl Observed {
    /// A unit not started yet.
    pub fn pending() -> Observed {
        Observed {
            state: UnitState::Pending,
            pid: None,
            accel: None,
            started_at: None,
            ready: false,
            reason: None,
            restarts: 0,
            generation: 0,
            live_vcpus: 0,
            live_memory: 0,
            ports: Vec::new(),
        }
    }
}

/// A unit as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatus {
    /// Name.
    pub name: String,
    /// Desired power state.
    pub power: Power,
    /// Observed state.
    #[serde(flatten)]
    pub observed: Observed,
    /// vCPUs configured.
    pub vcpus: u32,
    /// Memory configured, in bytes.
    pub memory: u64,
    /// The unit's run directory (QMP and console sockets, logs).
    pub run_dir: String,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Tags the unit lists itself.
    pub tags: Vec<String>,
}
