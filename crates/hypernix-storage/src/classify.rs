//! Which tiers a volume's extents may use, by its name: `storage.classifications` (globs
//! over volume names with a preferred tier and the allowed tiers) and each tier's
//! `policies.demotion.excludePatterns` (volumes whose extents never leave that tier).
//!
//! The first classification (by name) whose pattern matches a volume applies. New extents
//! go to the preferred level first; placement never moves an extent to a level outside
//! the allowed ones (empty: any), nor demotes it out of a tier that excludes its volume.

use std::collections::BTreeMap;

use hypernix_config::schema::storage::Storage;

/// One classification.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeClass {
    /// Its name (`storage.classifications.NAME`).
    pub name: String,
    /// Globs (`*`, `?`) over volume names.
    pub patterns: Vec<String>,
    /// The level new extents go to first.
    pub preferred: u32,
    /// The levels its extents may be on (empty: any).
    pub allowed: Vec<u32>,
}

/// The placement rules of a store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Classifications, in name order.
    pub classes: Vec<VolumeClass>,
    /// Tier name → globs of volumes never demoted out of it.
    pub no_demotion: BTreeMap<String, Vec<String>>,
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` any one character).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl Rules {
    /// Reads `storage.classifications` and the demotion exclude patterns.
    pub fn from_config(storage: &Storage) -> Rules {
        Rules {
            classes: storage
                .classifications
                .iter()
                .map(|(name, c)| VolumeClass {
                    name: name.clone(),
                    patterns: c.patterns.clone(),
                    preferred: c.placement.preferred_tier,
                    allowed: c.placement.allowed_tiers.clone(),
                })
                .collect(),
            no_demotion: storage
                .tiers
                .iter()
                .filter(|(_, t)| !t.policies.demotion.exclude_patterns.is_empty())
                .map(|(n, t)| (n.clone(), t.policies.demotion.exclude_patterns.clone()))
                .collect(),
        }
    }

    /// The classification of volume `volume`, if any.
    pub fn class(&self, volume: &str) -> Option<&VolumeClass> {
        self.classes
            .iter()
            .find(|c| c.patterns.iter().any(|p| glob(p, volume)))
    }

    /// Whether an extent of `volume` may be on level `level`.
    pub fn allows(&self, volume: &str, level: u32) -> bool {
        self.class(volume)
            .is_none_or(|c| c.allowed.is_empty() || c.allowed.contains(&level))
    }

    /// Whether extents of `volume` may be demoted out of tier `tier`.
    pub fn may_demote(&self, volume: &str, tier: &str) -> bool {
        self.no_demotion
            .get(tier)
            .is_none_or(|ps| !ps.iter().any(|p| glob(p, volume)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        for (p, n, m) in [
            ("db-*", "db-main", true),
            ("db-*", "web", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-log*", "app-logs", true),
            ("*x", "xxa", false),
            ("", "a", false),
        ] {
            assert_eq!(glob(p, n), m, "{p} {n}");
        }
    }
}
