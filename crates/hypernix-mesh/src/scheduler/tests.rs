use super::*;
use hypernix_config::schema::compute::{Affinity, AffinityKind, Spread};

pub(super) const GIB: u64 = 1 << 30;

pub(super) fn node(id: NodeId, zone: &str) -> Node {
    Node {
        id,
        runs_units: true,
        compute: 1000,
        memory: 8 * GIB,
        location: NodeLocation {
            zone: zone.into(),
            rack: None,
            region: None,
        },
        health: Health::Alive,
    }
}

fn unit(name: &str, compute: u64, app: &str) -> Unit {
    Unit {
        name: name.into(),
        compute,
        memory: GIB,
        labels: [("app".to_string(), app.to_string())].into(),
        placement: Placement::default(),
    }
}

fn rule(kind: AffinityKind, scope: TopologyScope, app: &str) -> Affinity {
    Affinity {
        kind,
        scope,
        label_selector: [("app".to_string(), app.to_string())].into(),
        weight: 100,
    }
}

fn with(mut unit: Unit, affinity: Affinity) -> Unit {
    unit.placement.affinity.push(affinity);
    unit
}

fn spread(mut unit: Unit, topology: &str, maximum: u32) -> Unit {
    unit.placement.spread = Some(Spread {
        topology: topology.into(),
        maximum,
    });
    unit
}

fn cluster(nodes: Vec<Node>, units: Vec<Unit>, placement: &[(&str, NodeId)]) -> Cluster {
    let placement = placement.iter().map(|&(u, n)| (u.to_string(), n)).collect();
    Cluster::new(nodes, units, placement).expect("valid cluster")
}

fn placed(c: &Cluster, algorithm: Algorithm) -> Vec<(String, NodeId)> {
    let placed = place(c, algorithm);
    assert_eq!(placed.unplaced, vec![], "all units fit");
    placed.placed.into_iter().collect()
}

fn pairs(expected: &[(&str, NodeId)]) -> Vec<(String, NodeId)> {
    expected.iter().map(|&(u, n)| (u.to_string(), n)).collect()
}

fn reasons(c: &Cluster, algorithm: Algorithm) -> Vec<String> {
    place(c, algorithm)
        .unplaced
        .into_iter()
        .map(|u| u.reason)
        .collect()
}

#[test]
fn least_loaded_takes_the_emptiest_node_and_the_lowest_id_among_equals() {
    let nodes = vec![node(1, "a"), node(2, "a"), node(3, "a")];
    let units = vec![
        unit("busy", 500, "x"),
        unit("u1", 300, "y"),
        unit("u2", 300, "z"),
    ];
    let c = cluster(nodes, units, &[("busy", 1)]);
    let got = placed(&c, Algorithm::LeastLoaded);
    assert_eq!(got, pairs(&[("u1", 2), ("u2", 3)]));
}

#[test]
fn bin_packing_fills_the_fullest_node_that_fits() {
    let nodes = vec![node(1, "a"), node(2, "a"), node(3, "a")];
    let units = vec![
        unit("big", 700, "x"),
        unit("mid", 200, "x"),
        unit("a", 300, "y"),
        unit("b", 400, "y"),
    ];
    let c = cluster(nodes, units, &[("big", 1), ("mid", 2)]);
    // `b` first (larger): node 1 has 300 free, so node 2; then `a` fills node 1.
    assert_eq!(
        placed(&c, Algorithm::BinPacking),
        pairs(&[("a", 1), ("b", 2)])
    );
    assert_eq!(
        placed(&c, Algorithm::LeastLoaded),
        pairs(&[("a", 2), ("b", 3)])
    );
}

