use crate::scratch;
use futures::StreamExt;
use hypernix_events::{EmbeddedBus, EventLog, NewEvent};
use hypernix_state::{Op, RedbStore, StateStore, StateStoreExt, Table};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn reopening_keeps_documents_revision_and_event_ids() {
    let (_dir, path) = scratch();
    {
        let store = RedbStore::open(&path).unwrap();
        store
            .transact(vec![
                Op::put(Table::Desired, "web", json!({"cpus": 2})),
                Op::put(Table::Observed, "web", json!("running")),
            ])
            .unwrap();
        store.put_as(Table::Meta, "node", "alpha").unwrap();
        for n in 1..=3 {
            store
                .append(NewEvent::new("unit.started", "unit/web").with_payload(json!(n)))
                .unwrap();
        }
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.path(), path);
    assert_eq!(store.revision().unwrap(), 2);
    assert_eq!(
        store.get(Table::Desired, "web").unwrap(),
        Some(json!({"cpus": 2}))
    );
    assert_eq!(
        store.get(Table::Observed, "web").unwrap(),
        Some(json!("running"))
    );
    assert_eq!(
        store
            .get_as::<String>(Table::Meta, "node")
            .unwrap()
            .as_deref(),
        Some("alpha")
    );
    assert_eq!(store.last_id().unwrap(), Some(3));
    let payloads: Vec<_> = store
        .read_from(None, 10)
        .unwrap()
        .into_iter()
        .map(|event| event.payload)
        .collect();
    assert_eq!(payloads, vec![json!(1), json!(2), json!(3)]);

    // Ids and revisions go on from where they were.
    assert_eq!(
        store
            .append(NewEvent::new("unit.stopped", "unit/web"))
            .unwrap()
            .id,
        4
    );
    assert_eq!(store.put_as(Table::Meta, "node", "beta").unwrap(), 3);
}

#[tokio::test]
async fn a_bus_over_the_store_resumes_after_a_restart() {
    let (_dir, path) = scratch();
    {
        let bus = EmbeddedBus::new(Arc::new(RedbStore::open(&path).unwrap()));
        for n in 1..=5 {
            let event = bus
                .publish(NewEvent::new("unit.started", format!("unit/u{n}")))
                .await
                .unwrap();
            assert_eq!(event.id, n);
        }
    }
    let bus = EmbeddedBus::new(Arc::new(RedbStore::open(&path).unwrap()));
    let mut stream = Box::pin(bus.subscribe(Some(2)));
    bus.publish(NewEvent::new("unit.failed", "unit/u3"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push((event.id, event.kind.clone()));
    }
    assert_eq!(
        seen,
        vec![
            (3, "unit.started".to_owned()),
            (4, "unit.started".to_owned()),
            (5, "unit.started".to_owned()),
            (6, "unit.failed".to_owned()),
        ]
    );
}
