//! The deterministic fault simulation: Raft nodes and register clients on turmoil's network.
//!
//! Each schedule is a seed: it fixes the cluster size, the fault schedule, the clients'
//! choices and turmoil's network randomness. Clients write, read and compare-and-swap a few
//! keys while faults play out, then everything heals; the recorded history must be
//! linearizable, key by key, and some operations must have completed.
//!
//! `HYPERNIX_SIM_SCHEDULES` sets how many schedules run (default 200) and
//! `HYPERNIX_SIM_SEED` the first seed (default 0), so a failing seed can be run alone.

mod checker;
mod cluster;
mod faults;
mod history;

use cluster::{Client, Outcome, Rng, add_nodes, host};
use history::{History, Input, Output};
use hypernix_mesh::raft::RaftParameters;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Faults happen during this much simulated time; then the cluster heals.
const FAULT_WINDOW: Duration = Duration::from_secs(2);
/// Clients keep working this long after the faults end.
const QUIET_TAIL: Duration = Duration::from_secs(1);

/// A directory for the nodes' redb files: in memory (/dev/shm) where there is one, since the
/// simulation crashes processes, not machines, and disk syncs would dominate its run time.
fn node_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sim_builder(seed: u64) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    builder
        .simulation_duration(Duration::from_secs(60))
        .tick_duration(Duration::from_millis(5))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(faults::NORMAL_LATENCY)
        .repair_rate(0.01)
        .rng_seed(seed);
    builder
}

/// A client that runs random register ops on `keys` keys until `until` (simulated time).
async fn workload(
    mut client: Client,
    mut rng: Rng,
    keys: u64,
    until: Duration,
    base: u64,
) -> turmoil::Result {
    let mut seen: HashMap<u64, Option<u64>> = HashMap::new();
    let mut n = 0;
    while turmoil::sim_elapsed().unwrap_or_default() < until {
        n += 1;
        let key = rng.below(keys);
        let input = match rng.below(10) {
            0..=3 => Input::Read,
            4..=7 => Input::Write(base + n),
            _ => Input::Cas(seen.get(&key).copied().flatten(), base + n),
        };
        if let Outcome::Done(Output::Read(value)) = client.run(key, input, &mut rng).await {
            seen.insert(key, value);
        }
        tokio::time::sleep(Duration::from_millis(20 + rng.below(80))).await;
    }
    Ok(())
}

/// What one schedule did.
struct Run {
    ops: usize,
    completed: usize,
    violations: Vec<checker::Violation>,
}

fn run_schedule(seed: u64) -> Run {
    let mut rng = Rng::new(seed);
    let size = if seed % 4 == 3 { 5 } else { 3 };
    // Odd seeds snapshot every 16 entries, so lagging and restarted nodes catch up from
    // snapshots sent over the faulty network rather than from the log.
    let parameters = RaftParameters {
        snapshot_interval: if seed % 2 == 1 { 16 } else { 10_000 },
        ..RaftParameters::default()
    };
    let faults = faults::generate(&mut rng, size, FAULT_WINDOW);
    let dir = node_dir();
    let mut sim = sim_builder(seed).build();
    add_nodes(&mut sim, dir.path(), size, &parameters);
    let history = History::default();
    for c in 0..3 {
        let client = Client::new(c, size, history.clone());
        let client_rng = Rng::new(rng.next());
        let base = (c as u64 + 1) * 1_000_000;
        sim.client(
            format!("c{c}"),
            workload(client, client_rng, 3, FAULT_WINDOW + QUIET_TAIL, base),
        );
    }
    let mut pending = faults.iter().peekable();
    loop {
        while let Some((_, fault)) = pending.next_if(|(at, _)| sim.elapsed() >= *at) {
            faults::apply(&mut sim, size, fault);
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => panic!("seed {seed}: the simulation failed: {e}"),
        }
    }
    let ops = history.ops();
    Run {
        ops: ops.len(),
        completed: ops.iter().filter(|op| op.output.is_some()).count(),
        violations: checker::check(&ops),
    }
}