#[test]
fn spread_takes_the_domain_with_fewest_units_of_the_group_over_a_lighter_one() {
    let nodes = vec![node(1, "a"), node(2, "a")];
    let units = vec![
        unit("web-0", 100, "web"),
        unit("db", 600, "db"),
        unit("web-1", 100, "web"),
    ];
    let c = cluster(nodes, units, &[("web-0", 1), ("db", 2)]);
    assert_eq!(placed(&c, Algorithm::Spread), pairs(&[("web-1", 2)]));
    assert_eq!(placed(&c, Algorithm::LeastLoaded), pairs(&[("web-1", 1)]));
}

#[test]
fn spread_counts_the_group_per_domain_of_its_topology() {
    let nodes = vec![node(1, "a"), node(2, "a"), node(3, "b")];
    let units = vec![
        spread(unit("web-0", 100, "web"), "zone", 5),
        spread(unit("web-1", 100, "web"), "zone", 5),
        spread(unit("web-2", 100, "web"), "zone", 5),
    ];
    let c = cluster(nodes, units, &[("web-0", 2)]);
    // Zone b is empty of web; then zone a and zone b hold one each, node 1 is lightest.
    let got = placed(&c, Algorithm::Spread);
    assert_eq!(got, pairs(&[("web-1", 3), ("web-2", 1)]));
}

#[test]
fn random_depends_on_the_seed_only() {
    let nodes: Vec<Node> = (1..=5).map(|i| node(i, "a")).collect();
    let units: Vec<Unit> = (0..20).map(|i| unit(&format!("u{i}"), 100, "x")).collect();
    let c = cluster(nodes, units, &[]);
    let runs: BTreeSet<Vec<(String, NodeId)>> = (0..10)
        .map(|seed| placed(&c, Algorithm::Random { seed }))
        .collect();
    assert!(runs.len() > 1, "different seeds place differently");
    let again = placed(&c, Algorithm::Random { seed: 3 });
    assert_eq!(again, placed(&c, Algorithm::Random { seed: 3 }));
}

#[test]
fn the_configured_algorithm_maps_to_its_ranking() {
    use hypernix_config::schema::mesh::MeshSchedulingAlgorithm as M;
    assert_eq!(Algorithm::new(M::LeastLoaded, 7), Algorithm::LeastLoaded);
    assert_eq!(Algorithm::new(M::BinPacking, 7), Algorithm::BinPacking);
    assert_eq!(Algorithm::new(M::Spread, 7), Algorithm::Spread);
    assert_eq!(Algorithm::new(M::Random, 7), Algorithm::Random { seed: 7 });
}

#[test]
fn a_unit_larger_than_any_free_space_is_unplaced_with_its_size() {
    let c = cluster(vec![node(1, "a")], vec![unit("big", 2000, "x")], &[]);
    assert_eq!(
        reasons(&c, Algorithm::LeastLoaded),
        vec![format!(
            "unit big: no node has 2000 compute units and {GIB} bytes of memory free"
        )]
    );
    let mut hungry = unit("hungry", 100, "x");
    hungry.memory = 9 * GIB;
    let c = cluster(vec![node(1, "a")], vec![hungry], &[]);
    assert_eq!(place(&c, Algorithm::BinPacking).unplaced.len(), 1);
}

