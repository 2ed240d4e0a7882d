//! Merging members, in dependency order, into one guest configuration.
//!
//! Rules (a clash names both components):
//! - resources: each member in turn maps the value `v` to `max(v * multiply + add, minimum)`
//!   (multiply, then add, then minimum); memory is then rounded up to whole MiB;
//! - ports: one external port, or one internal port and protocol, used twice is a clash;
//! - files: one path with different content, mode, owner or group is a clash; the same
//!   file twice is kept once;
//! - packages: installs and removes are unions; a package one installs and another
//!   removes is a clash;
//! - environment: one key with different values is a clash;
//! - volumes: one name with a different path, type or size, or one path under two
//!   names, is a clash;
//! - hooks: by phase (preInstall, postInstall, configure, validate), each phase in
//!   dependency order.

use std::collections::BTreeMap;

use hypernix_config::schema::composition::{Protocol, ResourceAdjustments, Volume, VolumeKind};
use serde::Serialize;

use crate::contract::{Values, interpolate};
use crate::error::ComposeError;
use crate::resolve::Member;

/// A composed blueprint: everything its members add to a guest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Composed {
    /// The blueprint.
    pub blueprint: String,
    /// Members in dependency order.
    pub members: Vec<ComposedMember>,
    /// `(dependent, dependency)` alias pairs.
    pub edges: Vec<(String, String)>,
    /// Blueprint parameters' values.
    pub parameters: Values,
    /// Output values by `alias.output`.
    pub outputs: BTreeMap<String, String>,
    /// Resource adjustments in the order they apply.
    pub resources: Vec<Adjustment>,
    /// Environment variables.
    pub environment: BTreeMap<String, Sourced<String>>,
    /// Ports the guest listens on.
    pub ports: Vec<ComposedPort>,
    /// Files by absolute path.
    pub files: BTreeMap<String, ComposedFile>,
    /// Packages installed, with the component wanting each.
    pub install: BTreeMap<String, String>,
    /// Packages removed, with the component wanting each.
    pub remove: BTreeMap<String, String>,
    /// Volumes.
    pub volumes: Vec<ComposedVolume>,
    /// Hooks in the order they run.
    pub hooks: Vec<ComposedHook>,
}

/// A member of a composition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComposedMember {
    /// The name connections use.
    pub alias: String,
    /// The library component.
    pub component: String,
    /// Its version.
    pub version: String,
    /// Its input values.
    pub inputs: Values,
    /// False when a requirement pulled it in rather than the blueprint.
    pub listed: bool,
}

/// A value and the component (alias) that set it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// The component that set it.
    pub component: String,
}

/// One member's resource adjustment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adjustment {
    /// The component (alias).
    pub component: String,
    /// The adjustment.
    pub adjust: ResourceAdjustments,
}

/// A port the guest listens on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposedPort {
    /// Port inside the guest.
    pub internal: u16,
    /// Fixed host port, if any.
    pub external: Option<u16>,
    /// Protocol.
    pub protocol: Protocol,
    /// The component (alias).
    pub component: String,
}

/// A file written into the guest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposedFile {
    /// Content, inputs filled in.
    pub content: String,
    /// Octal mode.
    pub mode: String,
    /// Owner.
    pub owner: String,
    /// Group.
    pub group: String,
    /// The component (alias).
    pub component: String,
}

/// A volume the guest needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposedVolume {
    /// Name.
    pub name: String,
    /// Mount point.
    pub path: String,
    /// Kind.
    pub kind: VolumeKind,
    /// Size in bytes, if set.
    pub size: Option<u64>,
    /// The component (alias).
    pub component: String,
}

/// A point of provisioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Before packages.
    PreInstall,
    /// After packages.
    PostInstall,
    /// After files.
    Configure,
    /// Checks.
    Validate,
}

/// A hook command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComposedHook {
    /// When it runs.
    pub phase: Phase,
    /// The shell command, inputs filled in.
    pub command: String,
    /// The component (alias).
    pub component: String,
}

