use serde_json::{Value, json};

use super::*;

fn parse(v: Value) -> Result<Mesh, String> {
    serde_path_to_error::deserialize(v).map_err(|e| format!("{}: {}", e.path(), e.inner()))
}

fn problems(v: Value) -> Vec<String> {
    let mesh = parse(v).expect("parses");
    let mut problems = Problems::default();
    mesh.validate(&mut problems);
    problems.0.iter().map(ToString::to_string).collect()
}

/// Asserts that validating `v` reports exactly one problem, at `path`, mentioning `needle`.
fn one_problem(v: Value, path: &str, needle: &str) {
    let got = problems(v);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].starts_with(&format!("{path}: ")), "{got:#?}");
    assert!(got[0].contains(needle), "{got:#?}");
}

#[test]
fn minimal_is_all_defaults() {
    let m = parse(json!({})).unwrap();
    assert_eq!(m, Mesh::default());
    assert!(!m.enable);
    assert_eq!(m.cluster_name, "hypervisor-mesh");
    assert_eq!(m.node.id, None);
    assert_eq!(m.node.roles, [NodeRole::Worker]);
    assert_eq!(m.node.location.zone, "default");
    assert_eq!(m.node.capabilities.compute.capacity, 1000);
    assert_eq!(m.node.capabilities.storage.capacity, None);
    assert_eq!(m.consensus.algorithm, ConsensusAlgorithm::Raft);
    let raft = &m.consensus.parameters.raft;
    assert_eq!(raft.election_timeout, Duration::millis(150));
    assert_eq!(raft.heartbeat_interval, Duration::millis(50));
    assert_eq!(
        (raft.snapshot_interval, raft.max_inflight_msgs),
        (10_000, 256)
    );
    let pbft = &m.consensus.parameters.pbft;
    assert_eq!(
        (
            pbft.fault_tolerance,
            pbft.batch_size,
            pbft.checkpoint_period
        ),
        (1, 100, 100)
    );
    assert_eq!(
        m.consensus.parameters.tendermint.block_time,
        Duration::millis(1000)
    );
    assert_eq!(m.consensus.quorum, Quorum::default());
    assert_eq!(m.topology.mode, TopologyMode::PartialMesh);
    let c = &m.topology.connections;
    assert_eq!(c.strategy, ConnectionStrategy::Nearest);
    assert_eq!((c.min_peers, c.max_peers, c.gossip_fanout), (3, 10, 3));
    assert_eq!(m.topology.discovery.method, DiscoveryMethod::Static);
    assert_eq!(m.topology.discovery.interval, Duration::secs(30));
    let s = &m.coordination.scheduler;
    assert_eq!(s.algorithm, MeshSchedulingAlgorithm::LeastLoaded);
    assert!(s.rebalancing.enable);
    assert_eq!(s.rebalancing.threshold, 0.2);
    assert_eq!(s.rebalancing.interval, Duration::secs(300));
    assert_eq!(m.coordination.state_store.backend, StateBackend::Embedded);
    assert_eq!(m.coordination.state_store.consistency, Consistency::Strong);
    assert_eq!(m.security.authentication.method, AuthMethod::MutualTls);
    assert!(problems(json!({})).is_empty());
}

fn full() -> Value {
    json!({
        "enable": true,
        "clusterName": "lab",
        "node": {
            "id": "node-1",
            "roles": [ "controller", "worker", "storage", "edge" ],
            "location": { "zone": "z1", "rack": "r4", "region": "eu" },
            "capabilities": { "compute": { "capacity": 3200 }, "storage": { "capacity": "2Ti" } }
        },
        "consensus": {
            "algorithm": "raft",
            "parameters": {
                "raft": { "electionTimeout": "300ms", "heartbeatInterval": "100ms",
                          "snapshotInterval": 5000, "maxInflightMsgs": 64 },
                "pbft": { "faultTolerance": 1, "batchSize": 10, "checkpointPeriod": 50 },
                "tendermint": { "blockTime": "2s" }
            },
            "quorum": { "size": 3, "voters": [ "node-1", "node-2", "node-3", "node-4" ],
                        "observers": [ "node-5" ] }
        },
        "topology": {
            "mode": "full-mesh",
            "connections": { "strategy": "latency-optimized", "minPeers": 1, "maxPeers": 4,
                             "gossipFanout": 2 },
            "discovery": { "method": "dns", "staticPeers": [ "10.0.0.2:7946" ], "interval": "1m" }
        },
        "coordination": {
            "scheduler": { "algorithm": "bin-packing",
                           "rebalancing": { "enable": false, "threshold": 0.5, "interval": "10m" } },
            "stateStore": { "backend": "etcd", "consistency": "linearizable" }
        },
        "security": { "authentication": { "method": "psk" } }
    })
}

