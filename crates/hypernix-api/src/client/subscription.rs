//! GraphQL subscriptions over WebSocket (the `graphql-transport-ws` protocol), blocking.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::{Client, ClientError};

/// A live subscription: each result the daemon pushes, in order.
pub struct Subscription {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    addr: String,
}

impl Client {
    /// Subscribes to `query` (a GraphQL subscription) with `variables`.
    pub fn subscribe(&self, query: &str, variables: Value) -> Result<Subscription, ClientError> {
        let unreachable = |cause: String| ClientError::Unreachable {
            addr: self.addr.clone(),
            cause,
        };
        let mut request = format!("ws://{}/graphql", self.addr)
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().expect("a valid header"),
        );
        let (ws, _) = tungstenite::connect(request).map_err(|e| unreachable(e.to_string()))?;
        let mut sub = Subscription {
            ws,
            addr: self.addr.clone(),
        };
        let init = match self.token() {
            Some(token) => json!({ "type": "connection_init", "payload": { "token": token } }),
            None => json!({ "type": "connection_init" }),
        };
        sub.send(init)?;
        match sub.receive(Some(Duration::from_secs(10)))? {
            Some(m) if m["type"] == "connection_ack" => {}
            other => return Err(sub.protocol(format!("no connection_ack but {other:?}"))),
        }
        let payload = json!({ "query": query, "variables": variables });
        sub.send(json!({ "id": "1", "type": "subscribe", "payload": payload }))?;
        Ok(sub)
    }
}

impl Subscription {
    fn protocol(&self, cause: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            cause,
        }
    }

    fn send(&mut self, message: Value) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(message.to_string()))
            .map_err(|e| self.protocol(e.to_string()))
    }

    /// The next protocol message, or `None` when `wait` passes first.
    fn receive(&mut self, wait: Option<Duration>) -> Result<Option<Value>, ClientError> {
        if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
            s.set_read_timeout(wait)
                .map_err(|e| self.protocol(e.to_string()))?;
        }
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    let m: Value =
                        serde_json::from_str(&t).map_err(|e| self.protocol(e.to_string()))?;
                    if m["type"] == "ping" {
                        self.send(json!({ "type": "pong" }))?;
                        continue;
                    }
                    return Ok(Some(m));
                }
                Ok(Message::Close(_)) => return Err(self.protocol("closed by the daemon".into())),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(self.protocol(e.to_string())),
            }
        }
    }

    /// The next result's `data`, waiting at most `wait`; `None` when none came. Errors the
    /// daemon sends for the subscription, and its end, are errors.
    pub fn next(&mut self, wait: Duration) -> Result<Option<Value>, ClientError> {
        let Some(m) = self.receive(Some(wait))? else {
            return Ok(None);
        };
        match m["type"].as_str() {
            Some("next") if m["payload"]["errors"].is_array() => Err(ClientError::Refused(
                m["payload"]["errors"][0]["message"]
                    .as_str()
                    .unwrap_or("subscription failed")
                    .to_string(),
            )),
            Some("next") => Ok(Some(m["payload"]["data"].clone())),
            Some("error") => Err(ClientError::Refused(m["payload"].to_string())),
            Some("complete") => Err(self.protocol("the subscription ended".into())),
            _ => Ok(None),
        }
    }
}