impl Composed {
    /// Applies the adjustments to compute units; returns the result and the components
    /// that changed it.
    pub fn cpu_units(&self, units: u32) -> (u32, Vec<String>) {
        let mut v = f64::from(units);
        let mut by = Vec::new();
        for a in &self.resources {
            let c = &a.adjust.cpu;
            let next = (v * c.multiply + c.add as f64)
                .max(c.minimum as f64)
                .max(0.0);
            if next.round() != v.round() {
                by.push(a.component.clone());
            }
            v = next;
        }
        (v.round().min(f64::from(u32::MAX)) as u32, by)
    }

    /// Applies the adjustments to memory in bytes (rounded up to whole MiB); returns the
    /// result and the components that changed it.
    pub fn memory_bytes(&self, bytes: u64) -> (u64, Vec<String>) {
        let mut v = bytes as f64;
        let mut by = Vec::new();
        for a in &self.resources {
            let m = &a.adjust.memory;
            let next = (v * m.multiply + m.add.bytes() as f64).max(m.minimum.bytes() as f64);
            if next != v {
                by.push(a.component.clone());
            }
            v = next;
        }
        const MIB: u64 = 1 << 20;
        let out = (v as u64).div_ceil(MIB) * MIB;
        (if by.is_empty() { bytes } else { out }, by)
    }
}