#[test]
fn full_example_parses_validates_and_round_trips() {
    let m = parse(full()).unwrap();
    assert!(m.enable);
    assert_eq!(m.node.roles.len(), 4);
    assert_eq!(m.node.location.rack.as_deref(), Some("r4"));
    assert_eq!(m.node.capabilities.storage.capacity, Some(Size(1 << 41)));
    assert_eq!(m.consensus.algorithm, ConsensusAlgorithm::Raft);
    assert_eq!(
        m.consensus.parameters.tendermint.block_time,
        Duration::secs(2)
    );
    assert_eq!(m.consensus.quorum.size, Some(3));
    assert_eq!(m.topology.mode, TopologyMode::FullMesh);
    assert_eq!(
        m.topology.connections.strategy,
        ConnectionStrategy::LatencyOptimized
    );
    assert_eq!(m.topology.discovery.method, DiscoveryMethod::Dns);
    assert_eq!(
        m.coordination.scheduler.algorithm,
        MeshSchedulingAlgorithm::BinPacking
    );
    assert_eq!(
        m.coordination.state_store.consistency,
        Consistency::Linearizable
    );
    assert_eq!(m.security.authentication.method, AuthMethod::Psk);
    assert!(problems(full()).is_empty(), "{:#?}", problems(full()));
    let back = serde_json::to_value(&m).unwrap();
    assert_eq!(parse(back).unwrap(), m);
}

#[test]
fn examples_nix_mesh_is_clean() {
    let v = json!({ "consensus": { "algorithm": "raft" }, "topology": { "mode": "partial-mesh" } });
    assert_eq!(parse(v.clone()).unwrap(), Mesh::default());
    assert!(problems(v).is_empty());
}

