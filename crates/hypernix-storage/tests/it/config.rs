//! Building the store configuration from `hypervisor.storage`.

use hypernix_config::schema::storage::Storage;
use hypernix_storage::{StoreConfig, TierMedium};
use serde_json::json;

fn storage(v: serde_json::Value) -> Storage {
    serde_json::from_value(v).expect("storage parses")
}

#[test]
fn tiers_come_ordered_by_level_with_their_policies() {
    let s = storage(json!({
        "tiers": {
            "hdd": { "level": 2, "providers": [ { "type": "hdd-array", "capacity": "8Gi", "location": "/srv/hdd" } ] },
            "ram": { "level": 0, "providers": [ { "type": "memory", "capacity": "1Gi" } ],
                     "policies": { "promotion": { "threshold": { "accessFrequency": 5, "heatScore": 0.6 }, "batchSize": "64Mi" } } },
            "nvme": { "level": 1, "providers": [ { "type": "nvme-local", "capacity": "2Gi" }, { "type": "nvme-local", "capacity": "2Gi" } ],
                      "policies": { "demotion": { "enabled": false } } },
        },
        "fabric": { "heatMap": { "granularity": "4Mi", "halfLife": "10m" } },
    }));
    let c = StoreConfig::from_config(&s).unwrap();
    assert_eq!(c.granularity, 4 << 20);
    assert_eq!(c.half_life.as_secs(), 600);
    let names: Vec<_> = c.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ram", "nvme", "hdd"]);
    assert_eq!(c.tiers[0].medium, TierMedium::Memory);
    assert_eq!(c.tiers[1].capacity, 4 << 30);
    assert_eq!(c.tiers[1].demote, None);
    assert_eq!(
        c.tiers[2].medium,
        TierMedium::Directory(Some("/srv/hdd".into()))
    );
    let p = c.tiers[0].promote.unwrap();
    assert_eq!((p.count, p.score, p.batch), (5.0, 0.6, 64 << 20));
}

#[test]
fn no_tiers_means_one_disk_and_bad_granularity_is_refused() {
    let c = StoreConfig::from_config(&storage(json!({}))).unwrap();
    assert_eq!((c.granularity, c.tiers.len()), (1 << 20, 1));
    let bad = storage(json!({ "fabric": { "heatMap": { "granularity": "3Ki" } } }));
    let err = StoreConfig::from_config(&bad).unwrap_err().to_string();
    assert!(err.contains("granularity"), "{err}");
    let object = storage(
        json!({ "tiers": { "s3": { "level": 3, "providers": [ { "type": "object", "capacity": "1Ti" } ] } } }),
    );
    let err = StoreConfig::from_config(&object).unwrap_err().to_string();
    assert!(err.contains("\"s3\""), "{err}");
}
