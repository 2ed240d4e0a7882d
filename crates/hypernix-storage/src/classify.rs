//! Which tiers a volume's extents may use, by its name: `storage.classifications` (globs
//! over volume names with a preferred tier and the allowed tiers) and each tier's
//! `policies.demotion.excludePatterns` (volumes whose extents never leave that tier).
//!
//! The first classification (by name) whose pattern matches a volume applies. New extents
//! go to the preferred level first; placement never moves an extent to a level outside
//! the allowed ones (empty: any), nor demotes it out of a tier that excludes its volume.
//!
//! A classification's `characteristics` steer its volumes a little further:
//! - `temperature`: `hot` starts new extents on the fastest allowed level (not the
//!   preferred one); `cold` and `frozen` start them on the slowest allowed level and never
//!   let placement move them to a level faster than the preferred one; `warm` and `cool`
//!   change nothing.
//! - `accessPattern`: `sequential`, `write-once` and `append-only` volumes are not admitted
//!   to the memory-tier cache (a stream would only push hotter extents out); `random` is.
//! - `compressibility`: when placement picks which extents make room first (compressible
//!   ones lose least on a slower tier), `high` counts the volume's extents as compressible
//!   and `none` as incompressible whatever their writes measured; `medium` and `low` leave
//!   it to the measurement.
//!
//! A unit disk's `tier` pins its volume ([`Rules::pin`]): its extents are allocated on
//! that level only and placement never moves them; a pin overrides the classification.

use std::collections::BTreeMap;

use hypernix_config::schema::storage::{AccessPattern, Compressibility, Storage, Temperature};

/// A classification's `characteristics`, as hints (`None`: no hint).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassHints {
    /// How often the data is accessed.
    pub temperature: Option<Temperature>,
    /// How the data is accessed.
    pub access: Option<AccessPattern>,
    /// How well the data compresses.
    pub compressibility: Option<Compressibility>,
}

impl ClassHints {
    fn cold(&self) -> bool {
        matches!(
            self.temperature,
            Some(Temperature::Cold | Temperature::Frozen)
        )
    }
}

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
    /// Its characteristics.
    pub hints: ClassHints,
}

