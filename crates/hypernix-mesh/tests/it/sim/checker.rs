//! A linearizability checker for registers (Wing & Gong's search, with Lowe's memoization of
//! (linearized set, state) as in Porcupine), run separately on each key.
//!
//! An op with an unknown outcome returns "at infinity": it may be linearized anywhere after its
//! call, or effectively never (at the very end).

use super::history::{Input, Op, Output};
use std::collections::{BTreeMap, HashSet};

/// A key whose history no sequential register explains.
#[derive(Debug)]
pub struct Violation {
    /// The key.
    pub key: u64,
    /// Its operations, in call order.
    pub ops: Vec<Op>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "key {} is not linearizable:", self.key)?;
        for op in &self.ops {
            writeln!(
                f,
                "  client {} {:?} -> {:?}  [{} .. {}] ({:?} .. {:?})",
                op.client, op.input, op.output, op.call, op.ret, op.times.0, op.times.1
            )?;
        }
        Ok(())
    }
}

/// The register's next state after `input` answered `output`, or `None` if that answer is impossible.
fn step(state: Option<u64>, input: Input, output: Option<Output>) -> Option<Option<u64>> {
    match (input, output) {
        (Input::Read, Some(Output::Read(seen))) => (seen == state).then_some(state),
        (Input::Read, None) => Some(state),
        (Input::Write(v), None | Some(Output::Written)) => Some(Some(v)),
        (Input::Cas(expected, new), None) => {
            Some(if state == expected { Some(new) } else { state })
        }
        (Input::Cas(expected, new), Some(Output::Cas(true))) => {
            (state == expected).then_some(Some(new))
        }
        (Input::Cas(expected, _), Some(Output::Cas(false))) => (state != expected).then_some(state),
        _ => None,
    }
}

/// Checks every key's history; returns the keys that are not linearizable.
pub fn check(ops: &[Op]) -> Vec<Violation> {
    let mut by_key: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key).or_default().push(op.clone());
    }
    by_key
        .into_iter()
        .filter(|(_, ops)| !linearizable(ops))
        .map(|(key, ops)| Violation { key, ops })
        .collect()
}

const NIL: usize = usize::MAX;

