//! `composition.components`: reusable pieces of a guest (packages, files, ports, volumes,
//! hooks) with a typed interface of inputs and outputs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::schema::compute::Architecture;
use crate::values::Size;

/// `composition.components.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    /// Semantic version, such as `"1.0.0"`.
    #[serde(default = "default_version")]
    pub version: String,
    /// What the component is.
    #[serde(rename = "type")]
    pub kind: ComponentKind,
    /// What the component runs on, needs and clashes with.
    #[serde(default)]
    pub compatibility: Compatibility,
    /// What the component adds to a guest.
    #[serde(default)]
    pub configuration: ComponentConfiguration,
    /// Inputs, outputs and events.
    #[serde(default)]
    pub interface: Interface,
}

fn default_version() -> String {
    "1.0.0".into()
}

/// A kind of component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// The base system.
    Base,
    /// A language runtime.
    Runtime,
    /// An application framework.
    Framework,
    /// A network service.
    Service,
    /// Hardening.
    Security,
    /// Metrics and logs.
    Monitoring,
    /// Network setup.
    Network,
    /// Storage setup.
    Storage,
}

/// `components.NAME.compatibility`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Compatibility {
    /// Guest architectures the component works on.
    pub architectures: Vec<Architecture>,
    /// Components or features it needs.
    pub requires: Vec<String>,
    /// Components or features it cannot be combined with.
    pub conflicts: Vec<String>,
    /// Features it offers.
    pub provides: Vec<String>,
}

impl Default for Compatibility {
    fn default() -> Self {
        Compatibility {
            architectures: vec![Architecture::X86_64],
            requires: Vec::new(),
            conflicts: Vec::new(),
            provides: Vec::new(),
        }
    }
}

/// `components.NAME.configuration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComponentConfiguration {
    /// How the component changes the unit's resources.
    pub resources: ResourceAdjustments,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Ports the component listens on.
    pub ports: Vec<Port>,
    /// Volumes the component needs.
    pub volumes: Vec<Volume>,
    /// Files written into the guest, by absolute path.
    pub files: BTreeMap<String, File>,
    /// Packages added and removed.
    pub packages: Packages,
    /// Commands run at points of provisioning.
    pub hooks: Hooks,
}

/// `configuration.resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourceAdjustments {
    /// Compute-unit adjustment.
    pub cpu: CpuAdjustment,
    /// Memory adjustment.
    pub memory: MemoryAdjustment,
}

/// `resources.cpu`: the unit's compute units become `max(units * multiply + add, minimum)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CpuAdjustment {
    /// Compute units added.
    pub add: i64,
    /// Factor applied first.
    pub multiply: f64,
    /// Fewest compute units.
    pub minimum: u64,
}

impl Default for CpuAdjustment {
    fn default() -> Self {
        CpuAdjustment {
            add: 0,
            multiply: 1.0,
            minimum: 0,
        }
    }
}

/// `resources.memory`: the unit's memory becomes `max(size * multiply + add, minimum)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MemoryAdjustment {
    /// Memory added.
    pub add: Size,
    /// Factor applied first.
    pub multiply: f64,
    /// Least memory.
    pub minimum: Size,
}

impl Default for MemoryAdjustment {
    fn default() -> Self {
        MemoryAdjustment {
            add: Size(0),
            multiply: 1.0,
            minimum: Size(0),
        }
    }
}

/// `configuration.ports[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port inside the guest.
    pub internal: u16,
    /// Port on the host (none: not forwarded).
    #[serde(default)]
    pub external: Option<u16>,
    /// Transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// `configuration.volumes[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volume {
    /// Volume name.
    pub name: String,
    /// Mount point in the guest.
    pub path: String,
    /// Kind of volume.
    #[serde(rename = "type")]
    pub kind: VolumeKind,
    /// Volume size.
    #[serde(default)]
    pub size: Option<Size>,
}

/// A kind of volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeKind {
    /// Kept across restarts.
    Persistent,
    /// Emptied on restart.
    Ephemeral,
    /// Configuration, read-only in the guest.
    Config,
    /// Secrets, read-only in the guest.
    Secret,
}

/// `configuration.files.PATH`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    /// File content.
    pub content: String,
    /// Octal permissions, such as `"0644"`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Owning user.
    #[serde(default = "root")]
    pub owner: String,
    /// Owning group.
    #[serde(default = "root")]
    pub group: String,
}

fn default_mode() -> String {
    "0644".into()
}

fn root() -> String {
    "root".into()
}