#[test]
fn malformed_input_names_the_attribute() {
    let cases = [
        (
            json!({ "enabled": true }),
            "enabled",
            "unknown field `enabled`",
        ),
        (json!({ "enable": "yes" }), "enable", "invalid type"),
        (
            json!({ "node": { "roles": [ "boss" ] } }),
            "node.roles[0]",
            "unknown variant `boss`",
        ),
        (
            json!({ "node": { "roles": "worker" } }),
            "node.roles",
            "invalid type",
        ),
        (
            json!({ "node": { "capabilities": { "compute": { "capacity": "lots" } } } }),
            "node.capabilities.compute.capacity",
            "invalid type",
        ),
        (
            json!({ "consensus": { "algorithm": "paxos" } }),
            "consensus.algorithm",
            "unknown variant `paxos`",
        ),
        (
            json!({ "consensus": { "parameters": { "raft": { "electionTimeout": 150 } } } }),
            "consensus.parameters.raft.electionTimeout",
            "expected a duration",
        ),
        (
            json!({ "consensus": { "parameters": { "paxos": {} } } }),
            "consensus.parameters.paxos",
            "unknown field `paxos`",
        ),
        (
            json!({ "consensus": { "quorum": { "size": -1 } } }),
            "consensus.quorum.size",
            "invalid value",
        ),
        (
            json!({ "topology": { "mode": "star" } }),
            "topology.mode",
            "unknown variant `star`",
        ),
        (
            json!({ "coordination": { "stateStore": { "backend": "zookeeper" } } }),
            "coordination.stateStore.backend",
            "unknown variant `zookeeper`",
        ),
        (
            json!({ "security": { "authentication": { "method": "password" } } }),
            "security.authentication.method",
            "unknown variant `password`",
        ),
    ];
    for (input, path, needle) in cases {
        let err = parse(input).unwrap_err();
        assert!(err.starts_with(&format!("{path}: ")), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn names_and_roles() {
    one_problem(
        json!({ "clusterName": " " }),
        "hypervisor.mesh.clusterName",
        "name the cluster",
    );
    one_problem(
        json!({ "node": { "roles": [] } }),
        "hypervisor.mesh.node.roles",
        "at least one role",
    );
}

#[test]
fn peer_counts() {
    let conn = |c: Value| json!({ "topology": { "connections": c } });
    one_problem(
        conn(json!({ "minPeers": 5, "maxPeers": 4 })),
        "hypervisor.mesh.topology.connections.minPeers",
        "5 is more than maxPeers (4)",
    );
    one_problem(
        conn(json!({ "gossipFanout": 0 })),
        "hypervisor.mesh.topology.connections.gossipFanout",
        "use 1 or more",
    );
    one_problem(
        conn(json!({ "gossipFanout": 11 })),
        "hypervisor.mesh.topology.connections.gossipFanout",
        "more than maxPeers (10)",
    );
    one_problem(
        json!({ "topology": { "discovery": { "interval": "0s" } } }),
        "hypervisor.mesh.topology.discovery.interval",
        "longer than 0",
    );
}

#[test]
fn consensus_parameters() {
    let params = |p: Value| json!({ "consensus": { "parameters": p } });
    one_problem(
        params(json!({ "raft": { "heartbeatInterval": "150ms" } })),
        "hypervisor.mesh.consensus.parameters.raft.heartbeatInterval",
        "not shorter than electionTimeout (150ms)",
    );
    let got = problems(params(json!({ "raft": { "electionTimeout": "0s" } })));
    assert_eq!(
        got,
        [
            "hypervisor.mesh.consensus.parameters.raft.electionTimeout: must be longer than 0; \
          use a duration such as \"30s\""
        ]
    );
    one_problem(
        params(json!({ "raft": { "snapshotInterval": 0 } })),
        "hypervisor.mesh.consensus.parameters.raft.snapshotInterval",
        "use 1 or more",
    );
    one_problem(
        params(json!({ "raft": { "maxInflightMsgs": 0 } })),
        "hypervisor.mesh.consensus.parameters.raft.maxInflightMsgs",
        "use 1 or more",
    );
    one_problem(
        params(json!({ "pbft": { "batchSize": 0 } })),
        "hypervisor.mesh.consensus.parameters.pbft.batchSize",
        "use 1 or more",
    );
    one_problem(
        params(json!({ "pbft": { "checkpointPeriod": 0 } })),
        "hypervisor.mesh.consensus.parameters.pbft.checkpointPeriod",
        "use 1 or more",
    );
    one_problem(
        params(json!({ "tendermint": { "blockTime": "0ms" } })),
        "hypervisor.mesh.consensus.parameters.tendermint.blockTime",
        "longer than 0",
    );
    let got = problems(
        json!({ "consensus": { "algorithm": "pbft", "quorum": { "voters": [ "a", "b", "c" ] } } }),
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[1].starts_with(
            "hypervisor.mesh.consensus.parameters.pbft.faultTolerance: tolerating 1 faulty \
             nodes needs at least 4 voters, but quorum.voters lists 3"
        ),
        "{got:#?}"
    );
}

#[test]
fn algorithms_without_an_engine_are_refused() {
    for name in ["pbft", "tendermint", "avalanche", "hotstuff"] {
        one_problem(
            json!({ "consensus": { "algorithm": name } }),
            "hypervisor.mesh.consensus.algorithm",
            &format!("\"{name}\" has no engine yet; use \"raft\""),
        );
    }
    assert!(problems(json!({ "consensus": { "algorithm": "raft" } })).is_empty());
}

#[test]
fn a_witness_neither_works_nor_runs_at_the_edge() {
    let roles = |r: Value| json!({ "node": { "roles": r } });
    for other in ["worker", "edge"] {
        one_problem(
            roles(json!(["witness", other])),
            "hypervisor.mesh.node.roles",
            &format!("lists \"witness\" with \"{other}\", but a witness runs no units"),
        );
    }
    assert_eq!(
        problems(roles(json!(["worker", "edge", "witness"]))).len(),
        2
    );
    for fine in [
        json!(["witness"]),
        json!(["controller", "witness", "storage"]),
        json!(["edge", "storage"]),
    ] {
        assert!(problems(roles(fine.clone())).is_empty(), "{fine}");
    }
}

#[test]
fn quorum() {
    let quorum = |q: Value| json!({ "consensus": { "quorum": q } });
    one_problem(
        quorum(json!({ "size": 0 })),
        "hypervisor.mesh.consensus.quorum.size",
        "at least 1 vote",
    );
    one_problem(
        quorum(json!({ "size": 4, "voters": [ "a", "b", "c" ] })),
        "hypervisor.mesh.consensus.quorum.size",
        "4 is more than the 3 voters",
    );
    one_problem(
        quorum(json!({ "size": 2, "voters": [ "a", "b", "c", "d" ] })),
        "hypervisor.mesh.consensus.quorum.size",
        "use at least 3",
    );
    one_problem(
        quorum(json!({ "voters": [ "a", "b", "c" ], "observers": [ "d", "b" ] })),
        "hypervisor.mesh.consensus.quorum.observers[1]",
        "`b` is also a voter",
    );
    assert!(problems(quorum(json!({ "size": 2, "voters": [ "a", "b", "c" ] }))).is_empty());
}

#[test]
fn rebalancing() {
    let rebalancing = |r: Value| json!({ "coordination": { "scheduler": { "rebalancing": r } } });
    one_problem(
        rebalancing(json!({ "threshold": 1.2 })),
        "hypervisor.mesh.coordination.scheduler.rebalancing.threshold",
        "1.2 is out of range",
    );
    one_problem(
        rebalancing(json!({ "interval": "0m" })),
        "hypervisor.mesh.coordination.scheduler.rebalancing.interval",
        "longer than 0",
    );
}

#[test]
fn failover_fences_before_it_moves_units() {
    let m = parse(json!({})).unwrap();
    let f = &m.coordination.failover;
    assert_eq!((f.grace, f.fence), (Duration::secs(30), Duration::secs(20)));
    assert!(
        problems(json!({ "coordination": { "failover": { "grace": "6s", "fence": "4s" } } }))
            .is_empty()
    );
    one_problem(
        json!({ "coordination": { "failover": { "grace": "10s", "fence": "10s" } } }),
        "hypervisor.mesh.coordination.failover.fence",
        "make fence shorter than grace",
    );
    assert!(parse(json!({ "coordination": { "failover": { "grace": "soon" } } })).is_err());
    assert!(parse(json!({ "coordination": { "failover": { "graze": "1s" } } })).is_err());
}