/// Merges members (in dependency order) with their input values.
pub fn merge(
    blueprint: &str,
    members: &[Member],
    inputs: &[Values],
    params: &Values,
) -> Result<Composed, ComposeError> {
    let mut out = Composed {
        blueprint: blueprint.into(),
        parameters: params.clone(),
        ..Composed::default()
    };
    let mut hooks: Vec<ComposedHook> = Vec::new();
    for (m, values) in members.iter().zip(inputs) {
        let alias = &m.alias;
        let fill = |what: &str, text: &str| {
            interpolate(text, values, params).map_err(|message| ComposeError::Contract {
                component: alias.clone(),
                message: format!("{what}: {message}"),
            })
        };
        let clash = |other: &str, what: String| ComposeError::Clash {
            a: other.to_string(),
            b: alias.clone(),
            what,
        };
        let c = &m.spec.configuration;
        out.members.push(ComposedMember {
            alias: alias.clone(),
            component: m.component.clone(),
            version: m.spec.version.clone(),
            inputs: values.clone(),
            listed: m.entry.is_some(),
        });
        out.resources.push(Adjustment {
            component: alias.clone(),
            adjust: c.resources.clone(),
        });
        for (key, value) in &c.environment {
            let value = fill(&format!("environment {key}"), value)?;
            match out.environment.get(key) {
                Some(old) if old.value != value => {
                    return Err(clash(
                        &old.component,
                        format!(
                            "environment {key} is {:?} in one and {value:?} in the other",
                            old.value
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    out.environment.insert(
                        key.clone(),
                        Sourced {
                            value,
                            component: alias.clone(),
                        },
                    );
                }
            }
        }
        for p in &c.ports {
            for old in &out.ports {
                if p.external.is_some() && old.external == p.external {
                    return Err(clash(
                        &old.component,
                        format!("both forward host port {}", p.external.unwrap_or_default()),
                    ));
                }
                if old.internal == p.internal && old.protocol == p.protocol {
                    return Err(clash(
                        &old.component,
                        format!(
                            "both listen on guest port {}/{}",
                            p.internal,
                            protocol_name(p.protocol)
                        ),
                    ));
                }
            }
            out.ports.push(ComposedPort {
                internal: p.internal,
                external: p.external,
                protocol: p.protocol,
                component: alias.clone(),
            });
        }
        for (path, f) in &c.files {
            let file = ComposedFile {
                content: fill(&format!("file {path}"), &f.content)?,
                mode: f.mode.clone(),
                owner: f.owner.clone(),
                group: f.group.clone(),
                component: alias.clone(),
            };
            if let Some(old) = out.files.get(path) {
                let same = old.content == file.content
                    && old.mode == file.mode
                    && old.owner == file.owner
                    && old.group == file.group;
                if !same {
                    let what = if old.content != file.content {
                        "content"
                    } else {
                        "mode or owner"
                    };
                    return Err(clash(
                        &old.component,
                        format!("file {path} has different {what}"),
                    ));
                }
                continue;
            }
            out.files.insert(path.clone(), file);
        }
        for p in &c.packages.install {
            if let Some(other) = out.remove.get(p) {
                return Err(clash(
                    other,
                    format!("package {p} is removed by one and installed by the other"),
                ));
            }
            out.install
                .entry(p.clone())
                .or_insert_with(|| alias.clone());
        }
        for p in &c.packages.remove {
            if let Some(other) = out.install.get(p) {
                return Err(clash(
                    other,
                    format!("package {p} is installed by one and removed by the other"),
                ));
            }
            out.remove.entry(p.clone()).or_insert_with(|| alias.clone());
        }
        for v in &c.volumes {
            volume_rules(alias, v)?;
            let volume = ComposedVolume {
                name: v.name.clone(),
                path: v.path.clone(),
                kind: v.kind,
                size: v.size.map(|s| s.bytes()),
                component: alias.clone(),
            };
            if let Some(old) = out.volumes.iter().find(|o| o.name == v.name) {
                if (&old.path, old.kind, old.size) != (&volume.path, volume.kind, volume.size) {
                    return Err(clash(
                        &old.component,
                        format!("volume {} is declared differently", v.name),
                    ));
                }
                continue;
            }
            if let Some(old) = out.volumes.iter().find(|o| o.path == v.path) {
                return Err(clash(
                    &old.component,
                    format!(
                        "volumes {} and {} both mount at {}",
                        old.name, v.name, v.path
                    ),
                ));
            }
            out.volumes.push(volume);
        }
        let h = &c.hooks;
        for (phase, command) in [
            (Phase::PreInstall, &h.pre_install),
            (Phase::PostInstall, &h.post_install),
            (Phase::Configure, &h.configure),
            (Phase::Validate, &h.validate),
        ] {
            if let Some(command) = command {
                hooks.push(ComposedHook {
                    phase,
                    command: fill(&format!("hook {phase:?}"), command)?,
                    component: alias.clone(),
                });
            }
        }
    }
    // A stable sort keeps dependency order within each phase.
    hooks.sort_by_key(|h| h.phase);
    out.hooks = hooks;
    Ok(out)
}

/// `tcp` or `udp`.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// What each volume kind needs: persistent ones a size (they become disks), config and
/// secret ones none (they are read-only directories in the root file system); the name
/// becomes the disk's serial number, so it is short and plain.
fn volume_rules(alias: &str, v: &Volume) -> Result<(), ComposeError> {
    let broken = |message: String| ComposeError::Contract {
        component: alias.to_string(),
        message,
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if v.name.is_empty() || v.name.len() > MAX_VOLUME_NAME || !v.name.chars().all(plain) {
        return Err(broken(format!(
            "volume name `{}`: 1 to {MAX_VOLUME_NAME} letters, digits, `-` or `_`",
            v.name
        )));
    }
    let path_char = |c: char| plain(c) || c == '/' || c == '.';
    if !v.path.starts_with('/') || v.path == "/" || !v.path.chars().all(path_char) {
        return Err(broken(format!(
            "volume {}: path `{}` must be an absolute directory other than /, of letters, \
             digits, `-`, `_`, `.` and `/`",
            v.name, v.path
        )));
    }
    match (v.kind, v.size) {
        (VolumeKind::Persistent, None) => Err(broken(format!(
            "volume {}: a persistent volume needs a size (it becomes a disk)",
            v.name
        ))),
        (VolumeKind::Config | VolumeKind::Secret, Some(_)) => Err(broken(format!(
            "volume {}: a {} volume is a directory and takes no size; remove it",
            v.name,
            if v.kind == VolumeKind::Config {
                "config"
            } else {
                "secret"
            }
        ))),
        _ => Ok(()),
    }
}

/// The longest volume name: `hnx-` and the name make the disk's 20-byte serial number.
pub const MAX_VOLUME_NAME: usize = 16;
