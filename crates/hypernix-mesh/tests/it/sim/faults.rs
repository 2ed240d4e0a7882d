//! Random fault schedules: partitions, message loss, delay, and node crashes and restarts.

use super::cluster::{Rng, host};
use hypernix_mesh::consensus::NodeId;
use std::collections::BTreeSet;
use std::time::Duration;
use turmoil::Sim;

/// The normal one-way message delay's upper bound.
pub const NORMAL_LATENCY: Duration = Duration::from_millis(5);

/// One change to the simulated world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Cuts every link between these nodes and the others.
    Isolate(Vec<NodeId>),
    /// Repairs every link between nodes.
    Heal,
    /// Stops a node's process; its redb file stays.
    Crash(NodeId),
    /// Starts a crashed node again on its redb file.
    Restart(NodeId),
    /// Turns random link failures (lost segments, stalled connections) on or off.
    Lossy(bool),
    /// Turns long message delays on or off.
    Slow(bool),
}

/// A seeded list of faults over `window` for a cluster of `size`, ending healed and running.
pub fn generate(rng: &mut Rng, size: u64, window: Duration) -> Vec<(Duration, Fault)> {
    let mut faults = Vec::new();
    let mut crashed = BTreeSet::new();
    let mut at = Duration::from_millis(100 + rng.below(400));
    while at < window {
        let fault = match rng.below(7) {
            0 | 1 => {
                let group: Vec<NodeId> = (1..=size).filter(|_| rng.below(2) == 0).collect();
                if group.is_empty() || group.len() as u64 == size {
                    Fault::Heal
                } else {
                    Fault::Isolate(group)
                }
            }
            2 => Fault::Heal,
            3 => {
                let node = 1 + rng.below(size);
                if crashed.insert(node) {
                    Fault::Crash(node)
                } else {
                    crashed.remove(&node);
                    Fault::Restart(node)
                }
            }
            4 => match crashed.pop_first() {
                Some(node) => Fault::Restart(node),
                None => Fault::Heal,
            },
            5 => Fault::Lossy(rng.below(2) == 0),
            _ => Fault::Slow(rng.below(2) == 0),
        };
        faults.push((at, fault));
        at += Duration::from_millis(50 + rng.below(450));
    }
    faults.extend([Fault::Heal, Fault::Lossy(false), Fault::Slow(false)].map(|f| (window, f)));
    faults.extend(
        crashed
            .into_iter()
            .map(|node| (window, Fault::Restart(node))),
    );
    faults
}

/// Applies `fault` to `sim`, whose nodes are 1..=`size`.
pub fn apply(sim: &mut Sim<'_>, size: u64, fault: &Fault) {
    match fault {
        Fault::Isolate(group) => {
            for a in group {
                for b in (1..=size).filter(|b| !group.contains(b)) {
                    sim.partition(host(*a), host(b));
                }
            }
        }
        Fault::Heal => {
            for a in 1..=size {
                for b in a + 1..=size {
                    sim.repair(host(a), host(b));
                }
            }
        }
        Fault::Crash(node) => sim.crash(host(*node)),
        Fault::Restart(node) => sim.bounce(host(*node)),
        Fault::Lossy(on) => sim.set_fail_rate(if *on { 0.002 } else { 0.0 }),
        Fault::Slow(on) => sim.set_max_message_latency(if *on {
            Duration::from_millis(40)
        } else {
            NORMAL_LATENCY
        }),
    }
}
