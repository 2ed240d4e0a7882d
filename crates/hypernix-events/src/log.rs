//! The durable, append-only event log that a bus replays from.

use crate::event::{Event, NewEvent};
use std::error::Error;
use thiserror::Error;

/// A durable, append-only sequence of events, ordered by id.
///
/// Implementations are blocking (they write to disk); async code calls them through
/// [`crate::EmbeddedBus`], which runs them on tokio's blocking pool.
pub trait EventLog: Send + Sync {
    /// Stores `event` durably with the next id (greater than every id before it, also
    /// across restarts) and the current time, and returns the stored event.
    fn append(&self, event: NewEvent) -> Result<Event, LogError>;

    /// Stores `events` durably in order, as [`EventLog::append`] would one by one; a log
    /// that can should do it in one write (the bus batches concurrent publishes).
    fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, LogError> {
        events.into_iter().map(|e| self.append(e)).collect()
    }

    /// Up to `limit` events with ids greater than `after_id` (all events when `None`),
    /// in increasing id order.
    fn read_from(&self, after_id: Option<u64>, limit: usize) -> Result<Vec<Event>, LogError>;

    /// The id of the newest event, or `None` while the log is empty.
    fn last_id(&self) -> Result<Option<u64>, LogError>;
}

/// The log's storage failed; the source says how.
#[derive(Debug, Error)]
#[error("the event log's storage failed")]
pub struct LogError(#[source] Box<dyn Error + Send + Sync + 'static>);

impl LogError {
    /// Wraps the storage's own error, which becomes this error's source.
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        LogError(source.into())
    }
}
