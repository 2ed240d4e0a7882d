//! The event bus on NATS JetStream, for daemons that share one event stream.
//!
//! 1. [`NatsBus::connect`] creates (or finds) the stream, by default `HYPERNIX`, holding
//!    the subjects `hypernix.>` for `max_age`.
//! 2. An event of kind `unit.started` is published on `hypernix.unit.started`, its body the
//!    event as JSON; the stream's sequence number, from the publish acknowledgement, is its id.
//! 3. One ordered consumer per bus (per daemon) follows the stream from the moment of
//!    connecting and fans events out to local subscribers through a broadcast channel.
//! 4. A subscription joins the broadcast, then replays the stream after the id the
//!    subscriber last saw (direct gets by sequence), then follows the broadcast dropping
//!    ids it already yielded; when it falls behind the broadcast it replays again. So a
//!    subscriber that reconnects with its last id misses nothing the stream still holds.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, stream};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::{BusError, Event, EventBus, NewEvent};

/// Events the local fan-out holds for a slow subscriber before it must replay.
const FANOUT_CAPACITY: usize = 4096;
/// Events one replay read takes from the stream.
const REPLAY_PAGE: usize = 256;

/// The event bus on a NATS JetStream stream.
#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    stream: String,
    live: tokio::sync::broadcast::Sender<Arc<Event>>,
}

fn nats(e: impl std::fmt::Display) -> BusError {
    BusError::Nats(e.to_string())
}

impl NatsBus {
    /// Connects to `url` and creates or opens the stream `stream` keeping events `max_age`.
    pub async fn connect(url: &str, stream: &str, max_age: Duration) -> Result<NatsBus, BusError> {
        let client = async_nats::connect(url).await.map_err(|e| {
            BusError::Nats(format!(
                "cannot connect to {url}: {e}; is nats-server -js running?"
            ))
        })?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: stream.to_string(),
            subjects: vec!["hypernix.>".to_string()],
            max_age,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Nats(format!("stream {stream}: {e}")))?;
        let (live, _) = tokio::sync::broadcast::channel(FANOUT_CAPACITY);
        let bus = NatsBus {
            js,
            stream: stream.to_string(),
            live,
        };
        bus.follow().await?;
        Ok(bus)
    }

    /// Starts the one consumer that feeds the local fan-out with new events.
    async fn follow(&self) -> Result<(), BusError> {
        let consumer = self
            .stream()
            .await?
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let mut messages = consumer.messages().await.map_err(nats)?;
        let live = self.live.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = messages.next().await {
                let Ok(info) = m.info() else { continue };
                if let Ok(e) = decode(info.stream_sequence, &m.payload) {
                    let _ = live.send(Arc::new(e));
                }
            }
        });
        Ok(())
    }

    async fn stream(&self) -> Result<stream::Stream, BusError> {
        self.js.get_stream(&self.stream).await.map_err(nats)
    }
}

/// The subject of an event kind: `unit.started` → `hypernix.unit.started`.
fn subject(kind: &str) -> String {
    let safe: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("hypernix.{safe}")
}

/// An event from a stream message: the body, with the stream sequence as its id.
fn decode(sequence: u64, payload: &[u8]) -> Result<Event, BusError> {
    let mut e: Event = serde_json::from_slice(payload)
        .map_err(|e| BusError::Nats(format!("message {sequence} is not a hypernix event: {e}")))?;
    e.id = sequence;
    Ok(e)
}

impl EventBus for NatsBus {
    fn publish(&self, event: NewEvent) -> BoxFuture<'_, Result<Event, BusError>> {
        Box::pin(async move {
            let subject = subject(&event.kind);
            let mut e = event.into_event(0, chrono::Utc::now());
            let body = serde_json::to_vec(&e).map_err(nats)?;
            let ack = self
                .js
                .publish(subject, body.into())
                .await
                .map_err(nats)?
                .await
                .map_err(nats)?;
            e.id = ack.sequence;
            Ok(e)
        })
    }

    fn read(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Event>, BusError>> {
        Box::pin(async move {
            let stream = self.stream().await?;
            let last = stream.get_info().await.map_err(nats)?.state.last_sequence;
            let mut events = Vec::new();
            let mut seq = after.unwrap_or(0) + 1;
            while seq <= last && events.len() < limit {
                // A sequence may be gone (expired by max_age); skip it.
                if let Ok(m) = stream.get_raw_message(seq).await {
                    events.push(decode(m.sequence, &m.payload)?);
                }
                seq += 1;
            }
            Ok(events)
        })
    }

    fn last_id(&self) -> BoxFuture<'_, Result<Option<u64>, BusError>> {
        Box::pin(async move {
            let last = self
                .stream()
                .await?
                .get_info()
                .await
                .map_err(nats)?
                .state
                .last_sequence;
            Ok((last > 0).then_some(last))
        })
    }

    fn subscribe(&self, after: Option<u64>) -> BoxStream<'static, Result<Arc<Event>, BusError>> {
        let state = Follow {
            bus: self.clone(),
            rx: self.live.subscribe(),
            last: after,
            backlog: std::collections::VecDeque::new(),
            replaying: true,
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
        .boxed()
    }
}

/// A subscription's position: replaying the stream, or following the fan-out.
struct Follow {
    bus: NatsBus,
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    last: Option<u64>,
    backlog: std::collections::VecDeque<Arc<Event>>,
    replaying: bool,
    failed: bool,
}

impl Follow {
    async fn next(&mut self) -> Option<Result<Arc<Event>, BusError>> {
        use tokio::sync::broadcast::error::RecvError;
        if self.failed {
            return None;
        }
        loop {
            if let Some(e) = self.backlog.pop_front() {
                self.last = Some(e.id);
                return Some(Ok(e));
            }
            if self.replaying {
                match self.bus.read(self.last, REPLAY_PAGE).await {
                    Ok(page) if page.is_empty() => self.replaying = false,
                    Ok(page) => self.backlog.extend(page.into_iter().map(Arc::new)),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(e) if self.last.is_some_and(|l| e.id <= l) => continue,
                Ok(e) => {
                    self.last = Some(e.id);
                    return Some(Ok(e));
                }
                Err(RecvError::Lagged(_)) => self.replaying = true,
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_kinds() {
        assert_eq!(subject("unit.started"), "hypernix.unit.started");
        assert_eq!(subject("unit.weird kind>*"), "hypernix.unit.weird_kind__");
    }

    #[test]
    fn foreign_messages_are_errors() {
        assert!(decode(3, b"not json").is_err());
        let e = NewEvent::new("unit.started", "unit/a").into_event(0, chrono::Utc::now());
        let decoded = decode(7, &serde_json::to_vec(&e).unwrap()).unwrap();
        assert_eq!(decoded.id, 7);
    }
}