#[test]
fn register_histories_stay_linearizable_under_random_faults() {
    let schedules = env_u64("HYPERNIX_SIM_SCHEDULES", 200);
    let first = env_u64("HYPERNIX_SIM_SEED", 0);
    let started = Instant::now();
    // Each schedule is its own simulation, so they run on all cores, one seed at a time each.
    let next = AtomicU64::new(first);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runs: Vec<(u64, Run)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut runs = Vec::new();
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= first + schedules {
                            return runs;
                        }
                        runs.push((seed, run_schedule(seed)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a simulation thread panicked"))
            .collect()
    });
    let (mut ops, mut completed) = (0, 0);
    let mut failures = Vec::new();
    for (seed, run) in &runs {
        for violation in &run.violations {
            eprintln!("seed {seed}: {violation}");
        }
        if !run.violations.is_empty() {
            failures.push(format!(
                "seed {seed}: {} keys not linearizable",
                run.violations.len()
            ));
        }
        if run.completed == 0 {
            failures.push(format!(
                "seed {seed}: no operation completed of {} tried",
                run.ops
            ));
        }
        ops += run.ops;
        completed += run.completed;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!(
        "{schedules} schedules from seed {first} on {threads} threads: {ops} ops, {completed} completed, 0 violations, in {:.1?}",
        started.elapsed()
    );
}

/// Finds the leader by writing `key` := `value` through each node until one accepts.
async fn write_somewhere(client: &mut Client, rng: &mut Rng, key: u64, value: u64) -> u64 {
    loop {
        let target = client.target();
        if client.run(key, Input::Write(value), rng).await == Outcome::Done(Output::Written) {
            return target;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_minority_partition_cannot_commit() {
    let dir = node_dir();
    let mut sim = sim_builder(7).build();
    add_nodes(&mut sim, dir.path(), 5, &RaftParameters::default());
    let history = History::default();
    let mut client = Client::new(0, 5, history.clone());
    sim.client("c0", async move {
        let mut rng = Rng::new(7);
        let leader = write_somewhere(&mut client, &mut rng, 0, 1).await;
        let partner = leader % 5 + 1;
        let minority = [host(leader), host(partner)];
        for other in (1..=5).filter(|n| *n != leader && *n != partner) {
            for side in &minority {
                turmoil::partition(side.as_str(), host(other).as_str());
            }
        }
        // The old leader still takes the write, but can never commit it.
        for _ in 0..5 {
            client.set_target(leader);
            let outcome = client.run(0, Input::Write(2), &mut rng).await;
            assert!(
                !matches!(outcome, Outcome::Done(_)),
                "the minority committed: {outcome:?}"
            );
        }
        // The majority elects a leader of its own and commits.
        client.set_target((partner % 5) + 1);
        let new_leader = write_somewhere(&mut client, &mut rng, 0, 3).await;
        assert!(new_leader != leader && new_leader != partner);
        for other in 1..=5 {
            for side in &minority {
                turmoil::repair(side.as_str(), host(other).as_str());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        loop {
            if let Outcome::Done(Output::Read(value)) = client.run(0, Input::Read, &mut rng).await {
                assert_eq!(value, Some(3), "the minority's write survived the heal");
                return Ok(());
            }
        }
    });
    sim.run().unwrap();
    assert!(checker::check(&history.ops()).is_empty());
}

#[test]
fn a_killed_leader_is_replaced_and_writes_resume() {
    let dir = node_dir();
    let mut sim = sim_builder(11).build();
    add_nodes(&mut sim, dir.path(), 3, &RaftParameters::default());
    let history = History::default();
    let mut client = Client::new(0, 3, history.clone());
    let last_writer = Rc::new(Cell::new(None::<u64>));
    let writes = Rc::new(Cell::new(0u64));
    let (writer, count) = (last_writer.clone(), writes.clone());
    sim.client("c0", async move {
        let mut rng = Rng::new(11);
        while count.get() < 40 {
            let target = client.target();
            let value = count.get() + 1;
            if client.run(0, Input::Write(value), &mut rng).await == Outcome::Done(Output::Written)
            {
                writer.set(Some(target));
                count.set(value);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    });
    while writes.get() < 10 {
        assert!(!sim.step().unwrap(), "the client finished early");
    }
    let old_leader = last_writer.get().unwrap();
    sim.crash(host(old_leader));
    let crashed_at = sim.elapsed();
    while writes.get() < 20 {
        assert!(!sim.step().unwrap(), "the client finished early");
    }
    let failover = sim.elapsed() - crashed_at;
    let new_leader = last_writer.get().unwrap();
    assert_ne!(new_leader, old_leader);
    assert!(
        failover < Duration::from_secs(2),
        "writes resumed after {failover:?}"
    );
    sim.bounce(host(old_leader));
    sim.run().unwrap();
    assert_eq!(writes.get(), 40);
    assert!(checker::check(&history.ops()).is_empty());
}
