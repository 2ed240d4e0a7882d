//! The command line's client for the daemon's API.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::daemon::Health;
use crate::model::UnitStatus;

/// A client call that failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The daemon is not reachable.
    #[error(
        "no hypernix daemon answers at {addr}: {cause}; start one with `hypernix serve` or `hypernix up FILE`"
    )]
    Unreachable {
        /// The address tried.
        addr: String,
        /// The cause.
        cause: String,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
    /// The answer was not what the API promises.
    #[error("the daemon at {addr} answered something unexpected: {cause}")]
    Protocol {
        /// The address.
        addr: String,
        /// The cause.
        cause: String,
    },
}

/// A client of the daemon at one address.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the daemon listening at `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Client {
            addr: addr.into(),
            agent,
        }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn finish<T: DeserializeOwned>(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut r = r.map_err(|e| ClientError::Unreachable {
            addr: self.addr.clone(),
            cause: e.to_string(),
        })?;
        let status = r.status();
        let body: Value = r
            .body_mut()
            .read_json()
            .map_err(|e| ClientError::Protocol {
                addr: self.addr.clone(),
                cause: e.to_string(),
            })?;
        if !status.is_success() {
            let msg = body["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_string();
            return Err(ClientError::Refused(msg));
        }
        serde_json::from_value(body).map_err(|e| ClientError::Protocol {
            addr: self.addr.clone(),
            cause: e.to_string(),
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.finish(self.agent.get(&self.url(path)).call())
    }

    fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ClientError> {
        self.finish(self.agent.post(&self.url(path)).send_json(body))
    }

    /// The daemon's health.
    pub fn health(&self) -> Result<Health, ClientError> {
        self.get("/v1/health")
    }

    /// Applies a configuration; answers the plan.
    pub fn apply(&self, hypervisor: &Map<String, Value>) -> Result<Value, ClientError> {
        self.post("/v1/apply", &json!({ "hypervisor": hypervisor }))
    }

    /// All units.
    pub fn units(&self) -> Result<Vec<UnitStatus>, ClientError> {
        self.get("/v1/units")
    }

    /// One unit.
    pub fn unit(&self, name: &str) -> Result<UnitStatus, ClientError> {
        self.get(&format!("/v1/units/{name}"))
    }

    /// Starts, stops, restarts, pauses or resumes a unit.
    pub fn act(&self, name: &str, action: &str) -> Result<UnitStatus, ClientError> {
        self.post(&format!("/v1/units/{name}/{action}"), &json!({}))
    }

    /// The last `tail` bytes of a unit's console log.
    pub fn console_log(&self, name: &str, tail: u64) -> Result<String, ClientError> {
        let v: Value = self.get(&format!("/v1/units/{name}/console?tail={tail}"))?;
        Ok(v["log"].as_str().unwrap_or_default().to_string())
    }

    /// Events after `after`.
    pub fn events(&self, after: Option<u64>) -> Result<Vec<Value>, ClientError> {
        match after {
            Some(id) => self.get(&format!("/v1/events?after={id}")),
            None => self.get("/v1/events"),
        }
    }

    /// Stops the daemon, and its units first when `stop_units`.
    pub fn shutdown(&self, stop_units: bool) -> Result<Value, ClientError> {
        self.post("/v1/shutdown", &json!({ "stopUnits": stop_units }))
    }
}
