//! Properties over random clusters, checked by a naive, independent reading of the rules.

use super::tests::{GIB, node};
use super::*;
use hypernix_config::schema::compute::{Affinity, AffinityKind, Spread};
use proptest::prelude::*;

const SCOPES: [TopologyScope; 4] = [
    TopologyScope::Host,
    TopologyScope::Rack,
    TopologyScope::Zone,
    TopologyScope::Region,
];

fn label() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop_oneof![
        Just(BTreeMap::new()),
        (0..3u8).prop_map(|a| [("app".to_string(), format!("a{a}"))].into()),
        (0..3u8, 0..2u8).prop_map(|(a, t)| {
            [
                ("app".to_string(), format!("a{a}")),
                ("tier".to_string(), format!("t{t}")),
            ]
            .into()
        }),
    ]
}

fn affinity() -> impl Strategy<Value = Affinity> {
    let kind = prop_oneof![
        Just(AffinityKind::Required),
        Just(AffinityKind::Preferred),
        Just(AffinityKind::Anti)
    ];
    (kind, 0..4usize, label(), 1..200u32).prop_map(|(kind, s, label_selector, weight)| Affinity {
        kind,
        scope: SCOPES[s],
        label_selector,
        weight,
    })
}

fn units() -> impl Strategy<Value = Vec<Unit>> {
    let unit = (
        0..600u64,
        0..(2 * GIB),
        label(),
        prop::collection::vec(affinity(), 0..3),
        prop::option::of((0..4usize, 1..4u32)),
    );
    prop::collection::vec(unit, 0..25).prop_map(|units| {
        let units = units.into_iter().enumerate();
        units
            .map(|(i, (compute, memory, labels, affinity, spread))| Unit {
                name: format!("u{i}"),
                compute,
                memory,
                labels,
                placement: Placement {
                    affinity,
                    spread: spread.map(|(s, maximum)| Spread {
                        topology: scope_name(SCOPES[s]).into(),
                        maximum,
                    }),
                },
            })
            .collect()
    })
}

fn health() -> impl Strategy<Value = Health> {
    prop_oneof![
        4 => Just(Health::Alive),
        1 => Just(Health::Suspect),
        1 => (0..100u64).prop_map(|s| Health::Dead { since: Duration::from_secs(s) }),
        1 => Just(Health::Fenced),
    ]
}

fn nodes() -> impl Strategy<Value = Vec<Node>> {
    let fields = (
        any::<bool>(),
        100..2000u64,
        1..8u64,
        0..3u8,
        prop::option::of(0..3u8),
        prop::option::of(0..2u8),
        health(),
    );
    prop::collection::vec(fields, 1..8).prop_map(|nodes| {
        let nodes = nodes.into_iter().enumerate();
        nodes
            .map(|(i, (idle, compute, memory, zone, rack, region, health))| {
                let mut n = node(i as NodeId + 1, &format!("z{zone}"));
                n.runs_units = !idle || i == 0;
                n.compute = compute;
                n.memory = memory * GIB;
                n.location.rack = rack.map(|r| format!("r{r}"));
                n.location.region = region.map(|r| format!("g{r}"));
                n.health = health;
                n
            })
            .collect()
    })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::LeastLoaded),
        Just(Algorithm::BinPacking),
        Just(Algorithm::Spread),
        any::<u64>().prop_map(|seed| Algorithm::Random { seed }),
    ]
}

fn alive(mut nodes: Vec<Node>) -> Vec<Node> {
    nodes.iter_mut().for_each(|n| n.health = Health::Alive);
    nodes
}

fn domain(n: &Node, scope: TopologyScope) -> Option<String> {
    match scope {
        TopologyScope::Host => Some(n.id.to_string()),
        TopologyScope::Rack => n.location.rack.clone(),
        TopologyScope::Zone => Some(n.location.zone.clone()),
        TopologyScope::Region => n.location.region.clone(),
    }
}

