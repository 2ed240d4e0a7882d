//! The disk decisions of the storage engine, against a real store and event log.

use std::sync::Arc;

use hypernix_config::schema::compute::StorageRequest;
use hypernix_config::schema::storage::Storage;
use hypernix_events::{EmbeddedBus, EventBus};
use hypernix_state::RedbStore;
use hypernix_vmm::DiskSource;
use serde_json::json;

use super::{State, StorageEngine, volume_name};
use crate::layout::Layout;

const MIB: u64 = 1 << 20;

struct Fixture {
    _dir: tempfile::TempDir,
    layout: Layout,
    bus: Arc<dyn EventBus>,
    engine: StorageEngine,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let store = Arc::new(RedbStore::open(layout.store()).unwrap());
    Fixture {
        bus: Arc::new(EmbeddedBus::new(store)),
        layout,
        _dir: dir,
        engine: StorageEngine::default(),
    }
}

fn tiers(f: &Fixture) -> Storage {
    let loc = f.layout.root().join("tiers").display().to_string();
    serde_json::from_value(json!({
        "tiers": {
            "ram": { "level": 0, "providers": [ { "type": "memory", "capacity": "64Mi" } ] },
            "disk": { "level": 1, "providers": [ { "type": "ssd-array", "capacity": "1Gi", "location": loc } ] },
            "cold": { "level": 2, "providers": [ { "type": "hdd-array", "capacity": "1Gi" } ] },
        },
        "fabric": { "movement": { "engine": "triggered" } },
    }))
    .unwrap()
}

fn disk(size: &str, tier: Option<u32>) -> StorageRequest {
    serde_json::from_value(json!({ "name": "data", "capability": "x", "size": size, "tier": tier }))
        .unwrap()
}

#[tokio::test]
async fn without_tiers_disks_are_sparse_files_and_a_tier_is_an_error() {
    let f = fixture();
    f.engine
        .configure(&Storage::default(), &f.layout, &f.bus)
        .await;
    let (source, warning) = f.engine.disk(&f.layout, "u", &disk("8Mi", None)).unwrap();
    assert!(matches!(source, DiskSource::File { .. }), "{source:?}");
    assert_eq!(warning, None);
    assert_eq!(
        std::fs::metadata(f.layout.disk("u", "data")).unwrap().len(),
        8 * MIB
    );
    let err = f
        .engine
        .disk(&f.layout, "u", &disk("8Mi", Some(1)))
        .unwrap_err();
    assert!(err.contains("hypervisor.storage.tiers is empty"), "{err}");
    assert!(f.engine.volumes().unwrap_err().contains("no storage tiers"));
}

#[tokio::test]
async fn with_tiers_a_disk_is_a_volume_that_grows_and_never_shrinks() {
    let f = fixture();
    f.engine.configure(&tiers(&f), &f.layout, &f.bus).await;
    assert!(f.layout.root().join("tiers").is_dir(), "location created");
    let (source, warning) = f.engine.disk(&f.layout, "u", &disk("8Mi", None)).unwrap();
    assert_eq!(
        source,
        DiskSource::Nbd {
            socket: f.layout.nbd_socket(),
            export: "u.data".into()
        }
    );
    assert_eq!(warning, None);
    let size = |f: &Fixture| f.engine.volumes().unwrap()[0].size;
    assert_eq!(size(&f), 8 * MIB);
    f.engine.disk(&f.layout, "u", &disk("16Mi", None)).unwrap();
    assert_eq!(size(&f), 16 * MIB);
    let (_, warning) = f.engine.disk(&f.layout, "u", &disk("4Mi", None)).unwrap();
    assert!(warning.unwrap().contains("never shrink"));
    assert_eq!(size(&f), 16 * MIB);
    let tiers = f.engine.tiers().unwrap();
    let names: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ram", "disk", "cold"]);
    assert!(!tiers[0].durable && tiers[1].durable && tiers[2].durable);
    // Nothing is hot yet: a triggered round moves nothing.
    assert!(f.engine.rebalance().await.unwrap().is_empty());
}

#[tokio::test]
async fn no_rounds_without_movement_or_heat() {
    for off in ["movement", "heatMap"] {
        let f = fixture();
        let mut config = tiers(&f);
        match off {
            "movement" => config.fabric.movement.enable = false,
            _ => config.fabric.heat_map.enable = false,
        }
        f.engine.configure(&config, &f.layout, &f.bus).await;
        let err = f.engine.rebalance().await.unwrap_err();
        assert!(err.contains("enable both"), "{err}");
    }
}

