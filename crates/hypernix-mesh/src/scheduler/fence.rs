//! Fencing: a node cut off from quorum stops its units before anyone re-places them.
//!
//! The invariant, with the numbers of [`Timeouts`]: a node stops its units once
//! `fence` has passed since it last had quorum; the cluster re-places them once `grace`
//! has passed since it last heard from the node. The members that gave the node its last
//! quorum heard from it then, so the cluster's "last heard" is no earlier than the node's
//! "last quorum", and `fence < grace` means the node has stopped before the units start
//! elsewhere. With a 10 s fence and a 30 s grace period, a node that last had quorum at
//! t = 100 s stops at 110 s, and its units start elsewhere at 130 s at the earliest. The gap
//! must cover clock drift between the nodes and the time a unit takes to stop.

use super::Timeouts;
use std::time::Duration;

/// What a node does with its units, from its view of quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceDecision {
    /// Keep running them; stop at `until` unless quorum is confirmed again before.
    Run {
        /// When the node must stop its units without a new quorum.
        until: Duration,
    },
    /// Stop them now: the cluster may re-place them after its grace period.
    Stop,
}

/// The decision of a node that last had quorum at `last_quorum` (the time it sent the last
/// message a quorum answered), at `now`.
pub fn fence(last_quorum: Duration, now: Duration, timeouts: &Timeouts) -> FenceDecision {
    let until = last_quorum.saturating_add(timeouts.fence());
    if now >= until {
        FenceDecision::Stop
    } else {
        FenceDecision::Run { until }
    }
}