#[test]
fn anti_affinity_keeps_units_apart_at_its_scope() {
    let nodes = vec![node(1, "a"), node(2, "a"), node(3, "b"), node(4, "b")];
    let anti = |name| {
        with(
            unit(name, 100, "web"),
            rule(AffinityKind::Anti, TopologyScope::Zone, "web"),
        )
    };
    let c = cluster(
        nodes,
        vec![anti("web-0"), anti("web-1"), anti("web-2")],
        &[],
    );
    let got = place(&c, Algorithm::LeastLoaded);
    assert_eq!(got.placed.values().copied().collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(
        got.unplaced,
        vec![Unplaced {
            unit: "web-2".into(),
            reason: "unit web-2: anti-affinity with {app=web} at scope zone rules out all 4 candidate nodes".into()
        }]
    );
}

#[test]
fn anti_affinity_that_leaves_only_small_nodes_says_so() {
    let mut nodes = vec![node(1, "a"), node(2, "b")];
    nodes[0].compute = 4000;
    let db = with(
        unit("db", 2048, "db"),
        rule(AffinityKind::Anti, TopologyScope::Zone, "web"),
    );
    let c = cluster(nodes, vec![unit("web", 100, "web"), db], &[("web", 1)]);
    assert_eq!(
        reasons(&c, Algorithm::LeastLoaded),
        vec![format!(
            "unit db: anti-affinity with {{app=web}} at scope zone leaves no node with 2048 compute units and {GIB} bytes of memory free"
        )]
    );
}

#[test]
fn anti_affinity_holds_both_ways() {
    let nodes = vec![node(1, "a"), node(2, "a")];
    let web = with(
        unit("web", 100, "web"),
        rule(AffinityKind::Anti, TopologyScope::Host, "db"),
    );
    let c = cluster(nodes, vec![web, unit("db", 100, "db")], &[("web", 1)]);
    // Bin-packing would pick the fuller node 1, but web refuses db there.
    assert_eq!(placed(&c, Algorithm::BinPacking), pairs(&[("db", 2)]));
}

#[test]
fn nodes_without_a_rack_share_one_rack_domain() {
    let nodes = vec![node(1, "a"), node(2, "b")];
    let anti = |name| {
        with(
            unit(name, 100, "web"),
            rule(AffinityKind::Anti, TopologyScope::Rack, "web"),
        )
    };
    let c = cluster(nodes, vec![anti("web-0"), anti("web-1")], &[]);
    assert_eq!(place(&c, Algorithm::LeastLoaded).unplaced.len(), 1);
}

#[test]
fn required_affinity_goes_where_its_match_is() {
    let nodes = vec![node(1, "a"), node(2, "b"), node(3, "b")];
    let db = with(
        unit("db", 100, "db"),
        rule(AffinityKind::Required, TopologyScope::Zone, "web"),
    );
    let c = cluster(
        nodes.clone(),
        vec![unit("web", 900, "web"), db.clone()],
        &[("web", 2)],
    );
    assert_eq!(placed(&c, Algorithm::BinPacking), pairs(&[("db", 2)]));
    assert_eq!(placed(&c, Algorithm::LeastLoaded), pairs(&[("db", 3)]));
    // Unplaced units with required affinity go last, after what they are drawn to.
    let c = cluster(
        nodes.clone(),
        vec![unit("web", 900, "web"), db.clone()],
        &[],
    );
    assert_eq!(
        placed(&c, Algorithm::LeastLoaded),
        pairs(&[("db", 1), ("web", 1)])
    );
    let c = cluster(nodes.clone(), vec![db], &[]);
    assert_eq!(
        reasons(&c, Algorithm::LeastLoaded),
        vec![
            "unit db: required affinity with {app=web} at scope zone: no unit it matches is placed"
        ]
    );
    // The first of a group that requires its own group goes anywhere.
    let web = with(
        unit("web-0", 100, "web"),
        rule(AffinityKind::Required, TopologyScope::Host, "web"),
    );
    let c = cluster(nodes, vec![web], &[]);
    assert_eq!(placed(&c, Algorithm::LeastLoaded), pairs(&[("web-0", 1)]));
}

#[test]
fn preferred_affinity_outranks_the_algorithm() {
    let nodes = vec![node(1, "a"), node(2, "a")];
    let cache = with(
        unit("cache", 100, "cache"),
        rule(AffinityKind::Preferred, TopologyScope::Host, "web"),
    );
    let c = cluster(nodes, vec![unit("web", 800, "web"), cache], &[("web", 1)]);
    assert_eq!(placed(&c, Algorithm::LeastLoaded), pairs(&[("cache", 1)]));
}

#[test]
fn a_spread_maximum_is_hard() {
    let nodes = vec![node(1, "a"), node(2, "a"), node(3, "b")];
    let web = |name| spread(unit(name, 100, "web"), "zone", 1);
    let c = cluster(nodes, vec![web("web-0"), web("web-1"), web("web-2")], &[]);
    let got = place(&c, Algorithm::BinPacking);
    let used: BTreeSet<NodeId> = got.placed.values().copied().collect();
    assert_eq!(used, [1, 3].into());
    assert_eq!(
        got.unplaced[0].reason,
        "unit web-2: spread of at most 1 per zone rules out all 3 candidate nodes"
    );
}

#[test]
fn only_alive_nodes_that_run_units_take_units() {
    let mut nodes: Vec<Node> = (1..=5).map(|i| node(i, "a")).collect();
    nodes[0].runs_units = false;
    nodes[1].health = Health::Suspect;
    nodes[2].health = Health::Dead {
        since: Duration::ZERO,
    };
    nodes[3].health = Health::Fenced;
    let units = vec![unit("u", 100, "x")];
    let c = cluster(nodes.clone(), units.clone(), &[]);
    for algorithm in [Algorithm::BinPacking, Algorithm::Random { seed: 1 }] {
        assert_eq!(placed(&c, algorithm), pairs(&[("u", 5)]));
    }
    nodes[4].health = Health::Suspect;
    let c = cluster(nodes, units, &[]);
    assert_eq!(
        reasons(&c, Algorithm::LeastLoaded),
        vec!["unit u: no node is alive and runs units"]
    );
}

#[test]
fn malformed_input_is_an_error_naming_the_culprit() {
    let units = || vec![unit("web", 100, "web")];
    let err = |nodes: Vec<Node>, units: Vec<Unit>, placement: &[(&str, NodeId)]| {
        let placement = placement.iter().map(|&(u, n)| (u.to_string(), n)).collect();
        Cluster::new(nodes, units, placement)
            .unwrap_err()
            .to_string()
    };
    let e = err(vec![node(1, "a")], units(), &[("web", 9)]);
    assert!(e.contains("unit web on unknown node 9"), "{e}");
    let e = err(vec![node(1, "a")], units(), &[("ghost", 1)]);
    assert!(e.contains("unknown unit ghost"), "{e}");
    let e = err(vec![node(1, "a"), node(1, "b")], units(), &[]);
    assert!(e.contains("node 1 is listed twice"), "{e}");
    let e = err(
        vec![node(1, "a")],
        vec![unit("web", 1, "a"), unit("web", 2, "b")],
        &[],
    );
    assert!(e.contains("unit web is listed twice"), "{e}");
    let mut empty = node(4, "a");
    empty.compute = 0;
    let e = err(vec![empty.clone()], units(), &[]);
    assert!(
        e.contains("node 4 runs units but has zero compute capacity"),
        "{e}"
    );
    empty.compute = 1;
    empty.memory = 0;
    let e = err(vec![empty.clone()], units(), &[]);
    assert!(e.contains("zero memory capacity"), "{e}");
    empty.runs_units = false;
    assert!(Cluster::new(vec![empty], units(), BTreeMap::new()).is_ok());
    let e = err(
        vec![node(1, "a")],
        vec![spread(unit("web", 1, "a"), "datacenter", 1)],
        &[],
    );
    assert!(
        e.contains("unit web: spread topology \"datacenter\""),
        "{e}"
    );
    let e = err(
        vec![node(1, "a")],
        vec![spread(unit("web", 1, "a"), "zone", 0)],
        &[],
    );
    assert!(e.contains("unit web: spread maximum is 0"), "{e}");
}

#[test]
fn enormous_requests_and_capacities_do_not_overflow() {
    let mut nodes = vec![node(1, "a"), node(2, "a")];
    nodes[0].compute = u64::MAX;
    nodes[0].memory = u64::MAX;
    let mut huge = unit("huge", u64::MAX, "x");
    huge.memory = u64::MAX;
    let units = vec![
        huge.clone(),
        Unit {
            name: "huge-2".into(),
            ..huge
        },
        unit("small", 1, "y"),
    ];
    let c = cluster(nodes, units, &[("huge", 1), ("huge-2", 1)]);
    let got = place(&c, Algorithm::BinPacking);
    assert_eq!(got.placed, [("small".to_string(), 2)].into());
    assert_eq!(rebalance(&c, 0.0).map(|m| m.len()), Ok(0));
}

#[test]
fn rebalance_moves_the_largest_unit_that_does_not_overshoot() {
    let nodes = vec![node(1, "a"), node(2, "a")];
    let units = vec![
        unit("a", 400, "x"),
        unit("b", 300, "x"),
        unit("c", 200, "x"),
    ];
    let c = cluster(nodes, units, &[("a", 1), ("b", 1), ("c", 1)]);
    assert_eq!(
        rebalance(&c, 0.2),
        Ok(vec![Move {
            unit: "a".into(),
            from: 1,
            to: 2
        }])
    );
    assert_eq!(rebalance(&c, 0.9), Ok(vec![]));
}

#[test]
fn rebalance_takes_several_moves_when_one_is_not_enough() {
    let nodes = vec![node(1, "a"), node(2, "a")];
    let units: Vec<Unit> = (0..9)
        .map(|i| {
            let mut u = unit(&format!("u{i}"), 100, "x");
            u.memory = GIB / 4;
            u
        })
        .collect();
    let placement: Vec<(String, NodeId)> = units.iter().map(|u| (u.name.clone(), 1)).collect();
    let c = Cluster::new(nodes, units, placement.into_iter().collect()).unwrap();
    let moves = rebalance(&c, 0.2).unwrap();
    // 0.9 / 0.0 → 0.5 / 0.4 takes four moves, all from node 1 to node 2.
    assert_eq!(moves.len(), 4);
    assert!(moves.iter().all(|m| m.from == 1 && m.to == 2));
}

#[test]
fn rebalance_keeps_constraints_and_skips_unhealthy_nodes() {
    let mut nodes = vec![node(1, "a"), node(2, "a"), node(3, "a")];
    nodes[2].health = Health::Suspect;
    let pinned = |name| {
        with(
            unit(name, 400, "web"),
            rule(AffinityKind::Anti, TopologyScope::Host, "db"),
        )
    };
    let c = cluster(
        nodes,
        vec![pinned("w0"), pinned("w1"), unit("db", 100, "db")],
        &[("w0", 1), ("w1", 1), ("db", 2)],
    );
    assert_eq!(rebalance(&c, 0.1), Ok(vec![]));
    // db requires web on its host: neither web (held by db) nor db (drawn to web) moves.
    let nodes = vec![node(1, "a"), node(2, "a")];
    let db = with(
        unit("db", 400, "db"),
        rule(AffinityKind::Required, TopologyScope::Host, "web"),
    );
    let c = cluster(
        nodes,
        vec![unit("web", 500, "web"), db],
        &[("web", 1), ("db", 1)],
    );
    assert_eq!(rebalance(&c, 0.1), Ok(vec![]));
    for bad in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(
            rebalance(&c, bad),
            Err(SchedulerError::Threshold(_))
        ));
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn failover_waits_for_the_grace_period_then_moves_to_healthy_nodes() {
    let mut nodes: Vec<Node> = (1..=5).map(|i| node(i, "a")).collect();
    nodes[0].health = Health::Dead { since: secs(100) };
    nodes[1].runs_units = false;
    nodes[2].health = Health::Suspect;
    nodes[3].health = Health::Fenced;
    let units = vec![
        unit("a", 100, "x"),
        unit("b", 100, "x"),
        unit("c", 100, "x"),
    ];
    let c = cluster(nodes, units, &[("a", 1), ("b", 4), ("c", 3)]);
    let timeouts = Timeouts::new(secs(10), secs(30)).unwrap();
    let early = failover(&c, secs(129), &timeouts, Algorithm::LeastLoaded);
    let to_5 = |unit: &str, from| Move {
        unit: unit.into(),
        from,
        to: 5,
    };
    assert_eq!(
        early.moves,
        vec![to_5("b", 4)],
        "a fenced node's units go at once"
    );
    assert_eq!(
        early.waiting,
        vec![Waiting {
            unit: "a".into(),
            node: 1,
            eligible_at: secs(130)
        }]
    );
    let due = failover(&c, secs(130), &timeouts, Algorithm::LeastLoaded);
    assert_eq!(due.moves, vec![to_5("a", 1), to_5("b", 4)]);
    assert!(due.waiting.is_empty() && due.unplaced.is_empty());
}

#[test]
fn failover_that_finds_no_room_says_why() {
    let mut nodes = vec![node(1, "a"), node(2, "a")];
    nodes[0].health = Health::Fenced;
    let units = vec![unit("a", 600, "x"), unit("b", 600, "x")];
    let c = cluster(nodes, units, &[("a", 1), ("b", 2)]);
    let timeouts = Timeouts::new(secs(1), secs(2)).unwrap();
    let f = failover(&c, secs(0), &timeouts, Algorithm::Spread);
    assert!(f.moves.is_empty());
    assert_eq!(
        f.unplaced[0].reason,
        format!("unit a: no node has 600 compute units and {GIB} bytes of memory free")
    );
}

#[test]
fn the_fence_timeout_must_be_shorter_than_the_grace_period() {
    for (fence, grace) in [(30, 30), (31, 30)] {
        let e = Timeouts::new(secs(fence), secs(grace)).unwrap_err();
        assert_eq!(
            e,
            SchedulerError::FenceNotShorter {
                fence: secs(fence),
                grace: secs(grace)
            }
        );
    }
}

#[test]
fn a_partitioned_node_stops_before_its_units_start_elsewhere() {
    // The node last had quorum at 100 s; the cluster last heard it then too.
    let timeouts = Timeouts::new(secs(10), secs(30)).unwrap();
    assert_eq!(
        fence(secs(100), secs(105), &timeouts),
        FenceDecision::Run { until: secs(110) }
    );
    assert_eq!(fence(secs(100), secs(110), &timeouts), FenceDecision::Stop);
    let mut nodes = vec![node(1, "a"), node(2, "a")];
    nodes[0].health = Health::Dead { since: secs(100) };
    let c = cluster(nodes, vec![unit("a", 100, "x")], &[("a", 1)]);
    for t in 100..140 {
        let runs_on_1 = fence(secs(100), secs(t), &timeouts) != FenceDecision::Stop;
        let runs_on_2 = !failover(&c, secs(t), &timeouts, Algorithm::LeastLoaded)
            .moves
            .is_empty();
        assert!(!(runs_on_1 && runs_on_2), "unit a runs twice at {t} s");
        assert_eq!(runs_on_1, t < 110);
        assert_eq!(runs_on_2, t >= 130);
    }
}

#[test]
fn ten_thousand_units_on_a_hundred_nodes() {
    let nodes: Vec<Node> = (0..100)
        .map(|i| {
            let mut n = node(i, &format!("z{}", i % 4));
            n.location.rack = Some(format!("r{}", i / 10));
            n.compute = 12_000;
            n.memory = 32 * GIB;
            n
        })
        .collect();
    let units: Vec<Unit> = (0..10_000)
        .map(|i| {
            let app = format!("s{}", i / 10);
            let mut u = unit(&format!("{app}-{}", i % 10), 100, &app);
            u.memory = 256 << 20;
            let u = with(u, rule(AffinityKind::Anti, TopologyScope::Host, &app));
            spread(u, "zone", 3)
        })
        .collect();
    let c = cluster(nodes, units, &[]);
    let start = std::time::Instant::now();
    let placed = place(&c, Algorithm::LeastLoaded);
    let elapsed = start.elapsed();
    println!("placed 10,000 units on 100 nodes in {elapsed:?}");
    assert_eq!(placed.unplaced, vec![]);
    assert_eq!(placed.placed.len(), 10_000);
}
