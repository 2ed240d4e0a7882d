//! `hypervisor.security`: capabilities (what may be done), principals (who may do it,
//! under which grants), continuous zero-trust verification and session defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Problems;
use crate::path::AttrPath;
use crate::values::{Duration, Size};

mod principal;
#[cfg(test)]
mod tests;

pub use principal::{
    Day, Emergency, Grant, Principal, PrincipalKind, RateLimit, Schedule, Temporal, Usage,
    Validity, Window,
};

/// `hypervisor.security`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Security {
    /// Named sets of rights that grants refer to.
    pub capabilities: BTreeMap<String, Capability>,
    /// Users, services, groups and tokens.
    pub principals: BTreeMap<String, Principal>,
    /// Continuous verification.
    pub zero_trust: ZeroTrust,
    /// Session settings.
    pub defaults: SecurityDefaults,
}

/// `security.capabilities.NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Capability {
    /// Free text.
    pub description: Option<String>,
    /// Named API operations allowed, such as `"unit.start"`.
    pub operations: Vec<String>,
    /// Rights on each kind of resource.
    pub resources: CapabilityResources,
    /// Only resources with these labels.
    pub scope: Option<Scope>,
    /// Whether holders may pass the capability on.
    pub delegation: Delegation,
}

/// `capabilities.NAME.resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CapabilityResources {
    /// Rights on compute units.
    pub compute: ComputeRights,
    /// Rights on storage.
    pub storage: StorageRights,
    /// Rights on networks.
    pub network: NetworkRights,
    /// Rights on the cluster.
    pub cluster: ClusterRights,
}

/// `resources.compute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComputeRights {
    /// May create units.
    pub create: bool,
    /// May change units.
    pub modify: bool,
    /// May delete units.
    pub delete: bool,
    /// May start, stop and migrate units.
    pub control: bool,
    /// May open unit consoles.
    pub console: bool,
    /// Bounds on the rights.
    pub limits: ComputeLimits,
}

/// `resources.compute.limits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ComputeLimits {
    /// Most units the holder may act on.
    pub max_units: Option<u32>,
}

/// `resources.storage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StorageRights {
    /// May read volumes.
    pub read: bool,
    /// May write volumes.
    pub write: bool,
    /// May create volumes.
    pub allocate: bool,
    /// May take snapshots.
    pub snapshot: bool,
    /// Tier levels the rights cover (empty: all).
    pub tiers: Vec<u32>,
    /// Most storage the holder may allocate.
    pub quota: Option<Size>,
}

/// `resources.network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NetworkRights {
    /// May change networks.
    pub configure: bool,
    /// May attach units to networks.
    pub attach: bool,
    /// May create networks.
    pub create: bool,
}

/// `resources.cluster`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterRights {
    /// May add nodes.
    pub join: bool,
    /// May change cluster settings.
    pub configure: bool,
    /// May place units on nodes.
    pub schedule: bool,
}

/// A label scope: only resources carrying all these labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Scope {
    /// Labels the resources must carry.
    pub labels: BTreeMap<String, String>,
}

/// `capabilities.NAME.delegation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Delegation {
    /// Holders may delegate the capability.
    pub allowed: bool,
    /// Most delegation hops.
    pub max_depth: u32,
}

/// `security.zeroTrust`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ZeroTrust {
    /// Re-checking sessions while they last.
    pub continuous: ContinuousVerification,
}

/// `security.zeroTrust.continuous`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ContinuousVerification {
    /// Sessions are re-checked.
    pub verification: bool,
    /// Time between checks.
    pub interval: Duration,
}

impl Default for ContinuousVerification {
    fn default() -> Self {
        ContinuousVerification {
            verification: true,
            interval: Duration::secs(300),
        }
    }
}

/// `security.defaults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecurityDefaults {
    /// Idle time after which a session ends.
    pub session_timeout: Duration,
}

impl Default for SecurityDefaults {
    fn default() -> Self {
        SecurityDefaults {
            session_timeout: Duration::secs(8 * 3600),
        }
    }
}

impl Security {
    /// Checks delegation, grants, group members and timings.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("security");
        for (name, capability) in &self.capabilities {
            let path = at.join("capabilities").join(name).join("delegation");
            let delegation = &capability.delegation;
            if delegation.allowed && delegation.max_depth == 0 {
                problems.at(
                    path.join("maxDepth"),
                    "is 0 while delegation is allowed, so nobody could delegate; use 1 or more, \
                     or set allowed = false",
                );
            } else if !delegation.allowed && delegation.max_depth > 0 {
                problems.at(
                    path.join("maxDepth"),
                    format!(
                        "is {} while delegation is not allowed; set allowed = true or remove \
                         maxDepth",
                        delegation.max_depth
                    ),
                );
            }
        }
        principal::validate(self, &at, problems);
        check_positive(
            self.zero_trust.continuous.interval,
            at.join("zeroTrust").join("continuous").join("interval"),
            problems,
        );
        check_positive(
            self.defaults.session_timeout,
            at.join("defaults").join("sessionTimeout"),
            problems,
        );
    }
}

/// Reports a zero duration at `path`.
fn check_positive(duration: Duration, path: AttrPath, problems: &mut Problems) {
    if duration.std().is_zero() {
        problems.at(path, "must be longer than 0; use a duration such as \"5m\"");
    }
}
