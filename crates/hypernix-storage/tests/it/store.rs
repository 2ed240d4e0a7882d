//! The extent store: volumes, thin provisioning, holes, tiers, persistence and fsck.

use hypernix_storage::{Run, StorageError, Store};

use crate::kit::{G, store, two_tiers};

fn read(s: &Store, vol: &str, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0xEE; len];
    s.read(vol, off, &mut buf).expect("read");
    buf
}

#[test]
fn volumes_are_created_listed_resized_and_removed() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("a", 10 * G).unwrap();
    s.create_volume("b", G).unwrap();
    assert!(matches!(
        s.create_volume("a", G),
        Err(StorageError::VolumeExists(_))
    ));
    assert!(matches!(
        s.create_volume("bad/name", G),
        Err(StorageError::BadName(_))
    ));
    assert!(matches!(
        s.create_volume("", G),
        Err(StorageError::BadName(_))
    ));
    let names: Vec<_> = s.volumes().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["a", "b"]);
    s.resize_volume("a", 20 * G).unwrap();
    assert_eq!(s.volume_size("a").unwrap(), 20 * G);
    s.remove_volume("b").unwrap();
    assert!(matches!(
        s.remove_volume("b"),
        Err(StorageError::NoVolume(_))
    ));
    let err = s.volume_size("nope").unwrap_err().to_string();
    assert!(
        err.contains("\"nope\"") && err.contains("volume ls"),
        "{err}"
    );
}

#[test]
fn unallocated_extents_read_as_zeros_and_writes_allocate() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", 8 * G).unwrap();
    assert_eq!(read(&s, "v", 0, 100), vec![0; 100]);
    // A write across an extent boundary allocates two extents.
    s.write("v", G - 10, &[7; 20], false).unwrap();
    let mut want = vec![0u8; 40];
    want[10..30].fill(7);
    assert_eq!(read(&s, "v", G - 20, 40), want);
    assert_eq!(s.volumes()[0].allocated_extents, 2);
    let runs = s.block_status("v", 0, 8 * G).unwrap();
    assert_eq!(
        runs,
        [
            Run {
                len: 2 * G,
                allocated: true
            },
            Run {
                len: 6 * G,
                allocated: false
            }
        ]
    );
    let stats = s.tier_stats();
    assert_eq!((stats[1].name.as_str(), stats[1].extents), ("slow", 2));
}

#[test]
fn zero_writes_trim_and_write_zeroes_keep_holes() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", 4 * G).unwrap();
    s.write("v", 0, &vec![0; G as usize], false).unwrap();
    assert_eq!(
        s.volumes()[0].allocated_extents,
        0,
        "zero write into a hole"
    );
    s.write("v", 0, &vec![1; 2 * G as usize], false).unwrap();
    s.write("v", 0, &vec![0; G as usize], false).unwrap();
    assert_eq!(
        s.volumes()[0].allocated_extents,
        1,
        "whole-extent zero write frees"
    );
    // A partial zero keeps the extent but zeroes the bytes.
    s.zero("v", G + 5, 10, true).unwrap();
    let mut want = vec![1u8; 20];
    want[5..15].fill(0);
    assert_eq!(read(&s, "v", G, 20), want);
    s.zero("v", G, G, false).unwrap();
    assert_eq!(s.volumes()[0].allocated_extents, 0);
    assert_eq!(read(&s, "v", 0, 2 * G as usize), vec![0; 2 * G as usize]);
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn out_of_range_access_is_refused() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", G).unwrap();
    let mut buf = [0u8; 2];
    assert!(matches!(
        s.read("v", G - 1, &mut buf),
        Err(StorageError::OutOfRange { .. })
    ));
    assert!(matches!(
        s.write("v", u64::MAX, &buf, false),
        Err(StorageError::OutOfRange { .. })
    ));
    assert!(matches!(
        s.zero("v", 1, G, false),
        Err(StorageError::OutOfRange { .. })
    ));
    assert!(matches!(
        s.read("w", 0, &mut buf),
        Err(StorageError::NoVolume(_))
    ));
}

#[test]
fn full_default_tier_spills_then_reports_full() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", 100 * G).unwrap();
    for i in 0..68 {
        s.write("v", i * G, &[1], false).unwrap();
    }
    let stats = s.tier_stats();
    assert_eq!((stats[0].extents, stats[1].extents), (4, 64));
    let err = s.write("v", 68 * G, &[1], false).unwrap_err();
    assert!(
        matches!(err, StorageError::Full { extent: 68, .. }),
        "{err}"
    );
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn shrink_frees_and_zeroes_the_tail() {
    let (_d, s) = store(&two_tiers());
    s.create_volume("v", 4 * G).unwrap();
    s.write("v", 0, &vec![9; 4 * G as usize], false).unwrap();
    s.resize_volume("v", G + 100).unwrap();
    assert_eq!(s.volumes()[0].allocated_extents, 2);
    s.resize_volume("v", 4 * G).unwrap();
    assert_eq!(read(&s, "v", G + 98, 4), [9, 9, 0, 0]);
    assert_eq!(read(&s, "v", 3 * G, 10), [0; 10]);
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn data_and_map_survive_reopen_and_slots_are_reused() {
    let config = two_tiers();
    let (dir, s) = store(&config);
    s.create_volume("v", 8 * G).unwrap();
    s.write("v", 3 * G, b"hello", true).unwrap();
    s.write("v", 0, b"gone", true).unwrap();
    s.zero("v", 0, G, false).unwrap();
    drop(s);
    let s = Store::open(dir.path(), &config).unwrap();
    assert_eq!(read(&s, "v", 3 * G, 5), b"hello");
    assert_eq!(s.volumes()[0].allocated_extents, 1);
    s.write("v", 5 * G, b"again", false).unwrap();
    // The freed slot was reused: the slow tier's file did not grow past two slots.
    let report = s.fsck().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.extents, report.free_slots), (2, 0));
}

#[test]
fn reopening_with_another_granularity_is_refused() {
    let mut config = two_tiers();
    let (dir, s) = store(&config);
    drop(s);
    config.granularity *= 2;
    let err = Store::open(dir.path(), &config)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("granularity"), "{err}");
}

#[test]
fn fsck_finds_a_slot_used_twice() {
    let config = two_tiers();
    let (dir, s) = store(&config);
    s.create_volume("v", 4 * G).unwrap();
    s.write("v", 0, b"a", false).unwrap();
    drop(s);
    {
        let db = redb::Database::open(dir.path().join("map.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<(u64, u64), (u8, u64)> =
                redb::TableDefinition::new("extents");
            use redb::ReadableTable;
            let mut t = txn.open_table(def).unwrap();
            let loc = t.get((1, 0)).unwrap().unwrap().value();
            t.insert((1, 1), loc).unwrap();
        }
        txn.commit().unwrap();
    }
    let s = Store::open(dir.path(), &config).unwrap();
    let report = s.fsck().unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("used twice")),
        "{:?}",
        report.problems
    );
}

#[test]
fn ephemeral_store_uses_memory_tiers() {
    let s = Store::ephemeral(&two_tiers()).unwrap();
    s.create_volume("m", 2 * G).unwrap();
    s.write("m", 10, b"ram", false).unwrap();
    assert_eq!(read(&s, "m", 10, 3), b"ram");
    assert!(!s.tier_stats()[1].durable);
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn a_store_open_elsewhere_is_refused_by_name() {
    let config = two_tiers();
    let (dir, _s) = store(&config);
    let err = Store::open(dir.path(), &config).err().expect("refused");
    assert!(matches!(err, StorageError::InUse(_)), "{err}");
}
