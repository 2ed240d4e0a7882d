//! The embedded bus: a durable [`EventLog`] with a live broadcast in front of it.
//!
//! A subscription never misses an event and never sees one twice:
//! 1. [`EmbeddedBus::subscribe`] joins the broadcast *before* reading the log, so every
//!    event published from then on is either queued on its receiver or already in the log;
//! 2. it replays the log, one page at a time, after the id the caller last saw, until a
//!    page comes back short (the log had nothing newer when it was read);
//! 3. it then takes events from the broadcast, dropping those with ids it has already
//!    yielded (published while it was replaying);
//! 4. when the receiver reports that it lagged (the channel overwrote events it had not
//!    taken), it goes back to step 2 from the last id it yielded.
//!
//! Publishes hold one lock across append and broadcast, so the broadcast carries events in
//! id order and step 3 needs only to compare ids.

use crate::event::{Event, NewEvent};
use crate::log::{EventLog, LogError};
use futures::Stream;
use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use thiserror::Error;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;
use tokio::task::JoinError;

/// How many events the broadcast holds for a slow subscriber before it must go back to
/// the log, unless [`EmbeddedBus::with_capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How many events one replay read takes from the log.
const REPLAY_PAGE: usize = 256;

/// Why publishing or a subscription failed.
#[derive(Debug, Error)]
pub enum BusError {
    /// The event log could not be read or written.
    #[error("the event bus could not use its event log")]
    Log(#[from] LogError),
    /// The blocking task that talks to the log did not finish.
    #[error(
        "the event log task stopped before finishing (the runtime is shutting down, \
         or the log panicked); retry once the daemon is running again"
    )]
    Task(#[from] JoinError),
    /// NATS JetStream refused or failed.
    #[error("NATS JetStream: {0}")]
    Nats(String),
}

/// A durable event log with live fan-out; cheap to clone, and every clone is the same bus.
///
/// Subscriptions end once every clone of the bus has been dropped.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

/// An event waiting to be written, and whom to tell how it went.
type Pending = (NewEvent, oneshot::Sender<Result<Event, BusError>>);

struct Inner {
    log: Arc<dyn EventLog>,
    live: broadcast::Sender<Arc<Event>>,
    /// Events waiting to be written, with whom to tell.
    queue: Mutex<Vec<Pending>>,
    /// Held across append and broadcast, so the broadcast is in id order.
    publishing: Mutex<()>,
}

impl EmbeddedBus {
    /// A bus over `log` whose broadcast holds [`DEFAULT_CAPACITY`] events.
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self::with_capacity(log, DEFAULT_CAPACITY)
    }

    /// A bus over `log` whose broadcast holds `capacity` events (at least one).
    pub fn with_capacity(log: Arc<dyn EventLog>, capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        EmbeddedBus {
            inner: Arc::new(Inner {
                log,
                live,
                queue: Mutex::new(Vec::new()),
                publishing: Mutex::new(()),
            }),
        }
    }

    /// The log behind the bus.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.log
    }

    /// Appends `event` to the log durably, then sends it to live subscribers.
    ///
    /// Publishes that arrive while a write is under way are written together in the next
    /// one (group commit); each call still returns only once its event is durable. Runs on
    /// tokio's blocking pool, so it must be called inside a tokio runtime. Dropping the
    /// returned future does not withdraw the event: once started, the publish completes.
    pub async fn publish(&self, event: NewEvent) -> Result<Event, BusError> {
        let (done, result) = oneshot::channel();
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((event, done));
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.flush()).await?;
        result
            .await
            .map_err(|_| BusError::Log(LogError::new("the event log writer stopped")))?
    }

    /// Every event after `after` (from the start of the log when `None`), then every event
    /// published later, in id order, each exactly once.
    ///
    /// A failed log read is yielded as an error and ends the stream; subscribe again after
    /// the last id seen to go on. The stream must be polled inside a tokio runtime.
    pub fn subscribe(
        &self,
        after: Option<u64>,
    ) -> impl Stream<Item = Result<Arc<Event>, BusError>> + Send + 'static + use<> {
        let subscription = Subscription {
            log: Arc::clone(&self.inner.log),
            live: self.inner.live.subscribe(),
            last: after,
            replayed: VecDeque::new(),
            replaying: true,
            failed: false,
        };
        futures::stream::unfold(subscription, |mut subscription| async move {
            let item = subscription.next().await?;
            Some((item, subscription))
        })
    }
}

impl Inner {
    /// Writes everything queued in one append, then broadcasts it in id order.
    fn flush(&self) {
        // The lock guards no data, only the order; a panic elsewhere cannot break it.
        let _order = self
            .publishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner));
        if batch.is_empty() {
            return; // An earlier flush took this caller's event along.
        }
        let (events, waiting): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.log.append_batch(events) {
            Ok(stored) => {
                for (event, done) in stored.into_iter().zip(waiting) {
                    // Having no live subscriber is fine: the event is in the log for later ones.
                    let _ = self.live.send(Arc::new(event.clone()));
                    let _ = done.send(Ok(event));
                }
            }
            Err(e) => {
                let message = format!(
                    "{e}: {}",
                    e.source().map(ToString::to_string).unwrap_or_default()
                );
                for done in waiting {
                    let _ = done.send(Err(BusError::Log(LogError::new(message.clone()))));
                }
            }
        }
    }
}

/// The state of one subscriber's stream.
struct Subscription {
    log: Arc<dyn EventLog>,
    live: broadcast::Receiver<Arc<Event>>,
    /// The id of the newest event yielded (or the caller's starting point).
    last: Option<u64>,
    /// Events read from the log and not yet yielded.
    replayed: VecDeque<Arc<Event>>,
    /// Whether the log may hold events newer than `last` that the receiver lacks.
    replaying: bool,
    /// Whether an error was yielded, which ends the stream.
    failed: bool,
}

impl Subscription {
    async fn next(&mut self) -> Option<Result<Arc<Event>, BusError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(event) = self.replayed.pop_front() {
                if let Some(event) = self.take_if_new(event) {
                    return Some(Ok(event));
                }
                continue;
            }
            if self.replaying {
                match self.read_page().await {
                    Ok(page) => {
                        self.replaying = page.len() == REPLAY_PAGE;
                        self.replayed.extend(page.into_iter().map(Arc::new));
                    }
                    Err(err) => {
                        self.failed = true;
                        return Some(Err(err));
                    }
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if let Some(event) = self.take_if_new(event) {
                        return Some(Ok(event));
                    }
                }
                Err(RecvError::Lagged(_)) => self.replaying = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// `event`, recorded as the newest yielded, unless it was yielded already.
    fn take_if_new(&mut self, event: Arc<Event>) -> Option<Arc<Event>> {
        if self.last.is_some_and(|last| event.id <= last) {
            return None;
        }
        self.last = Some(event.id);
        Some(event)
    }

    async fn read_page(&self) -> Result<Vec<Event>, BusError> {
        let log = Arc::clone(&self.log);
        let after = self.last;
        Ok(tokio::task::spawn_blocking(move || log.read_from(after, REPLAY_PAGE)).await??)
    }
}

#[cfg(test)]
mod tests;
