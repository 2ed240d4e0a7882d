//! The store layout of `examples/nbd-serve.rs`, shared with the tests that reopen its store:
//! tiers `fast` (level 0) and `slow` (level 1), 64 GiB each, 1 MiB extents, new extents on
//! `slow`.

use hypernix_storage::{StoreConfig, TierMedium, TierSpec};

/// The two-tier configuration.
pub fn config() -> StoreConfig {
    let tier = |name: &str, level| TierSpec {
        name: name.into(),
        level,
        medium: TierMedium::Directory(None),
        capacity: 64 << 30,
        promote: None,
        demote: None,
    };
    StoreConfig {
        granularity: 1 << 20,
        tiers: vec![tier("fast", 0), tier("slow", 1)],
        default_level: 1,
        half_life: std::time::Duration::from_secs(3600),
    }
}
