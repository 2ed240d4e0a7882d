use crate::new_store;
use hypernix_events::{EventLog, NewEvent};
use hypernix_state::{MAX_KEY_LEN, Op, StateError, StateStore, StateStoreExt, Table};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit {
    cpus: u32,
    memory: String,
}

#[test]
fn new_store_is_empty_at_revision_zero() {
    let (_dir, store) = new_store();
    assert_eq!(store.revision().unwrap(), 0);
    for table in Table::ALL {
        assert!(store.list(table).unwrap().is_empty());
        assert_eq!(store.get(table, "web").unwrap(), None);
    }
    assert_eq!(store.last_id().unwrap(), None);
    assert!(store.read_from(None, 10).unwrap().is_empty());
}

#[test]
fn puts_and_deletes_round_trip_and_bump_the_revision() {
    let (_dir, store) = new_store();
    let web = json!({"cpus": 2, "memory": "1G", "tags": ["a", "b"], "nested": {"x": null}});
    let rev = store
        .transact(vec![
            Op::put(Table::Desired, "web", web.clone()),
            Op::put(Table::Desired, "db", json!(1.5)),
            Op::put(Table::Observed, "web", json!("running")),
            Op::put(Table::Meta, "généré/clé", json!(null)),
        ])
        .unwrap();
    assert_eq!(rev, 1);
    assert_eq!(store.get(Table::Desired, "web").unwrap(), Some(web.clone()));
    assert_eq!(
        store.get(Table::Observed, "web").unwrap(),
        Some(json!("running"))
    );
    assert_eq!(
        store.get(Table::Meta, "généré/clé").unwrap(),
        Some(json!(null))
    );
    assert_eq!(
        store.list(Table::Desired).unwrap(),
        vec![("db".to_owned(), json!(1.5)), ("web".to_owned(), web)]
    );

    let rev = store
        .transact(vec![
            Op::delete(Table::Desired, "db"),
            Op::delete(Table::Desired, "never-there"),
            Op::put(Table::Desired, "web", json!({"cpus": 4})),
        ])
        .unwrap();
    assert_eq!(rev, 2);
    assert_eq!(
        store.list(Table::Desired).unwrap(),
        vec![("web".to_owned(), json!({"cpus": 4}))]
    );
    assert_eq!(store.revision().unwrap(), 2);
}

#[test]
fn ops_apply_in_order_within_a_transaction() {
    let (_dir, store) = new_store();
    store
        .transact(vec![
            Op::put(Table::Meta, "k", json!(1)),
            Op::delete(Table::Meta, "k"),
            Op::put(Table::Meta, "k", json!(3)),
            Op::put(Table::Meta, "gone", json!(4)),
            Op::delete(Table::Meta, "gone"),
        ])
        .unwrap();
    assert_eq!(
        store.list(Table::Meta).unwrap(),
        vec![("k".to_owned(), json!(3))]
    );
}

#[test]
fn an_empty_transaction_changes_nothing() {
    let (_dir, store) = new_store();
    store.put_as(Table::Meta, "a", &1).unwrap();
    assert_eq!(store.transact(Vec::new()).unwrap(), 1);
    assert_eq!(store.revision().unwrap(), 1);
}

#[test]
fn typed_helpers_round_trip_and_name_a_mismatch() {
    let (_dir, store) = new_store();
    let unit = Unit {
        cpus: 2,
        memory: "2G".into(),
    };
    assert_eq!(store.put_as(Table::Desired, "web", &unit).unwrap(), 1);
    assert_eq!(
        store.get_as::<Unit>(Table::Desired, "web").unwrap(),
        Some(unit)
    );
    assert_eq!(store.get_as::<Unit>(Table::Desired, "db").unwrap(), None);

    store.put_as(Table::Desired, "db", "not a unit").unwrap();
    let err = store.get_as::<Unit>(Table::Desired, "db").unwrap_err();
    assert!(matches!(err, StateError::Decode { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("desired/db"), "{message}");
    assert!(message.contains("Unit"), "{message}");
}

#[test]
fn typed_helpers_work_through_a_trait_object() {
    let (_dir, store) = new_store();
    let store: &dyn StateStore = &store;
    store.put_as(Table::Observed, "web", &[1, 2, 3]).unwrap();
    assert_eq!(
        store.get_as::<Vec<u8>>(Table::Observed, "web").unwrap(),
        Some(vec![1, 2, 3])
    );
}

#[test]
fn empty_and_overlong_keys_are_refused() {
    let (_dir, store) = new_store();
    let long = "k".repeat(MAX_KEY_LEN + 1);
    for key in ["", long.as_str()] {
        let err = store
            .transact(vec![Op::put(Table::Desired, key, json!(1))])
            .unwrap_err();
        assert!(matches!(err, StateError::BadKey { .. }), "{err:?}");
        assert!(err.to_string().contains("table desired"), "{err}");
    }
    let longest = "k".repeat(MAX_KEY_LEN);
    store
        .transact(vec![Op::put(Table::Desired, longest.as_str(), json!(1))])
        .unwrap();
    assert_eq!(store.get(Table::Desired, &longest).unwrap(), Some(json!(1)));
}

#[test]
fn ops_serialize_for_a_replicated_log() {
    let ops = vec![
        Op::put(Table::Desired, "web", json!({"cpus": 2})),
        Op::delete(Table::Observed, "web"),
    ];
    let text = serde_json::to_value(&ops).unwrap();
    assert_eq!(
        text,
        json!([
            {"op": "put", "table": "desired", "key": "web", "value": {"cpus": 2}},
            {"op": "delete", "table": "observed", "key": "web"},
        ])
    );
    assert_eq!(serde_json::from_value::<Vec<Op>>(text).unwrap(), ops);
}

#[test]
fn events_get_increasing_ids_and_read_back_in_pages() {
    let (_dir, store) = new_store();
    for n in 1..=10 {
        let event = store
            .append(
                NewEvent::new("unit.started", format!("unit/u{n}"))
                    .with_payload(json!({"n": n}))
                    .with_correlation_id("pass-1"),
            )
            .unwrap();
        assert_eq!(event.id, n);
    }
    assert_eq!(store.last_id().unwrap(), Some(10));
    let all = store.read_from(None, 100).unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[3].subject, "unit/u4");
    assert_eq!(all[3].payload, json!({"n": 4}));
    assert_eq!(all[3].correlation_id.as_deref(), Some("pass-1"));
    let page: Vec<u64> = store
        .read_from(Some(3), 4)
        .unwrap()
        .iter()
        .map(|event| event.id)
        .collect();
    assert_eq!(page, vec![4, 5, 6, 7]);
    assert!(store.read_from(Some(10), 5).unwrap().is_empty());
    assert!(store.read_from(Some(u64::MAX), 5).unwrap().is_empty());
    assert!(store.read_from(None, 0).unwrap().is_empty());
    // Events are not state: they leave the revision alone.
    assert_eq!(store.revision().unwrap(), 0);
}