/// Whether one key's ops, starting from an absent register, are linearizable.
fn linearizable(ops: &[Op]) -> bool {
    // Events: a call and a return per op, in time order; a doubly linked list over them with a
    // head sentinel at index 0, so ops can be lifted out and put back (dancing links).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, false, i));
        events.push((op.ret, true, i));
    }
    events.sort_by_key(|(time, is_return, i)| (*time, *is_return, *i));
    let n = events.len() + 1;
    let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NIL } else { i }).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    prev[0] = NIL;
    let mut return_of = vec![0; ops.len()];
    for (at, (_, is_return, op)) in events.iter().enumerate() {
        if *is_return {
            return_of[*op] = at + 1;
        }
    }
    let event = |node: usize| events[node - 1];
    let unlink = |node: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[node]] = next[node];
        if next[node] != NIL {
            prev[next[node]] = prev[node];
        }
    };
    let relink = |node: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[node]] = node;
        if next[node] != NIL {
            prev[next[node]] = node;
        }
    };

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut state: Option<u64> = None;
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut node = next[0];
    while next[0] != NIL {
        let (_, is_return, op) = event(node);
        if !is_return {
            if let Some(after) = step(state, ops[op].input, ops[op].output) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), after)) {
                    stack.push((node, state));
                    state = after;
                    unlink(node, &mut next, &mut prev);
                    unlink(return_of[op], &mut next, &mut prev);
                    node = next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            node = next[node];
        } else {
            // Some op returned before we could linearize it: undo the last choice.
            let Some((call, before)) = stack.pop() else {
                return false;
            };
            let (_, _, op) = event(call);
            state = before;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(return_of[op], &mut next, &mut prev);
            relink(call, &mut next, &mut prev);
            node = next[call];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An op on key 0 from `client`, called at `call` and returning at `ret` (`None`: never).
    fn op(client: usize, input: Input, output: Option<Output>, call: u64, ret: Option<u64>) -> Op {
        Op {
            client,
            key: 0,
            input,
            output,
            call,
            ret: ret.unwrap_or(u64::MAX),
            times: (Duration::ZERO, None),
        }
    }

    use Input::{Cas, Read, Write};
    use Output::{Read as Saw, Written};

    #[test]
    fn sequential_writes_and_reads_are_linearizable() {
        let ops = [
            op(0, Write(1), Some(Written), 1, Some(2)),
            op(0, Read, Some(Saw(Some(1))), 3, Some(4)),
            op(1, Cas(Some(1), 2), Some(Output::Cas(true)), 5, Some(6)),
            op(1, Read, Some(Saw(Some(2))), 7, Some(8)),
        ];
        assert!(check(&ops).is_empty());
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_a_violation() {
        let ops = [
            op(0, Write(1), Some(Written), 1, Some(2)),
            op(0, Write(2), Some(Written), 3, Some(4)),
            op(1, Read, Some(Saw(Some(1))), 5, Some(6)),
        ];
        let violations = check(&ops);
        assert_eq!(violations.len(), 1);
        assert!(
            violations[0]
                .to_string()
                .contains("key 0 is not linearizable")
        );
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_either_order() {
        // The read overlaps both writes, so it may see either.
        for seen in [Some(1), Some(2), None] {
            let ops = [
                op(0, Write(1), Some(Written), 1, Some(5)),
                op(1, Write(2), Some(Written), 2, Some(6)),
                op(2, Read, Some(Saw(seen)), 3, Some(4)),
            ];
            assert!(check(&ops).is_empty(), "read of {seen:?}");
        }
    }

    #[test]
    fn reads_must_agree_on_one_order_of_concurrent_writes() {
        // Two writes overlap; one reader sees 1 then 2, another 2 then 1: no single order.
        let ops = [
            op(0, Write(1), Some(Written), 1, Some(10)),
            op(1, Write(2), Some(Written), 2, Some(11)),
            op(2, Read, Some(Saw(Some(1))), 3, Some(4)),
            op(2, Read, Some(Saw(Some(2))), 5, Some(6)),
            op(3, Read, Some(Saw(Some(2))), 3, Some(4)),
            op(3, Read, Some(Saw(Some(1))), 7, Some(8)),
        ];
        assert_eq!(check(&ops).len(), 1);
    }

    #[test]
    fn an_unknown_write_may_or_may_not_have_happened() {
        let happened = [
            op(0, Write(1), None, 1, None),
            op(1, Read, Some(Saw(Some(1))), 2, Some(3)),
        ];
        assert!(check(&happened).is_empty());
        let not_yet = [
            op(0, Write(1), None, 1, None),
            op(1, Read, Some(Saw(None)), 2, Some(3)),
            op(1, Read, Some(Saw(Some(1))), 4, Some(5)),
        ];
        assert!(check(&not_yet).is_empty());
        // But once seen, it cannot be un-happened.
        let flicker = [
            op(0, Write(1), None, 1, None),
            op(1, Read, Some(Saw(Some(1))), 2, Some(3)),
            op(1, Read, Some(Saw(None)), 4, Some(5)),
        ];
        assert_eq!(check(&flicker).len(), 1);
    }

    #[test]
    fn a_failed_cas_must_have_seen_another_value() {
        let ops = [
            op(0, Write(1), Some(Written), 1, Some(2)),
            op(1, Cas(Some(1), 5), Some(Output::Cas(false)), 3, Some(4)),
        ];
        assert_eq!(check(&ops).len(), 1);
        let ok = [
            op(0, Write(1), Some(Written), 1, Some(2)),
            op(1, Cas(Some(3), 5), Some(Output::Cas(false)), 3, Some(4)),
            op(1, Cas(Some(1), 5), Some(Output::Cas(true)), 5, Some(6)),
            op(2, Read, Some(Saw(Some(5))), 7, Some(8)),
        ];
        assert!(check(&ok).is_empty());
    }

    #[test]
    fn keys_are_checked_separately() {
        let mut other = op(1, Read, Some(Saw(Some(9))), 1, Some(2));
        other.key = 1;
        let ops = [op(0, Write(1), Some(Written), 1, Some(2)), other];
        let violations = check(&ops);
        assert_eq!(violations.iter().map(|v| v.key).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn many_concurrent_clients_are_checked_quickly() {
        // 8 clients, 40 overlapping rounds each: a wide search the memoization keeps small.
        let mut ops = Vec::new();
        let mut t = 0;
        for round in 0..40u64 {
            for client in 0..8usize {
                let v = round * 8 + client as u64;
                ops.push(op(
                    client,
                    Write(v),
                    Some(Written),
                    t + client as u64,
                    Some(t + 20 + client as u64),
                ));
            }
            t += 10;
        }
        let last = ops.iter().map(|o| o.ret).max().unwrap();
        ops.push(op(
            9,
            Read,
            Some(Saw(Some(39 * 8 + 7))),
            last + 1,
            Some(last + 2),
        ));
        assert!(check(&ops).is_empty());
    }
}
