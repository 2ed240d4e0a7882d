//! Events: what happened to which subject, in one durable, totally ordered log.
//!
//! [`Event`] is the record; [`EventLog`] is the durable, append-only store that assigns
//! ids (the daemon's redb state store implements it); [`EmbeddedBus`] puts a live fan-out
//! in front of a log so that subscribers see every event exactly once, in id order.
//!
//! An event travels in four steps:
//! 1. a component builds a [`NewEvent`] (`kind`, `subject`, `payload`) and calls
//!    [`EmbeddedBus::publish`];
//! 2. the bus appends it to the [`EventLog`], which durably assigns the next id and the time;
//! 3. the bus broadcasts the stored [`Event`] to live subscribers (publishes are serialized,
//!    so the broadcast order is the id order);
//! 4. a subscriber ([`EmbeddedBus::subscribe`]) replays the log after the id it last saw,
//!    then follows the broadcast, dropping anything it already replayed, and goes back to
//!    the log whenever it falls behind the broadcast.

#![warn(missing_docs)]

pub mod bus;
pub mod event;
pub mod log;
#[cfg(test)]
mod memory;

pub use bus::{BusError, EmbeddedBus};
pub use event::{Event, NewEvent};
pub use log::{EventLog, LogError};
