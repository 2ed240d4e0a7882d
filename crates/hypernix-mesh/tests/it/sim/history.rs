//! A history of register operations: invocations and responses, in the order they happened.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// What a client asked of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the key.
    Read,
    /// Write a value.
    Write(u64),
    /// Compare-and-swap: from `.0` (`None`: absent) to `.1`.
    Cas(Option<u64>, u64),
}

/// What the cluster answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// A read saw this value (`None`: absent).
    Read(Option<u64>),
    /// A write took effect.
    Written,
    /// A compare-and-swap succeeded (`true`) or found another value (`false`).
    Cas(bool),
}

/// One operation: its call and, if it completed, its return, as positions in one total order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The client that made it.
    pub client: usize,
    /// The key it addressed.
    pub key: u64,
    /// What was asked.
    pub input: Input,
    /// What came back; `None` if the outcome is unknown (the op may or may not have happened).
    pub output: Option<Output>,
    /// When it was invoked.
    pub call: u64,
    /// When it returned; `u64::MAX` if it never did.
    pub ret: u64,
    /// Simulated time at call and return, for reports.
    pub times: (Duration, Option<Duration>),
}

#[derive(Default)]
struct Inner {
    clock: u64,
    ops: Vec<Option<Op>>,
}

/// A shared, append-only recorder of operations.
#[derive(Clone, Default)]
pub struct History {
    inner: Rc<RefCell<Inner>>,
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl History {
    /// Records the invocation of `input` on `key` by `client`; returns the op's handle.
    pub fn invoke(&self, client: usize, key: u64, input: Input) -> usize {
        let mut inner = self.inner.borrow_mut();
        inner.clock += 1;
        let op = Op {
            client,
            key,
            input,
            output: None,
            call: inner.clock,
            ret: u64::MAX,
            times: (now(), None),
        };
        inner.ops.push(Some(op));
        inner.ops.len() - 1
    }

    /// Records that op `id` returned `output`.
    pub fn complete(&self, id: usize, output: Output) {
        let mut inner = self.inner.borrow_mut();
        inner.clock += 1;
        let clock = inner.clock;
        if let Some(Some(op)) = inner.ops.get_mut(id) {
            op.output = Some(output);
            op.ret = clock;
            op.times.1 = Some(now());
        }
    }

    /// Drops op `id`: it certainly had no effect (refused, or a read that failed).
    pub fn forget(&self, id: usize) {
        if let Some(op) = self.inner.borrow_mut().ops.get_mut(id) {
            *op = None;
        }
    }

    /// The operations recorded, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        self.inner.borrow().ops.iter().flatten().cloned().collect()
    }
}
