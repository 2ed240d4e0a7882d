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
pub mod nats;

pub use bus::{BusError, EmbeddedBus};
pub use nats::NatsBus;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;

/// An event bus: publish, read the history, subscribe from an id. Implemented by the
/// embedded bus (the daemon's own log) and by NATS JetStream (shared by daemons).
pub trait EventBus: Send + Sync {
    /// Publishes an event durably; answers it with its id.
    fn publish(&self, event: NewEvent) -> BoxFuture<'_, Result<Event, BusError>>;
    /// At most `limit` events after `after` (from the start when `None`).
    fn read(&self, after: Option<u64>, limit: usize)
    -> BoxFuture<'_, Result<Vec<Event>, BusError>>;
    /// Every event after `after`, then every later one, in id order, each once (shared:
    /// many subscribers see one event without copying it).
    fn subscribe(&self, after: Option<u64>) -> BoxStream<'static, Result<Arc<Event>, BusError>>;
    /// The id of the newest event, if any.
    fn last_id(&self) -> BoxFuture<'_, Result<Option<u64>, BusError>>;
}

impl EventBus for EmbeddedBus {
    fn publish(&self, event: NewEvent) -> BoxFuture<'_, Result<Event, BusError>> {
        Box::pin(EmbeddedBus::publish(self, event))
    }

    fn read(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Event>, BusError>> {
        Box::pin(async move { Ok(self.log().read_from(after, limit)?) })
    }

    fn subscribe(&self, after: Option<u64>) -> BoxStream<'static, Result<Arc<Event>, BusError>> {
        Box::pin(EmbeddedBus::subscribe(self, after))
    }

    fn last_id(&self) -> BoxFuture<'_, Result<Option<u64>, BusError>> {
        Box::pin(async move { Ok(self.log().last_id()?) })
    }
}
pub use event::{Event, NewEvent};
pub use log::{EventLog, LogError};