/// Capacity, anti-affinity and spread maximums of a whole placement.
fn check(c: &Cluster, placement: &BTreeMap<String, NodeId>) -> Result<(), String> {
    let node = |id: NodeId| c.nodes().iter().find(|n| n.id == id).unwrap();
    let on: Vec<(&Unit, &Node)> = c
        .units()
        .iter()
        .filter_map(|u| Some((u, node(*placement.get(&u.name)?))))
        .collect();
    for n in c.nodes() {
        let units = on.iter().filter(|(_, m)| m.id == n.id);
        let (compute, memory) = units.fold((0, 0), |(c, m), (u, _)| (c + u.compute, m + u.memory));
        if compute > n.compute || memory > n.memory {
            return Err(format!("node {} holds {compute}/{memory}", n.id));
        }
    }
    for &(u, n) in &on {
        for rule in u
            .placement
            .affinity
            .iter()
            .filter(|r| r.kind == AffinityKind::Anti)
        {
            let hit = on.iter().find(|(v, m)| {
                v.name != u.name
                    && domain(m, rule.scope) == domain(n, rule.scope)
                    && rule
                        .label_selector
                        .iter()
                        .all(|(k, val)| v.labels.get(k) == Some(val))
            });
            if let Some((v, _)) = hit {
                return Err(format!("{} and {} break {rule:?}", u.name, v.name));
            }
        }
        if let Some(spread) = &u.placement.spread {
            let scope = super::parse_scope(&spread.topology).unwrap();
            let count = on
                .iter()
                .filter(|(v, m)| v.labels == u.labels && domain(m, scope) == domain(n, scope))
                .count();
            if count > spread.maximum as usize {
                return Err(format!("{} has {count} in its {scope:?}", u.name));
            }
        }
    }
    Ok(())
}

/// Every placed unit's required affinities have a match (itself included) in its domain.
fn check_required(c: &Cluster, placement: &BTreeMap<String, NodeId>) -> Result<(), String> {
    let node = |id: NodeId| c.nodes().iter().find(|n| n.id == id).unwrap();
    let on: Vec<(&Unit, &Node)> = c
        .units()
        .iter()
        .filter_map(|u| Some((u, node(*placement.get(&u.name)?))))
        .collect();
    for &(u, n) in &on {
        for rule in u
            .placement
            .affinity
            .iter()
            .filter(|r| r.kind == AffinityKind::Required)
        {
            let met = on.iter().any(|(v, m)| {
                domain(m, rule.scope) == domain(n, rule.scope)
                    && rule
                        .label_selector
                        .iter()
                        .all(|(k, val)| v.labels.get(k) == Some(val))
            });
            if !met {
                return Err(format!("{} breaks {rule:?}", u.name));
            }
        }
    }
    Ok(())
}

fn takes_units(c: &Cluster, id: NodeId) -> bool {
    c.nodes()
        .iter()
        .any(|n| n.id == id && n.runs_units && n.health == Health::Alive)
}

