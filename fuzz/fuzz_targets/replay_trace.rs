//! The block-trace parser on arbitrary bytes, and a replay of whatever it accepts: neither
//! may panic.
#![no_main]

use std::path::Path;

use hypernix_storage::cache::PolicyKind;
use hypernix_storage::replay::{self, ReplaySetup, trace};
use hypernix_storage::{StoreConfig, TierMedium, TierSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(requests) = trace::parse(Path::new("fuzz"), data) else {
        return;
    };
    // Keep each run short: at most 4096 pages.
    let mut budget = 4096u64;
    let requests: Vec<_> = requests
        .into_iter()
        .take_while(|r| {
            budget = budget.saturating_sub(u64::from(r.count));
            budget > 0
        })
        .collect();
    let mut config = StoreConfig::single_disk(1 << 30);
    config.tiers.insert(
        0,
        TierSpec {
            name: "ram".into(),
            level: 0,
            medium: TierMedium::Memory,
            capacity: 8 * config.granularity,
            promote: None,
            demote: None,
        },
    );
    if let Some(setup) = ReplaySetup::from_store_config(&config, PolicyKind::Tinylfu) {
        let _ = replay::replay(&setup, &requests, &mut |_, _| {});
    }
});
