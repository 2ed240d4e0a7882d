//! Rebalancing: moving units off the most loaded node while the load gap is too wide.
//!
//! A node's load is the larger of its compute and memory use as a fraction of its capacity.
//! While the most loaded node that may take units exceeds the least loaded by more than the
//! threshold, one unit leaves the most loaded node: of all (unit, node) moves that keep
//! every constraint, the one leaving the lower of the two nodes' loads the lowest (the
//! largest move that does not overshoot, so few moves are needed), then by unit name and
//! node id. A unit another unit's required affinity depends on stays where it is. It stops when no move lowers the most loaded node's load. Each unit moves at
//! most once.

use super::state::State;
use super::{Cluster, Move, SchedulerError};
use std::collections::BTreeSet;

/// The moves that bring the load gap under `threshold` (`rebalancing.threshold`, 0 to 1).
pub fn rebalance(cluster: &Cluster, threshold: f64) -> Result<Vec<Move>, SchedulerError> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(SchedulerError::Threshold(threshold));
    }
    let mut state = State::new(cluster, |_| false);
    let nodes: Vec<usize> = (0..cluster.nodes.len())
        .filter(|&n| state.eligible(n))
        .collect();
    let mut moved = BTreeSet::new();
    let mut moves = Vec::new();
    loop {
        // `max_by` keeps the last of equals, `min_by` the first: scan in reverse for the
        // most loaded so both pick the lowest id.
        let most = nodes
            .iter()
            .rev()
            .copied()
            .max_by(|&a, &b| state.load(a).total_cmp(&state.load(b)));
        let least = nodes
            .iter()
            .copied()
            .min_by(|&a, &b| state.load(a).total_cmp(&state.load(b)));
        let (Some(most), Some(least)) = (most, least) else {
            break;
        };
        let high = state.load(most);
        if high - state.load(least) <= threshold {
            break;
        }
        let Some((unit, to)) = best_move(&mut state, most, high, &moved) else {
            break;
        };
        state.remove(unit);
        state.add(unit, to);
        moved.insert(unit);
        moves.push(Move {
            unit: cluster.units[unit].name.clone(),
            from: cluster.nodes[most].id,
            to: cluster.nodes[to].id,
        });
    }
    Ok(moves)
}

/// The move off `from` (loaded `high`) that leaves the two nodes' higher load lowest.
fn best_move(
    state: &mut State<'_>,
    from: usize,
    high: f64,
    moved: &BTreeSet<usize>,
) -> Option<(usize, usize)> {
    let units: Vec<usize> = (0..state.cluster.units.len())
        .filter(|&u| state.node_of(u) == Some(from) && !moved.contains(&u))
        .collect();
    let mut best: Option<(f64, usize, usize)> = None;
    let broken = state.broken_required();
    for unit in units {
        state.remove(unit);
        // A unit that another's required affinity holds on to stays.
        let held = state.broken_required() > broken;
        if !held && let Ok(nodes) = state.candidates(unit) {
            let left = state.load(from);
            for to in nodes.into_iter().filter(|&n| n != from) {
                let after = left.max(state.load_with(to, unit));
                if after < high && best.is_none_or(|(b, _, _)| after < b) {
                    best = Some((after, unit, to));
                }
            }
        }
        state.add(unit, from);
    }
    best.map(|(_, unit, to)| (unit, to))
}