/// The placement rules of a store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Classifications, in name order.
    pub classes: Vec<VolumeClass>,
    /// Tier name → globs of volumes never demoted out of it.
    pub no_demotion: BTreeMap<String, Vec<String>>,
    /// Volume name → the level it is pinned to (a unit disk's `tier`).
    pub pins: BTreeMap<String, u32>,
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
                    hints: ClassHints {
                        temperature: Some(c.characteristics.temperature),
                        access: Some(c.characteristics.access_pattern),
                        compressibility: Some(c.characteristics.compressibility),
                    },
                })
                .collect(),
            no_demotion: storage
                .tiers
                .iter()
                .filter(|(_, t)| !t.policies.demotion.exclude_patterns.is_empty())
                .map(|(n, t)| (n.clone(), t.policies.demotion.exclude_patterns.clone()))
                .collect(),
            pins: BTreeMap::new(),
        }
    }

    /// Pins `volume` to `level`: its extents are allocated there only and never moved.
    pub fn pin(&mut self, volume: &str, level: u32) {
        self.pins.insert(volume.to_owned(), level);
    }

    /// The classification of volume `volume`, if any.
    pub fn class(&self, volume: &str) -> Option<&VolumeClass> {
        self.classes
            .iter()
            .find(|c| c.patterns.iter().any(|p| glob(p, volume)))
    }

    /// Whether an extent of `volume` may be on level `level`.
    pub fn allows(&self, volume: &str, level: u32) -> bool {
        if let Some(&pin) = self.pins.get(volume) {
            return level == pin;
        }
        self.class(volume).is_none_or(|c| {
            (c.allowed.is_empty() || c.allowed.contains(&level))
                && (!c.hints.cold() || level >= c.preferred)
        })
    }

    /// The level new extents of `volume` go to first, given the store's `levels` and
    /// default level (see the module docs for pins and temperatures).
    pub fn start_level(&self, volume: &str, levels: &[u32], default: u32) -> u32 {
        if let Some(&pin) = self.pins.get(volume) {
            return pin;
        }
        let Some(c) = self.class(volume) else {
            return default;
        };
        let allowed = levels.iter().copied().filter(|&l| self.allows(volume, l));
        match c.hints.temperature {
            Some(Temperature::Hot) => allowed.min().unwrap_or(c.preferred),
            Some(Temperature::Cold | Temperature::Frozen) => allowed.max().unwrap_or(c.preferred),
            _ => c.preferred,
        }
    }

    /// Whether reads of `volume` may be admitted to the memory-tier cache.
    pub fn caches(&self, volume: &str) -> bool {
        self.class(volume).is_none_or(|c| {
            !matches!(
                c.hints.access,
                Some(
                    AccessPattern::Sequential
                        | AccessPattern::WriteOnce
                        | AccessPattern::AppendOnly
                )
            )
        })
    }

    /// Whether `volume`'s extents count as compressible by its classification (`None`:
    /// go by what its writes measured).
    pub fn compressible(&self, volume: &str) -> Option<bool> {
        match self.class(volume)?.hints.compressibility? {
            Compressibility::High => Some(true),
            Compressibility::None => Some(false),
            Compressibility::Medium | Compressibility::Low => None,
        }
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

    fn class(pattern: &str, preferred: u32, allowed: &[u32], hints: ClassHints) -> VolumeClass {
        VolumeClass {
            name: pattern.into(),
            patterns: vec![pattern.into()],
            preferred,
            allowed: allowed.to_vec(),
            hints,
        }
    }

    fn hints(t: Temperature, a: AccessPattern, c: Compressibility) -> ClassHints {
        ClassHints {
            temperature: Some(t),
            access: Some(a),
            compressibility: Some(c),
        }
    }

    #[test]
    fn characteristics_steer_start_level_moves_caching_and_compressibility() {
        use AccessPattern::*;
        use Compressibility as C;
        use Temperature::*;
        let rules = Rules {
            classes: vec![
                class("cold-*", 1, &[], hints(Cold, Random, C::High)),
                class("frozen-*", 1, &[1, 2], hints(Frozen, AppendOnly, C::None)),
                class("hot-*", 2, &[1, 2, 3], hints(Hot, Sequential, C::Medium)),
                class("warm-*", 2, &[], hints(Warm, WriteOnce, C::Low)),
            ],
            ..Rules::default()
        };
        let levels = [0, 1, 2, 3];
        // Hot: the fastest allowed level, not the preferred one.
        assert_eq!(rules.start_level("hot-a", &levels, 1), 1);
        // Cold and frozen: the slowest allowed level, never faster than the preferred.
        assert_eq!(rules.start_level("cold-a", &levels, 1), 3);
        assert_eq!(rules.start_level("frozen-a", &levels, 1), 2);
        assert!(!rules.allows("cold-a", 0) && rules.allows("cold-a", 1));
        assert!(!rules.allows("frozen-a", 3), "allowed tiers still apply");
        // Warm (and no classification): the preferred (default) level.
        assert_eq!(rules.start_level("warm-a", &levels, 1), 2);
        assert_eq!(rules.start_level("other", &levels, 1), 1);
        assert!(rules.allows("warm-a", 0));
        // Only random volumes (and unclassified ones) are cached.
        assert!(rules.caches("cold-a") && rules.caches("other"));
        assert!(!rules.caches("frozen-a") && !rules.caches("hot-a") && !rules.caches("warm-a"));
        // Compressibility: high and none decide, medium and low leave it to measurement.
        assert_eq!(rules.compressible("cold-a"), Some(true));
        assert_eq!(rules.compressible("frozen-a"), Some(false));
        assert_eq!(rules.compressible("hot-a"), None);
        assert_eq!(rules.compressible("other"), None);
    }

    #[test]
    fn a_pin_overrides_the_classification() {
        let mut rules = Rules {
            classes: vec![class("db-*", 0, &[0], ClassHints::default())],
            ..Rules::default()
        };
        rules.pin("db-1", 2);
        assert_eq!(rules.start_level("db-1", &[0, 1, 2], 1), 2);
        assert!(rules.allows("db-1", 2) && !rules.allows("db-1", 0) && !rules.allows("db-1", 1));
        assert!(rules.allows("db-2", 0) && !rules.allows("db-2", 2));
    }

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