proptest! {
    #[test]
    fn place_keeps_capacity_anti_affinity_and_spread(
        nodes in nodes(), units in units(), algorithm in algorithm()
    ) {
        let c = Cluster::new(nodes, units, BTreeMap::new()).unwrap();
        let placed = place(&c, algorithm);
        prop_assert_eq!(placed.placed.len() + placed.unplaced.len(), c.units().len());
        prop_assert!(placed.placed.values().all(|&n| takes_units(&c, n)));
        if let Err(e) = check(&c, &placed.placed).and(check_required(&c, &placed.placed)) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn rebalance_keeps_every_rule_and_never_raises_the_highest_load(
        nodes in nodes(), units in units(), algorithm in algorithm(), threshold in 0.0..1.0f64
    ) {
        let before = Cluster::new(nodes.clone(), units.clone(), BTreeMap::new()).unwrap();
        let mut placement = place(&before, algorithm).placed;
        let c = Cluster::new(nodes, units, placement.clone()).unwrap();
        let highest = |c: &Cluster, placement: &BTreeMap<String, NodeId>| {
            let loads = c.nodes().iter().filter(|n| takes_units(c, n.id)).map(|n| {
                let on = c.units().iter().filter(|u| placement.get(&u.name) == Some(&n.id));
                let (cu, mem) = on.fold((0, 0), |(a, b), u| (a + u.compute, b + u.memory));
                (cu as f64 / n.compute as f64).max(mem as f64 / n.memory as f64)
            });
            loads.fold(0.0f64, f64::max)
        };
        let moves = rebalance(&c, threshold).unwrap();
        let names: BTreeSet<&String> = moves.iter().map(|m| &m.unit).collect();
        prop_assert_eq!(names.len(), moves.len(), "a unit moves at most once");
        for m in &moves {
            prop_assert!(takes_units(&c, m.to) && m.to != m.from, "{:?}", m);
            prop_assert_eq!(placement.insert(m.unit.clone(), m.to), Some(m.from));
        }
        prop_assert!(highest(&c, &placement) <= highest(&c, c.placement()));
        if let Err(e) = check(&c, &placement).and(check_required(&c, &placement)) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn place_is_deterministic_whatever_the_input_order(
        nodes in nodes(), units in units(), algorithm in algorithm()
    ) {
        let c = Cluster::new(nodes.clone(), units.clone(), BTreeMap::new()).unwrap();
        let first = place(&c, algorithm);
        prop_assert_eq!(&first, &place(&c, algorithm));
        let nodes = nodes.into_iter().rev().collect();
        let units = units.into_iter().rev().collect();
        let r = Cluster::new(nodes, units, BTreeMap::new()).unwrap();
        prop_assert_eq!(first, place(&r, algorithm));
    }

    #[test]
    fn failover_moves_only_due_units_and_only_to_healthy_nodes(
        nodes in nodes(), units in units(), algorithm in algorithm(), now in 0..200u64
    ) {
        let before = Cluster::new(alive(nodes.clone()), units.clone(), BTreeMap::new()).unwrap();
        let mut placement = place(&before, algorithm).placed;
        let c = Cluster::new(nodes, units, placement.clone()).unwrap();
        let timeouts = Timeouts::new(Duration::from_secs(10), Duration::from_secs(30)).unwrap();
        let f = failover(&c, Duration::from_secs(now), &timeouts, algorithm);
        for m in &f.moves {
            prop_assert!(takes_units(&c, m.to), "{:?} goes to a node that takes no units", m);
            let from = c.nodes().iter().find(|n| n.id == m.from).unwrap();
            let due = match from.health {
                Health::Fenced => true,
                Health::Dead { since } => now >= since.as_secs() + 30,
                _ => false,
            };
            prop_assert!(due, "{:?} leaves a node that is not due", m);
            placement.insert(m.unit.clone(), m.to);
        }
        for u in &f.unplaced {
            placement.remove(&u.unit);
        }
        if let Err(e) = check(&c, &placement) {
            prop_assert!(false, "{}", e);
        }
    }

    #[test]
    fn fence_and_failover_never_run_a_unit_twice(
        nodes in nodes(), units in units(), victim in any::<prop::sample::Index>(),
        last_quorum in 0..1000u64, heard_after in 0..5u64, fence_s in 1..20u64, extra in 1..30u64,
    ) {
        let nodes = alive(nodes);
        let before = Cluster::new(nodes.clone(), units.clone(), BTreeMap::new()).unwrap();
        let mut placement = place(&before, Algorithm::LeastLoaded).placed;
        let victim = nodes[victim.index(nodes.len())].id;
        let mut nodes = nodes;
        let since = Duration::from_secs(last_quorum + heard_after);
        nodes.iter_mut().filter(|n| n.id == victim).for_each(|n| n.health = Health::Dead { since });
        let on_victim: Vec<String> = placement
            .iter()
            .filter(|&(_, &n)| n == victim)
            .map(|(u, _)| u.clone())
            .collect();
        let timeouts = Timeouts::new(Duration::from_secs(fence_s), Duration::from_secs(fence_s + extra)).unwrap();
        let end = last_quorum + heard_after + fence_s + extra + 2;
        for t in last_quorum..=end {
            let now = Duration::from_secs(t);
            let c = Cluster::new(nodes.clone(), units.clone(), placement.clone()).unwrap();
            let f = failover(&c, now, &timeouts, Algorithm::LeastLoaded);
            for m in f.moves {
                placement.insert(m.unit, m.to);
            }
            for u in f.unplaced {
                placement.remove(&u.unit);
            }
            let victim_runs = fence(Duration::from_secs(last_quorum), now, &timeouts) != FenceDecision::Stop;
            for unit in &on_victim {
                let elsewhere = placement.get(unit).is_some_and(|&n| n != victim);
                prop_assert!(!(victim_runs && elsewhere), "{} runs on two nodes at {} s", unit, t);
            }
        }
        prop_assert!(placement.values().all(|&n| n != victim), "every unit left the dead node");
    }
}
