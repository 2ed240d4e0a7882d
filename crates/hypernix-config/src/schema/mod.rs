//! The typed `hypervisor.*` option tree, one module per section.
//!
//! Every struct denies unknown attributes and fills defaults, so a configuration that
//! deserializes is complete; `validate` then checks what types alone cannot (ranges and
//! references between sections).

pub mod backup;
pub mod composition;
pub mod compute;
pub mod mesh;
pub mod security;
pub mod services;
pub mod storage;

use serde::{Deserialize, Serialize};

use crate::error::Problems;

/// The whole `hypervisor` attribute set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Hypervisor {
    /// Tags, policies and compute units.
    pub compute: compute::Compute,
    /// Heat-map storage tiers.
    pub storage: storage::Storage,
    /// Clustering.
    pub mesh: mesh::Mesh,
    /// Capabilities and principals.
    pub security: security::Security,
    /// Backup repositories and sources.
    pub backup: backup::Backup,
    /// Components and blueprints.
    pub composition: composition::Composition,
    /// The GraphQL API.
    pub api: services::Api,
    /// The event bus.
    pub events: services::Events,
    /// Metrics and anomaly detection.
    pub monitoring: services::Monitoring,
    /// Live migration.
    pub migration: services::Migration,
}

impl Hypervisor {
    /// Checks ranges and cross-references that the types cannot express.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        self.storage.validate(problems);
        self.mesh.validate(problems);
        self.security.validate(problems);
        self.backup.validate(self, problems);
        self.composition.validate(problems);
        self.api.validate(problems);
        self.events.validate(problems);
        self.monitoring.validate(problems);
        self.migration.validate(problems);
        self.validate_blueprint_refs(problems);
        self.validate_unit_names(problems);
    }

    /// Unit, disk and interface names become host names, file names and QEMU ids.
    fn validate_unit_names(&self, problems: &mut Problems) {
        let units = crate::AttrPath::root().join("compute").join("units");
        for (name, unit) in &self.compute.units {
            if !is_safe_name(name) {
                problems.at(units.join(name), NAME_RULE);
            }
            let disks = unit
                .storage
                .iter()
                .enumerate()
                .map(|(i, d)| (i, &d.name, "storage"));
            let nics = unit
                .network
                .iter()
                .enumerate()
                .map(|(i, n)| (i, &n.name, "network"));
            for (i, item, list) in disks.chain(nics) {
                if !is_safe_name(item) {
                    let at = units
                        .join(name)
                        .join(list)
                        .join(crate::path::index(i))
                        .join("name");
                    problems.at(at, NAME_RULE);
                }
            }
        }
    }

    /// A unit's `blueprint` (or `labels.blueprint`, as the seed writes it) must exist.
    fn validate_blueprint_refs(&self, problems: &mut Problems) {
        let blueprints = &self.composition.blueprints;
        for (name, unit) in &self.compute.units {
            let path = crate::AttrPath::root()
                .join("compute")
                .join("units")
                .join(name);
            let refs = [
                (unit.blueprint.as_ref(), path.join("blueprint")),
                (
                    unit.labels.get("blueprint"),
                    path.join("labels").join("blueprint"),
                ),
            ];
            for (blueprint, at) in refs {
                if let Some(b) = blueprint.filter(|b| !blueprints.contains_key(*b)) {
                    problems.unknown_ref(at, "blueprint", b, blueprints.keys());
                }
            }
        }
    }
}

const NAME_RULE: &str =
    "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit";

/// A name usable as a file name, a host name part and a QEMU id.
fn is_safe_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
