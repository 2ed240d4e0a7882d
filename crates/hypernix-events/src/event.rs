//! The event record, as stored in the log and sent to subscribers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Something that happened, as stored in the event log: immutable, with a unique id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the log; ids only ever increase.
    pub id: u64,
    /// When the log stored the event.
    pub time: DateTime<Utc>,
    /// What happened, dotted: `unit.started`, `unit.failed`, `backup.finished`.
    pub kind: String,
    /// What it happened to, as `type/name`: `unit/web`, `volume/web-root`.
    pub subject: String,
    /// Details of the event; `null` when there are none.
    #[serde(default)]
    pub payload: Value,
    /// Ties together the events caused by one request or one reconcile pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// An event about to be published: everything but the id and time the log assigns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEvent {
    /// What happened, dotted: `unit.started`.
    pub kind: String,
    /// What it happened to, as `type/name`: `unit/web`.
    pub subject: String,
    /// Details of the event; `null` when there are none.
    #[serde(default)]
    pub payload: Value,
    /// Ties together the events caused by one request or one reconcile pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl NewEvent {
    /// An event of `kind` about `subject`, with a `null` payload and no correlation id.
    pub fn new(kind: impl Into<String>, subject: impl Into<String>) -> Self {
        NewEvent {
            kind: kind.into(),
            subject: subject.into(),
            payload: Value::Null,
            correlation_id: None,
        }
    }

    /// The same event with `payload` as its details.
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }

    /// The same event tied to the request or pass `correlation_id`.
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// The stored event, once a log has given it `id` and `time`.
    pub fn into_event(self, id: u64, time: DateTime<Utc>) -> Event {
        Event {
            id,
            time,
            kind: self.kind,
            subject: self.subject,
            payload: self.payload,
            correlation_id: self.correlation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_in_camel_case_and_round_trips() {
        let time = DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let event = NewEvent::new("unit.started", "unit/web")
            .with_payload(json!({"pid": 42}))
            .with_correlation_id("req-1")
            .into_event(7, time);
        let text = serde_json::to_value(&event).unwrap();
        assert_eq!(
            text,
            json!({
                "id": 7,
                "time": "2025-01-02T03:04:05Z",
                "kind": "unit.started",
                "subject": "unit/web",
                "payload": {"pid": 42},
                "correlationId": "req-1",
            })
        );
        assert_eq!(serde_json::from_value::<Event>(text).unwrap(), event);
    }

    #[test]
    fn payload_and_correlation_id_may_be_left_out() {
        let event: NewEvent =
            serde_json::from_value(json!({"kind": "unit.failed", "subject": "unit/db"})).unwrap();
        assert_eq!(event, NewEvent::new("unit.failed", "unit/db"));
        let text = serde_json::to_value(&event).unwrap();
        assert!(text.get("correlationId").is_none());
    }
}
