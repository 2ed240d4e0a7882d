//! Property tests of dependency resolution over random graphs.

use std::collections::{BTreeMap, BTreeSet};

use hypernix_compose::ComposeError;
use hypernix_compose::resolve::resolve;
use hypernix_config::schema::composition::{BlueprintComponent, Component};
use proptest::prelude::*;
use serde_json::json;

/// Components `c0…c{n-1}`; `requires[i]` lists indices below `i`, so the graph is a DAG.
fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..24).prop_flat_map(|n| {
        (0..n)
            .map(|i| proptest::collection::btree_set(0..i.max(1), 0..=i.min(4)))
            .collect::<Vec<_>>()
            .prop_map(|sets| {
                sets.into_iter()
                    .enumerate()
                    .map(|(i, s)| s.into_iter().filter(|&d| d < i).collect())
                    .collect()
            })
    })
}

fn library(requires: &[Vec<usize>]) -> BTreeMap<String, Component> {
    requires
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let names: Vec<String> = r.iter().map(|d| format!("c{d}")).collect();
            let c = json!({ "type": "base", "compatibility": { "requires": names } });
            (format!("c{i}"), serde_json::from_value(c).unwrap())
        })
        .collect()
}

fn entries(n: usize) -> Vec<BlueprintComponent> {
    // Listed in reverse, so the order must come from the edges, not the listing.
    (0..n)
        .rev()
        .map(|i| BlueprintComponent {
            component: format!("c{i}"),
            alias: None,
            inputs: Default::default(),
        })
        .collect()
}

/// Every `(a, b)` where `a` reaches `b` through requirements.
fn reach(requires: &[Vec<usize>]) -> BTreeSet<(usize, usize)> {
    let mut out = BTreeSet::new();
    for start in 0..requires.len() {
        let mut stack = requires[start].clone();
        while let Some(d) = stack.pop() {
            if out.insert((start, d)) {
                stack.extend(&requires[d]);
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn a_dag_resolves_in_an_order_that_respects_every_edge(requires in dag()) {
        let lib = library(&requires);
        let listed = entries(requires.len());
        let r = resolve(&lib, "b", &listed).unwrap();
        prop_assert_eq!(r.members.len(), requires.len());
        let pos: BTreeMap<&str, usize> =
            r.members.iter().enumerate().map(|(i, m)| (m.alias.as_str(), i)).collect();
        for (i, deps) in requires.iter().enumerate() {
            for d in deps {
                let (dep, me) = (format!("c{d}"), format!("c{i}"));
                prop_assert!(pos[dep.as_str()] < pos[me.as_str()], "{} before {}", dep, me);
            }
        }
        // Deterministic: the same input gives the same order.
        let again = resolve(&lib, "b", &listed).unwrap();
        let a: Vec<_> = r.members.iter().map(|m| &m.alias).collect();
        let b: Vec<_> = again.members.iter().map(|m| &m.alias).collect();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn a_single_entry_pulls_in_exactly_what_it_reaches(requires in dag()) {
        let lib = library(&requires);
        let top = requires.len() - 1;
        let entry = vec![BlueprintComponent {
            component: format!("c{top}"),
            alias: None,
            inputs: Default::default(),
        }];
        let r = resolve(&lib, "b", &entry).unwrap();
        let want = reach(&requires).iter().filter(|(a, _)| *a == top).count() + 1;
        prop_assert_eq!(r.members.len(), want);
    }

    #[test]
    fn a_back_edge_is_a_cycle(requires in dag(), pick in any::<prop::sample::Index>()) {
        let pairs: Vec<_> = reach(&requires).into_iter().collect();
        prop_assume!(!pairs.is_empty());
        let (a, b) = pairs[pick.index(pairs.len())];
        let mut with_back = requires.clone();
        with_back[b].push(a);
        let lib = library(&with_back);
        match resolve(&lib, "b", &entries(requires.len())) {
            Err(ComposeError::Cycle { chain }) => {
                prop_assert!(chain.len() >= 3);
                prop_assert_eq!(chain.first(), chain.last());
                // Each step of the chain is a requirement.
                for w in chain.windows(2) {
                    let from: usize = w[0][1..].parse().unwrap();
                    let to: usize = w[1][1..].parse().unwrap();
                    prop_assert!(with_back[from].contains(&to), "{:?}", chain);
                }
            }
            other => prop_assert!(false, "expected a cycle, got {:?}", other.map(|r| r.members.len())),
        }
    }
}
