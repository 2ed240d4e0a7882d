//! Plans: what changes between two sets of resolved units, field by field, and whether
//! each change can be applied to the running unit or needs a restart.
//!
//! Live: labels, tags and policies lists, workload, placement, lifecycle and persistence
//! settings (they change no VM hardware); compute units within the vCPU maximum set at
//! boot (vCPU hotplug; adding only, as QEMU cannot reliably re-plug a removed vCPU);
//! memory at or below the size the unit booted with (the balloon).
//! Everything else changes the VM's hardware and needs a restart.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::resolve::ResolvedUnit;

/// The changes between two configurations.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Units that change, by name.
    pub units: Vec<UnitChange>,
}

/// What happens to one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The unit is new.
    Create,
    /// The unit is gone.
    Destroy,
    /// Every change applies to the running unit.
    ApplyLive,
    /// Some change needs a restart.
    Restart,
}

/// The changes to one unit.
#[derive(Debug, Clone, Serialize)]
pub struct UnitChange {
    /// The unit.
    pub unit: String,
    /// What happens to it.
    pub action: Action,
    /// The fields that change (empty for create and destroy).
    pub fields: Vec<FieldChange>,
}

/// One changed field.
#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    /// Field path inside the unit.
    pub path: String,
    /// The old value (null when unset).
    pub old: Value,
    /// The new value (null when unset).
    pub new: Value,
    /// Whether the running unit can take it.
    pub live: bool,
    /// Why.
    pub reason: String,
}

impl Plan {
    /// How many units get each action.
    pub fn count(&self, action: Action) -> usize {
        self.units.iter().filter(|u| u.action == action).count()
    }
}

/// Compares the resolved units of an old and a new configuration.
pub fn plan(old: &BTreeMap<String, ResolvedUnit>, new: &BTreeMap<String, ResolvedUnit>) -> Plan {
    let mut units = Vec::new();
    for (name, o) in old {
        match new.get(name) {
            None => units.push(UnitChange {
                unit: name.clone(),
                action: Action::Destroy,
                fields: Vec::new(),
            }),
            Some(n) => {
                let fields = diff(o, n);
                if fields.is_empty() {
                    continue;
                }
                let action = if fields.iter().all(|f| f.live) {
                    Action::ApplyLive
                } else {
                    Action::Restart
                };
                units.push(UnitChange {
                    unit: name.clone(),
                    action,
                    fields,
                });
            }
        }
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        units.push(UnitChange {
            unit: name.clone(),
            action: Action::Create,
            fields: Vec::new(),
        });
    }
    units.sort_by(|a, b| a.unit.cmp(&b.unit));
    Plan { units }
}

fn diff(old: &ResolvedUnit, new: &ResolvedUnit) -> Vec<FieldChange> {
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten(
        "",
        &serde_json::to_value(&old.settings).unwrap_or_default(),
        &mut a,
    );
    flatten(
        "",
        &serde_json::to_value(&new.settings).unwrap_or_default(),
        &mut b,
    );
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|path| {
            let (o, n) = (
                a.get(path).unwrap_or(&Value::Null),
                b.get(path).unwrap_or(&Value::Null),
            );
            if o == n {
                return None;
            }
            let (live, reason) = classify(path, old, new);
            Some(FieldChange {
                path: path.clone(),
                old: o.clone(),
                new: n.clone(),
                live,
                reason,
            })
        })
        .collect()
}

/// Leaf fields by dotted path; lists are leaves, empty sets and nulls are left out.
pub fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&p, v, out);
            }
        }
        Value::Null => {}
        Value::Array(a) if a.is_empty() => {}
        _ => {
            out.insert(prefix.to_string(), without_nulls(v));
        }
    }
}

/// A copy of `v` without null attributes (unset options inside lists).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

const METADATA: [&str; 7] = [
    "labels",
    "tags",
    "policies",
    "workload",
    "placement",
    "lifecycle",
    "features.persistence",
];

fn classify(path: &str, old: &ResolvedUnit, new: &ResolvedUnit) -> (bool, String) {
    let under = |p: &str| path == p || path.starts_with(&format!("{p}."));
    if METADATA.iter().any(|p| under(p)) {
        return (true, "metadata; the running VM is unchanged".into());
    }
    let (oc, nc) = (old.cpu, new.cpu);
    match path {
        "resources.compute.units" | "resources.compute.burst" if nc.vcpus < oc.vcpus => (
            false,
            format!(
                "vCPUs {} -> {}: removing vCPUs from a running guest is not supported",
                oc.vcpus, nc.vcpus
            ),
        ),
        "resources.compute.units" | "resources.compute.burst" if oc.max_vcpus == nc.max_vcpus => (
            true,
            format!(
                "vCPUs {} -> {} by hotplug, within the maximum of {}",
                oc.vcpus, nc.vcpus, oc.max_vcpus
            ),
        ),
        "resources.compute.units" | "resources.compute.burst" => (
            false,
            format!(
                "the vCPU maximum changes ({} -> {}); it is fixed at boot",
                oc.max_vcpus, nc.max_vcpus
            ),
        ),
        "resources.memory.size" if new.memory <= old.memory => (
            true,
            format!(
                "balloon to {}, within the {} the unit booted with",
                new.memory, old.memory
            ),
        ),
        "resources.memory.size" => (
            false,
            format!(
                "{} is above the {} the unit booted with; the balloon cannot grow past it",
                new.memory, old.memory
            ),
        ),
        _ => (false, "changes the VM's hardware".into()),
    }
}
