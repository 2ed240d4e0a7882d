use crate::new_store;
use hypernix_state::{Op, StateError, StateStore, Table};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn many_puts(table: Table, prefix: &str, count: usize) -> Vec<Op> {
    (0..count)
        .map(|i| Op::put(table, format!("{prefix}{i:05}"), json!({ "i": i })))
        .collect()
}

#[test]
fn a_failing_transaction_leaves_nothing_behind() {
    let (_dir, store) = new_store();
    store
        .transact(many_puts(Table::Desired, "old", 10))
        .unwrap();

    // A thousand puts and deletes across every table, then one op that cannot apply.
    let mut ops = many_puts(Table::Desired, "new", 1000);
    ops.extend(many_puts(Table::Observed, "new", 1000));
    ops.extend(many_puts(Table::Meta, "new", 1000));
    ops.push(Op::delete(Table::Desired, "old00003"));
    ops.push(Op::put(Table::Meta, "", json!("bad key")));
    let err = store.transact(ops).unwrap_err();
    assert!(matches!(err, StateError::BadKey { .. }), "{err:?}");

    assert_eq!(store.revision().unwrap(), 1);
    let desired = store.list(Table::Desired).unwrap();
    assert_eq!(desired.len(), 10);
    assert!(desired.iter().all(|(key, _)| key.starts_with("old")));
    assert!(store.list(Table::Observed).unwrap().is_empty());
    assert!(store.list(Table::Meta).unwrap().is_empty());

    // The same ops without the bad one apply together, as one revision.
    let mut ops = many_puts(Table::Desired, "new", 1000);
    ops.extend(many_puts(Table::Observed, "new", 1000));
    ops.push(Op::delete(Table::Desired, "old00003"));
    assert_eq!(store.transact(ops).unwrap(), 2);
    assert_eq!(store.list(Table::Desired).unwrap().len(), 1009);
    assert_eq!(store.list(Table::Observed).unwrap().len(), 1000);
}

#[test]
fn readers_never_see_half_a_transaction() {
    const BATCH: usize = 50;
    const BATCHES: usize = 30;
    let (_dir, store) = new_store();
    let store = Arc::new(store);
    let done = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        move || {
            let mut looks = 0;
            while !done.load(Ordering::SeqCst) {
                let observed = store.list(Table::Observed).unwrap().len();
                let desired = store.list(Table::Desired).unwrap().len();
                assert_eq!(desired % BATCH, 0, "saw part of a transaction");
                // Read later, so at least as new.
                assert!(desired / BATCH >= observed);
                looks += 1;
            }
            looks
        }
    });
    for batch in 0..BATCHES {
        let mut ops = many_puts(Table::Desired, &format!("b{batch:03}-"), BATCH);
        ops.push(Op::put(
            Table::Observed,
            format!("b{batch:03}"),
            json!(batch),
        ));
        store.transact(ops).unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(store.list(Table::Desired).unwrap().len(), BATCH * BATCHES);
    assert_eq!(store.revision().unwrap(), BATCHES as u64);
}