#[tokio::test]
async fn a_disks_tier_must_be_a_level_and_pins_its_volume() {
    let f = fixture();
    f.engine.configure(&tiers(&f), &f.layout, &f.bus).await;
    let err = f
        .engine
        .disk(&f.layout, "u", &disk("8Mi", Some(7)))
        .unwrap_err();
    assert!(
        err.contains("storage data of unit u: tier 7") && err.contains("levels: 0, 1, 2"),
        "{err}"
    );
    let (_, w) = f
        .engine
        .disk(&f.layout, "u", &disk("8Mi", Some(0)))
        .unwrap();
    assert!(w.unwrap().contains("memory tier"));
    let (_, w) = f
        .engine
        .disk(&f.layout, "v", &disk("8Mi", Some(2)))
        .unwrap();
    assert_eq!(w, None, "level 2 pins the volume");
    {
        let State::Ready(e) = &*f.engine.state.lock().unwrap() else {
            panic!("engine not ready");
        };
        let name = volume_name("v", "data");
        e.store.write(&name, 0, b"x", false).unwrap();
        let t = e.store.tier_stats();
        let cold = t.iter().find(|t| t.name == "cold").unwrap();
        assert_eq!(cold.extents, 1, "the pinned volume's extent is on level 2");
    }
    let (_, w) = f
        .engine
        .disk(&f.layout, "w", &disk("8Mi", Some(1)))
        .unwrap();
    assert_eq!(w, None, "level 1 is storage.defaultTier");
}

#[tokio::test]
async fn a_sparse_file_from_before_tiers_stays_a_file() {
    let f = fixture();
    f.engine
        .configure(&Storage::default(), &f.layout, &f.bus)
        .await;
    f.engine.disk(&f.layout, "u", &disk("8Mi", None)).unwrap();
    f.engine.configure(&tiers(&f), &f.layout, &f.bus).await;
    let (source, warning) = f.engine.disk(&f.layout, "u", &disk("8Mi", None)).unwrap();
    assert!(matches!(source, DiskSource::File { .. }), "{source:?}");
    assert!(warning.unwrap().contains("sparse file"));
    assert!(f.engine.volumes().unwrap().is_empty());
}

#[tokio::test]
async fn only_memory_tiers_or_a_bad_bandwidth_fail_the_engine_with_an_event() {
    let f = fixture();
    let memory: Storage = serde_json::from_value(json!({
        "tiers": { "ram": { "level": 0, "providers": [ { "type": "memory", "capacity": "64Mi" } ] } },
    }))
    .unwrap();
    f.engine.configure(&memory, &f.layout, &f.bus).await;
    let err = f
        .engine
        .disk(&f.layout, "u", &disk("8Mi", None))
        .unwrap_err();
    assert!(
        err.contains("every tier in hypervisor.storage.tiers is a memory tier"),
        "{err}"
    );
    let mut bad = tiers(&f);
    bad.fabric.movement.bandwidth.limit = Some("fast".into());
    f.engine.configure(&bad, &f.layout, &f.bus).await;
    let err = f.engine.tiers().unwrap_err();
    assert!(
        err.contains("bandwidth.limit \"fast\" is not a rate"),
        "{err}"
    );
    let events = f.bus.read(None, 100).await.unwrap();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "storage.failed")
        .collect();
    assert_eq!(failed.len(), 2, "{events:?}");
}

#[tokio::test]
async fn a_failed_engine_opens_once_its_location_is_fixed() {
    let f = fixture();
    let blocker = f.layout.root().join("tiers");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let config = tiers(&f);
    f.engine.configure(&config, &f.layout, &f.bus).await;
    let err = f
        .engine
        .disk(&f.layout, "u", &disk("8Mi", None))
        .unwrap_err();
    assert!(
        err.contains("tier disk: cannot create its location"),
        "{err}"
    );
    std::fs::remove_file(&blocker).unwrap();
    f.engine.configure(&config, &f.layout, &f.bus).await;
    let (source, _) = f.engine.disk(&f.layout, "u", &disk("8Mi", None)).unwrap();
    assert!(matches!(source, DiskSource::Nbd { .. }), "{source:?}");
}
