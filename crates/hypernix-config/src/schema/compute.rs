//! `hypervisor.compute`: tags, policies, compute units and their defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::values::{Duration, Size};

/// `hypervisor.compute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Compute {
    /// Named tags that units and policies refer to.
    pub tags: BTreeMap<String, Tag>,
    /// Named policies that units refer to.
    pub policies: BTreeMap<String, Policy>,
    /// The compute units (virtual machines).
    pub units: BTreeMap<String, Unit>,
    /// Settings that apply before any policy or tag.
    pub defaults: ComputeDefaults,
}

/// `compute.tags.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tag {
    /// What the tag is about.
    pub category: TagCategory,
    /// Unit settings the tag contributes.
    #[serde(default)]
    pub values: Unit,
    /// Higher priority tags are applied later and win.
    #[serde(default = "default_priority")]
    pub priority: i64,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

fn default_priority() -> i64 {
    50
}

/// The category of a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagCategory {
    /// Performance settings.
    Performance,
    /// Security settings.
    Security,
    /// Network settings.
    Network,
    /// Storage settings.
    Storage,
    /// Lifecycle settings.
    Lifecycle,
    /// Compliance settings.
    Compliance,
    /// Workload settings.
    Workload,
}

/// `compute.policies.NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// Free text.
    pub description: Option<String>,
    /// Tags every unit under this policy gets.
    pub tags: Vec<String>,
    /// Unit settings the policy contributes.
    pub defaults: Unit,
    /// Bounds every resolved unit under this policy must satisfy, shaped like unit
    /// settings with `{ min; max; oneOf; }` at the leaves.
    pub constraints: Map<String, Value>,
    /// Policies included before this one.
    pub policies: Vec<String>,
}

/// `compute.units.NAME`, and the settings a tag or a policy contributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Unit {
    /// Tags, applied by priority.
    pub tags: Vec<String>,
    /// Policies, applied in list order.
    pub policies: Vec<String>,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// A fixed SMBIOS UUID.
    pub uuid: Option<String>,
    /// The blueprint the unit is composed from.
    pub blueprint: Option<String>,
    /// The boot disk image (a raw or qcow2 file); unset boots the built-in test guest.
    pub image: Option<String>,
    /// CPU, memory and accelerators.
    pub resources: Resources,
    /// What kind of work the unit does.
    pub workload: Workload,
    /// Disks.
    pub storage: Vec<StorageRequest>,
    /// Network interfaces.
    pub network: Vec<NetworkRequest>,
    /// Where the unit may run.
    pub placement: Placement,
    /// Hooks and health checks.
    pub lifecycle: Lifecycle,
    /// Isolation and persistence.
    pub features: Features,
}

/// `resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Resources {
    /// Abstract compute units.
    pub compute: ComputeResources,
    /// Memory.
    pub memory: Memory,
    /// Passed-through accelerators.
    pub accelerators: Vec<Accelerator>,
}

/// `resources.compute`: 100 units are one vCPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComputeResources {
    /// Guaranteed compute units.
    pub units: u32,
    /// Compute units the unit may burst to (the vCPU hotplug maximum).
    pub burst: Option<u32>,
    /// Guest architecture.
    pub architecture: Architecture,
    /// CPU feature flags.
    pub features: Vec<String>,
}

impl Default for ComputeResources {
    fn default() -> Self {
        ComputeResources {
            units: 100,
            burst: None,
            architecture: Architecture::X86_64,
            features: Vec::new(),
        }
    }
}

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// 64-bit x86.
    #[serde(rename = "x86_64")]
    X86_64,
    /// 64-bit Arm.
    #[serde(rename = "aarch64")]
    Aarch64,
}

/// `resources.memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Memory {
    /// Memory size.
    pub size: Size,
    /// Huge page size, such as `"2Mi"` or `"1Gi"`.
    pub hugepages: Option<String>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            size: Size(1 << 30),
            hugepages: None,
        }
    }
}

/// `resources.accelerators[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Accelerator {
    /// Kind of device.
    #[serde(rename = "type")]
    pub kind: AcceleratorKind,
    /// Device model.
    #[serde(default)]
    pub model: Option<String>,
    /// How many.
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// A kind of accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcceleratorKind {
    /// Graphics processor.
    Gpu,
    /// Field-programmable gate array.
    Fpga,
    /// Tensor processor.
    Tpu,
    /// Data processing unit.
    Dpu,
}

/// `workload`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Workload {
    /// Workload type.
    #[serde(rename = "type")]
    pub kind: WorkloadKind,
    /// Workload profile.
    pub profile: Option<WorkloadProfile>,
    /// Service-level objectives.
    pub sla: Sla,
}

/// A workload type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Long-running, kept across restarts.
    #[default]
    Persistent,
    /// Disposable.
    Ephemeral,
    /// Runs to completion.
    Batch,
    /// Driven by a person.
    Interactive,
}

/// A workload profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadProfile {
    /// CPU-bound.
    CpuIntensive,
    /// Memory-bound.
    MemoryIntensive,
    /// I/O-bound.
    IoIntensive,
    /// GPU compute.
    GpuCompute,
    /// Latency-critical.
    Realtime,
}

