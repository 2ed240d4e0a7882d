//! The event bus on NATS JetStream, for daemons that share one event stream.
//!
//! 1. [`NatsBus::connect`] creates (or finds) the stream, by default `HYPERNIX`, holding
//!    the subjects `hypernix.>` for `max_age`.
//! 2. An event of kind `unit.started` is published on `hypernix.unit.started`, its body the
//!    event as JSON; the stream's sequence number, from the publish acknowledgement, is its id.
//! 3. A subscription is an ordered consumer starting at the sequence after the id the
//!    subscriber last saw: it replays the stream and then continues live, in order, and
//!    a subscriber that reconnects with its last id misses nothing the stream still holds.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, stream};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::{BusError, Event, EventBus, NewEvent};

/// The event bus on a NATS JetStream stream.
#[derive(Clone)]
pub struct NatsBus {
    js: jetstream::Context,
    stream: String,
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
        Ok(NatsBus {
            js,
            stream: stream.to_string(),
        })
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

    fn subscribe(&self, after: Option<u64>) -> BoxStream<'static, Result<Event, BusError>> {
        let bus = self.clone();
        let start = async move {
            let stream = bus.stream().await?;
            let deliver_policy = match after {
                Some(id) => DeliverPolicy::ByStartSequence {
                    start_sequence: id + 1,
                },
                None => DeliverPolicy::All,
            };
            let consumer = stream
                .create_consumer(jetstream::consumer::pull::OrderedConfig {
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(nats)?;
            let messages = consumer.messages().await.map_err(nats)?;
            Ok::<_, BusError>(messages.map_err(nats).and_then(|m| async move {
                let sequence = m.info().map_err(nats)?.stream_sequence;
                decode(sequence, &m.payload)
            }))
        };
        futures::stream::once(start).try_flatten().boxed()
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
