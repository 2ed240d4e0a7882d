//! Heat-driven placement in simulated time (the store's clock is advanced by hand).

use hypernix_storage::Store;

use crate::kit::{G, store, two_tiers};

fn heat_up(s: &Store, extents: &[u64], times: usize) {
    let mut buf = vec![0u8; 16];
    for _ in 0..times {
        for &e in extents {
            s.read("v", e * G, &mut buf).unwrap();
        }
    }
}

fn on_fast(s: &Store) -> u64 {
    s.tier_stats()[0].extents
}

#[test]
fn hot_extents_are_promoted_within_capacity_and_batch_then_demoted_when_cold() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", 16 * G).unwrap();
    for e in 0..8 {
        s.write("v", e * G, &[e as u8 + 1; 100], false).unwrap();
    }
    assert_eq!(on_fast(&s), 0);
    // Five hot extents; the fast tier (4 slots) takes at most its batch of 3 per round.
    heat_up(&s, &[0, 1, 2, 3, 4], 10);
    heat_up(&s, &[5], 1);
    let moves = s.plan_moves();
    assert_eq!(moves.len(), 3, "{moves:?}");
    assert!(
        moves
            .iter()
            .all(|m| m.from == "slow" && m.to == "fast" && m.extent < 5)
    );
    let report = s.rebalance().unwrap();
    assert_eq!((report.promoted, report.demoted), (3, 0));
    s.rebalance().unwrap();
    assert_eq!(on_fast(&s), 4, "capacity reached");
    assert!(s.plan_moves().is_empty());
    // Data followed the moves.
    for e in 0..8u64 {
        let mut b = [0u8; 100];
        s.read("v", e * G, &mut b).unwrap();
        assert_eq!(b, [e as u8 + 1; 100]);
    }
    // Extent 6 gets hot while the promoted ones cool down over many half-lives.
    s.advance_clock(20 * 3600);
    heat_up(&s, &[6], 10);
    let report = s.rebalance().unwrap();
    assert_eq!(report.demoted, 4, "idle and cold: demoted");
    assert_eq!(report.promoted, 1, "into the room the demotions made");
    assert_eq!(on_fast(&s), 1);
    assert!(s.plan_moves().is_empty(), "stable once placed");
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn moves_are_durable_and_skip_holes() {
    let config = two_tiers();
    let (dir, s) = store(&config);
    s.create_volume("v", 4 * G).unwrap();
    s.write("v", G, b"moved", true).unwrap();
    assert!(
        !s.move_extent("v", 0, "fast").unwrap(),
        "a hole does not move"
    );
    assert!(s.move_extent("v", 1, "fast").unwrap());
    assert!(!s.move_extent("v", 1, "fast").unwrap(), "already there");
    assert!(s.move_extent("v", 2, "nowhere").is_err());
    drop(s);
    let s = Store::open(dir.path(), &config).unwrap();
    assert_eq!(s.tier_stats()[0].extents, 1);
    let mut b = [0u8; 5];
    s.read("v", G, &mut b).unwrap();
    assert_eq!(&b, b"moved");
    let report = s.fsck().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.free_slots, 1, "the old slot on slow is free");
}

#[test]
fn writes_interleaved_with_moves_keep_every_byte() {
    let config = two_tiers();
    let (dir, s) = store(&config);
    s.create_volume("v", 8 * G).unwrap();
    let mut model = vec![0u8; 8 * G as usize];
    let mut x: u64 = 88172645463325252;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..400u64 {
        let e = next(8);
        match next(3) {
            0 => {
                let to = if next(2) == 0 { "fast" } else { "slow" };
                let _ = s.move_extent("v", e, to);
            }
            _ => {
                let off = e * G + next(G - 64);
                let b = (step % 250 + 1) as u8;
                s.write("v", off, &[b; 64], false).unwrap();
                model[off as usize..off as usize + 64].fill(b);
            }
        }
    }
    let mut got = vec![0u8; 8 * G as usize];
    s.read("v", 0, &mut got).unwrap();
    assert!(got == model, "live store differs from the model");
    drop(s);
    let s = Store::open(dir.path(), &config).unwrap();
    s.read("v", 0, &mut got).unwrap();
    assert!(got == model, "reopened store differs from the model");
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn content_steers_placement_sequential_stays_and_compressible_leaves_first() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", 16 * G).unwrap();
    // Extent 0 holds random bytes, extent 1 text; both go to fast, then cool down.
    let text = b"placement keeps text on slow tiers first ".repeat(40);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..1600)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for _ in 0..5 {
        s.write("v", 512, &random, false).unwrap();
        s.write("v", G + 512, &text, false).unwrap();
    }
    assert!(s.move_extent("v", 0, "fast").unwrap() && s.move_extent("v", 1, "fast").unwrap());
    s.advance_clock(20 * 3600);
    // Extent 2 is read in one sequential run, extent 3 at random places, as often.
    s.write("v", 2 * G, b"s", false).unwrap();
    s.write("v", 3 * G, b"r", false).unwrap();
    let mut b = vec![0u8; 4096];
    for i in 0..12u64 {
        s.read("v", 2 * G + i * 4096, &mut b).unwrap();
        s.read("v", 3 * G + (i * 7 % 12) * 4096 + 100, &mut b[..16])
            .unwrap();
    }
    let moves = s.plan_moves();
    let order: Vec<(u64, &str)> = moves.iter().map(|m| (m.extent, m.to.as_str())).collect();
    assert_eq!(order, [(1, "slow"), (0, "slow"), (3, "fast")], "{moves:?}");
}
