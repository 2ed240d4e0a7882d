//! The command line's client: GraphQL over HTTP, the same API every other client uses.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use thiserror::Error;

mod subscription;

pub use subscription::Subscription;

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
    /// The daemon answered with errors.
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

/// A compute unit as the command line shows it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    /// Name.
    pub name: String,
    /// State, such as `RUNNING`.
    pub state: String,
    /// Whether it should run.
    pub desired_running: bool,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// Memory the guest has now.
    pub live_memory: u64,
    /// QEMU's pid.
    pub pid: Option<u32>,
    /// Accelerator.
    pub accel: Option<String>,
    /// Last start.
    pub started_at: Option<DateTime<Utc>>,
    /// Readiness line seen.
    pub ready: bool,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// Restarts by policy.
    pub restarts: u32,
    /// Host ports forwarded into the guest.
    #[serde(default)]
    pub ports: Vec<Port>,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Port {
    /// Port inside the guest.
    pub internal: u16,
    /// Port on the host.
    pub external: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

const UNIT_FIELDS: &str = "name state desiredRunning vcpus memory liveMemory pid accel startedAt \
     ready reason restarts ports { internal external protocol }";

/// A client of the daemon at one address.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    agent: ureq::Agent,
    token: Token,
}

/// Where the client's capability token comes from.
#[derive(Debug, Clone)]
enum Token {
    None,
    Given(String),
    /// Read at each request (the daemon writes its root credential when it starts).
    File(std::path::PathBuf),
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
            token: Token::None,
        }
    }

    /// The same client, sending `token` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Client {
        self.token = Token::Given(token.into());
        self
    }

    /// The same client, sending the token in `path` (read at each request, if present).
    pub fn with_token_file(mut self, path: impl Into<std::path::PathBuf>) -> Client {
        self.token = Token::File(path.into());
        self
    }

    fn token(&self) -> Option<String> {
        match &self.token {
            Token::None => None,
            Token::Given(t) => Some(t.clone()),
            Token::File(p) => std::fs::read_to_string(p)
                .ok()
                .map(|t| t.trim().to_string()),
        }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs a GraphQL operation and returns `data.FIELD` decoded (all of `data` when
    /// `field` is empty).
    pub fn request<T: DeserializeOwned>(
        &self,
        query: &str,
        variables: Value,
        field: &str,
    ) -> Result<T, ClientError> {
        let protocol = |cause: String| ClientError::Protocol {
            addr: self.addr.clone(),
            cause,
        };
        let mut post = self.agent.post(&format!("http://{}/graphql", self.addr));
        if let Some(t) = self.token() {
            post = post.header("Authorization", &format!("Bearer {t}"));
        }
        let mut r = post
            .send_json(json!({ "query": query, "variables": variables }))
            .map_err(|e| ClientError::Unreachable {
                addr: self.addr.clone(),
                cause: e.to_string(),
            })?;
        let body: Value = r
            .body_mut()
            .read_json()
            .map_err(|e| protocol(e.to_string()))?;
        if let Some(errors) = body
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let messages: Vec<String> = errors
                .iter()
                .map(|e| {
                    let msg = e["message"]
                        .as_str()
                        .unwrap_or("request failed")
                        .to_string();
                    match e["extensions"]["details"].as_array() {
                        Some(d) => {
                            let lines: Vec<&str> = d.iter().filter_map(Value::as_str).collect();
                            format!("{msg}\n  - {}", lines.join("\n  - "))
                        }
                        None => msg,
                    }
                })
                .collect();
            return Err(ClientError::Refused(messages.join("; ")));
        }
        let data = if field.is_empty() {
            body["data"].clone()
        } else {
            body["data"][field].clone()
        };
        serde_json::from_value(data).map_err(|e| protocol(e.to_string()))
    }

    /// The daemon's health.
    pub fn health(&self) -> Result<Value, ClientError> {
        self.request(
            "{ health { version pid stateDir listen accel accelReason } }",
            json!({}),
            "health",
        )
    }

    /// Applies a configuration; answers the plan.
    pub fn apply(&self, hypervisor: &Map<String, Value>) -> Result<Value, ClientError> {
        self.request(
            "mutation($c: JSON!) { applyConfig(config: $c) { units { unit action fields { path old new live reason } } } }",
            json!({ "c": hypervisor }),
            "applyConfig",
        )
    }

    /// All units.
    pub fn units(&self) -> Result<Vec<Unit>, ClientError> {
        self.request(
            &format!("{{ computeUnits {{ {UNIT_FIELDS} }} }}"),
            json!({}),
            "computeUnits",
        )
    }

    /// One unit.
    pub fn unit(&self, name: &str) -> Result<Unit, ClientError> {
        self.request(
            &format!("query($n: String!) {{ computeUnit(name: $n) {{ {UNIT_FIELDS} }} }}"),
            json!({ "n": name }),
            "computeUnit",
        )
    }

    /// Starts, stops, restarts, pauses or resumes a unit (`START`, `STOP`, ...).
    pub fn act(&self, name: &str, action: &str) -> Result<Unit, ClientError> {
        self.request(
            &format!(
                "mutation($n: String!, $a: UnitAction!) {{ controlComputeUnit(name: $n, action: $a) {{ {UNIT_FIELDS} }} }}"
            ),
            json!({ "n": name, "a": action }),
            "controlComputeUnit",
        )
    }

    /// The last `tail` bytes of a unit's console log.
    pub fn console_log(&self, name: &str, tail: u64) -> Result<String, ClientError> {
        self.request(
            "query($n: String!, $t: Int!) { consoleLog(name: $n, tail: $t) }",
            json!({ "n": name, "t": tail }),
            "consoleLog",
        )
    }

    /// Events after `after`.
    pub fn events(&self, after: Option<u64>) -> Result<Vec<Value>, ClientError> {
        self.request(
            "query($a: Int) { events(after: $a, limit: 10000) { id time kind subject payload correlationId } }",
            json!({ "a": after }),
            "events",
        )
    }

    /// Stops the daemon, and its units first when `stop_units`.
    pub fn shutdown(&self, stop_units: bool) -> Result<bool, ClientError> {
        self.request(
            "mutation($s: Boolean!) { shutdown(stopUnits: $s) }",
            json!({ "s": stop_units }),
            "shutdown",
        )
    }
}