/// `workload.sla`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Sla {
    /// Target availability, between 0 and 1.
    pub availability: Option<f64>,
    /// Target latency, such as `"< 10ms"`.
    pub latency: Option<String>,
    /// Target IOPS.
    pub iops: Option<u64>,
}

/// `storage[]`: one disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageRequest {
    /// Disk name.
    pub name: String,
    /// Storage capability asked for, such as `"fast"`.
    pub capability: String,
    /// Disk size.
    pub size: Size,
    /// Preferred tier level.
    #[serde(default)]
    pub tier: Option<u32>,
    /// Performance targets.
    #[serde(default)]
    pub performance: DiskPerformance,
}

/// `storage[].performance`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiskPerformance {
    /// Target IOPS.
    pub iops: Option<u64>,
    /// Target throughput, such as `"500MB/s"`.
    pub throughput: Option<String>,
}

/// `network[]`: one interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkRequest {
    /// Interface name.
    pub name: String,
    /// Network capability asked for, such as `"nat"`.
    pub capability: String,
    /// Bandwidth, such as `"1Gbps"`.
    #[serde(default)]
    pub bandwidth: Option<String>,
}

/// `placement`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Placement {
    /// Affinity and anti-affinity rules.
    pub affinity: Vec<Affinity>,
    /// Spread over a topology.
    pub spread: Option<Spread>,
}

/// `placement.affinity[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affinity {
    /// Rule kind.
    #[serde(rename = "type")]
    pub kind: AffinityKind,
    /// Topology scope.
    pub scope: TopologyScope,
    /// Labels of the units this rule is about.
    #[serde(default)]
    pub label_selector: BTreeMap<String, String>,
    /// Weight of a preferred rule.
    #[serde(default = "hundred")]
    pub weight: u32,
}

fn hundred() -> u32 {
    100
}

/// An affinity rule kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AffinityKind {
    /// Must be together.
    Required,
    /// Should be together.
    Preferred,
    /// Must be apart.
    Anti,
}

/// A topology scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TopologyScope {
    /// One host.
    Host,
    /// One rack.
    Rack,
    /// One zone.
    Zone,
    /// One region.
    Region,
}

/// `placement.spread`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spread {
    /// Topology key, such as `"zone"`.
    pub topology: String,
    /// Most units per topology domain.
    #[serde(default = "one")]
    pub maximum: u32,
}

/// `lifecycle`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Lifecycle {
    /// Command run before start.
    pub pre_start: Option<String>,
    /// Command run after start.
    pub post_start: Option<String>,
    /// Command run before stop.
    pub pre_stop: Option<String>,
    /// Command run after stop.
    pub post_stop: Option<String>,
    /// Health check.
    pub health_check: Option<HealthCheck>,
}

/// `lifecycle.healthCheck`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Check kind.
    #[serde(rename = "type")]
    pub kind: HealthCheckKind,
    /// Check-specific settings.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// Time between checks.
    #[serde(default = "thirty_seconds")]
    pub interval: Duration,
    /// Time a check may take.
    #[serde(default = "five_seconds")]
    pub timeout: Duration,
}

fn thirty_seconds() -> Duration {
    Duration::secs(30)
}

fn five_seconds() -> Duration {
    Duration::secs(5)
}

/// A health check kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthCheckKind {
    /// An HTTP GET.
    Http,
    /// A TCP connect.
    Tcp,
    /// A script.
    Script,
}

/// `features`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Features {
    /// Isolation.
    pub isolation: Isolation,
    /// Persistence and migration.
    pub persistence: Persistence,
}

/// `features.isolation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Isolation {
    /// Security level.
    pub security_level: SecurityLevel,
}

/// An isolation level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityLevel {
    /// Ordinary.
    #[default]
    Standard,
    /// Sandboxed QEMU, no user config.
    Hardened,
    /// Memory-encrypted guests.
    Confidential,
}

/// `features.persistence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Persistence {
    /// State survives restarts.
    pub stateful: bool,
    /// Checkpoints are kept.
    pub checkpoints: bool,
    /// How the unit may move between nodes.
    pub migration: MigrationMode,
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence {
            stateful: true,
            checkpoints: false,
            migration: MigrationMode::Cold,
        }
    }
}

/// A migration mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationMode {
    /// Never moved.
    None,
    /// Moved while stopped.
    #[default]
    Cold,
    /// Moved while running.
    Live,
}

/// `compute.defaults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComputeDefaults {
    /// Scales every unit's compute units.
    pub resource_multiplier: f64,
    /// Tags every unit gets.
    pub default_tags: Vec<String>,
    /// Scheduling settings.
    pub scheduling: Scheduling,
}

impl Default for ComputeDefaults {
    fn default() -> Self {
        ComputeDefaults {
            resource_multiplier: 1.0,
            default_tags: Vec::new(),
            scheduling: Scheduling::default(),
        }
    }
}

/// `compute.defaults.scheduling`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Scheduling {
    /// Placement algorithm.
    pub algorithm: SchedulingAlgorithm,
    /// Lower-priority units may be stopped to make room.
    pub preemption: bool,
}

/// A placement algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchedulingAlgorithm {
    /// Fill hosts one by one.
    #[default]
    Binpack,
    /// Even out hosts.
    Spread,
    /// Any host.
    Random,
}