/// `configuration.packages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Packages {
    /// Packages installed.
    pub install: Vec<String>,
    /// Packages removed.
    pub remove: Vec<String>,
}

/// `configuration.hooks`: shell commands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Hooks {
    /// Before packages are installed.
    pub pre_install: Option<String>,
    /// After packages are installed.
    pub post_install: Option<String>,
    /// After files are written.
    pub configure: Option<String>,
    /// Checks the result; failing fails provisioning.
    pub validate: Option<String>,
}

/// `components.NAME.interface`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Interface {
    /// Values the component takes.
    pub inputs: BTreeMap<String, Input>,
    /// Values the component gives.
    pub outputs: BTreeMap<String, Output>,
    /// Events the component emits.
    pub events: Vec<String>,
}

/// `interface.inputs.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Input {
    /// Value type, such as `"string"` or `"int"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A blueprint must give a value (unless there is a default).
    #[serde(default)]
    pub required: bool,
    /// Value when none is given.
    #[serde(default)]
    pub default: Option<Value>,
}

/// `interface.outputs.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Output {
    /// Value type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value, which may refer to the component's settings.
    pub value: String,
}

impl Component {
    pub(super) fn validate(&self, path: &AttrPath, problems: &mut Problems) {
        if !is_semver(&self.version) {
            problems.at(
                path.join("version"),
                format!(
                    "`{}` is not a version; use MAJOR.MINOR.PATCH, such as \"1.0.0\"",
                    self.version
                ),
            );
        }
        if self.compatibility.architectures.is_empty() {
            problems.at(
                path.join("compatibility").join("architectures"),
                "is empty, so the component runs nowhere; list at least one, such as \"x86_64\"",
            );
        }
        let config = path.join("configuration");
        let c = &self.configuration;
        let resources = config.join("resources");
        for (name, multiply) in [
            ("cpu", c.resources.cpu.multiply),
            ("memory", c.resources.memory.multiply),
        ] {
            if multiply < 0.0 {
                problems.at(
                    resources.join(name).join("multiply"),
                    format!("{multiply} is negative; use a factor of 0 or more"),
                );
            }
        }
        for name in c.environment.keys() {
            if !is_env_name(name) {
                problems.at(
                    config.join("environment").join(name),
                    "is not an environment variable name; use letters, digits and _, not \
                     starting with a digit",
                );
            }
        }
        let mut ports = BTreeSet::new();
        for (i, port) in c.ports.iter().enumerate() {
            let item = config.join("ports").join(index(i));
            if port.internal == 0 {
                problems.at(item.join("internal"), "is 0; use a port from 1 to 65535");
            } else if !ports.insert((port.internal, port.protocol)) {
                problems.at(
                    item.join("internal"),
                    format!(
                        "port {} is listed twice for this protocol; list it once",
                        port.internal
                    ),
                );
            }
            if port.external == Some(0) {
                problems.at(
                    item.join("external"),
                    "is 0; use a port from 1 to 65535, or leave it unset",
                );
            }
        }
        let mut volumes = BTreeSet::new();
        for (i, volume) in c.volumes.iter().enumerate() {
            let item = config.join("volumes").join(index(i));
            if !volumes.insert(volume.name.as_str()) {
                problems.at(
                    item.join("name"),
                    format!(
                        "another volume is already named `{}`; give each its own name",
                        volume.name
                    ),
                );
            }
            if !volume.path.starts_with('/') {
                problems.at(
                    item.join("path"),
                    format!("`{}` is not an absolute path; start it with /", volume.path),
                );
            }
            if volume.size.is_some_and(|s| s.bytes() == 0) {
                problems.at(
                    item.join("size"),
                    "must be larger than 0; use a size such as \"1Gi\"",
                );
            }
        }
        for (file_path, file) in &c.files {
            let item = config.join("files").join(file_path);
            if !file_path.starts_with('/') {
                problems.at(
                    &item,
                    "is not an absolute path; start the file's name with /",
                );
            }
            let octal = file.mode.len() >= 3
                && file.mode.len() <= 4
                && file.mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
            if !octal {
                problems.at(
                    item.join("mode"),
                    format!(
                        "`{}` is not an octal mode; use one such as \"0644\"",
                        file.mode
                    ),
                );
            }
            for (name, value) in [("owner", &file.owner), ("group", &file.group)] {
                if value.trim().is_empty() {
                    problems.at(
                        item.join(name),
                        "is empty; name a user or group, such as \"root\"",
                    );
                }
            }
        }
    }
}

/// True for `MAJOR.MINOR.PATCH`, optionally followed by `-pre` or `+build`.
fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// True for a POSIX environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
