//! Trace replay: hand-checked tiny traces, and the ARC paper's OLTP trace, whose LRU hit
//! ratio the paper publishes (32.83% at 1000 pages, Table VIII).

use std::path::PathBuf;

use hypernix_storage::cache::PolicyKind;
use hypernix_storage::replay::{self, ReplaySetup, trace};
use hypernix_storage::{StoreConfig, TierMedium, TierSpec};

fn setup(pages: u64, policy: PolicyKind) -> ReplaySetup {
    let mut c = StoreConfig::single_disk(1 << 40);
    c.tiers.insert(
        0,
        TierSpec {
            name: "ram".into(),
            level: 0,
            medium: TierMedium::Memory,
            capacity: pages * c.granularity,
            promote: None,
            demote: None,
        },
    );
    ReplaySetup::from_store_config(&c, policy).unwrap()
}

#[test]
fn a_tiny_trace_gives_the_hand_counted_ratios() {
    // Pages: 1 2 1 3 1 | 4 5 (one line of two pages) | 1.
    let text = "1 1 0 0\n2 1 0 1\n1 1 0 2\n3 1 0 3\n1 1 0 4\n4 2 0 5\n1 1 0 6\n";
    let t = trace::parse(std::path::Path::new("tiny"), text.as_bytes()).unwrap();
    let r = replay::replay(&setup(2, PolicyKind::Lru), &t, &mut |_, _| {});
    assert_eq!((r.requests, r.unique_pages), (8, 5));
    // LRU at 2 pages: M M H M H M M M → 2 hits; ARC keeps 1 (seen twice) through 4 5: 3.
    let memory = &r.tiers[0];
    assert_eq!(memory.served, 2);
    assert_eq!(memory.lru, Some(2.0 / 8.0));
    assert_eq!(memory.arc, Some(3.0 / 8.0));
    assert_eq!(r.tiers[1].served, 6);
    assert_eq!(r.tiers[1].cumulative, 1.0);
    let r = replay::replay(&setup(2, PolicyKind::Arc), &t, &mut |_, _| {});
    assert_eq!(
        r.tiers[0].served, 3,
        "the cache under ARC matches the ARC baseline"
    );
}

fn oltp() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/block-traces/OLTP.lis.zst");
    p.exists().then_some(p)
}

#[test]
fn oltp_lru_matches_the_arc_paper_and_our_cache_beats_arc_at_1000_pages() {
    let Some(path) = oltp() else {
        panic!("../shared/data/block-traces/OLTP.lis.zst is missing beside the checkout");
    };
    let t = trace::read(&path).unwrap();
    let r = replay::replay(&setup(1000, PolicyKind::Tinylfu), &t, &mut |_, _| {});
    assert_eq!((r.requests, r.unique_pages), (914_145, 186_880));
    let m = &r.tiers[0];
    let lru = m.lru.unwrap();
    assert!((lru - 0.3283).abs() < 0.00005, "LRU {lru}");
    let arc = m.arc.unwrap();
    assert!((arc - 0.3893).abs() < 0.002, "ARC {arc}");
    assert!(m.hit_ratio >= arc, "ours {} ARC {arc}", m.hit_ratio);
}
