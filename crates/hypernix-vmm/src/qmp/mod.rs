//! An async QMP client over a unix socket.
//!
//! A connection goes in four steps:
//! 1. connect to the socket; QEMU sends a greeting (`{"QMP": {"version": …}}`) at once;
//! 2. send `qmp_capabilities` and wait for its empty reply: QEMU now accepts commands;
//! 3. a reader task owns the receiving half: replies go to the caller waiting on the
//!    same `id` (every command gets a fresh one), events go to a broadcast channel;
//! 4. when the stream ends, turns to garbage or fails, the reader records why
//!    ([`Disconnect`]), fails every waiting command with it, and stops.
//!
//! QEMU serves one QMP client per socket at a time: a second connection waits until the
//! first closes. Dropping the last clone of a [`QmpClient`] closes the connection.

mod block;
mod commands;
mod types;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use thiserror::Error;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::AbortHandle;

pub use block::{BlockNode, DirtyBitmap, ImageInfo};
pub use types::{
    BalloonInfo, BlockDeviceStats, BlockStats, CpuInfo, CpuProps, Greeting, HotpluggableCpu,
    QemuVersion, QmpEvent, StatusInfo, Timestamp, VersionInfo,
};
pub use wire::MAX_LINE;

/// How many events a slow subscriber may fall behind before it misses some.
const EVENT_BUFFER: usize = 256;

/// Why a QMP connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// QEMU closed the socket (it exited, or closed the monitor).
    Eof,
    /// Reading or writing failed.
    Io(String),
    /// QEMU sent something that is not QMP.
    Protocol(String),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Eof => f.write_str("QEMU closed the connection"),
            Disconnect::Io(e) => write!(f, "I/O error: {e}"),
            Disconnect::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// A QMP failure.
#[derive(Debug, Error)]
pub enum QmpError {
    /// The socket could not be connected to.
    #[error("cannot connect to QMP socket {path}: {source}; is QEMU running?")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The greeting or capabilities negotiation went wrong.
    #[error("QMP handshake failed: {0}")]
    Handshake(String),
    /// QEMU did not answer in time.
    #[error("QMP command {command} got no reply within {after:?}; QEMU may be hung")]
    Timeout {
        /// The command.
        command: String,
        /// How long we waited.
        after: Duration,
    },
    /// QEMU answered with an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// The connection is gone.
    #[error("QMP command {command} not completed: {reason}")]
    Disconnected {
        /// The command.
        command: String,
        /// Why the connection ended.
        reason: Disconnect,
    },
    /// The reply did not have the expected shape.
    #[error("QMP command {command} returned unexpected data: {source}")]
    Decode {
        /// The command.
        command: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// No free slot for one more vCPU.
    #[error("no free vCPU slot to hot-plug into; raise max_vcpus")]
    NoFreeCpuSlot,
    /// vCPUs cannot be removed from a running VM.
    #[error(
        "cannot go from {present} down to {wanted} vCPUs while the VM runs; \
         restart it with fewer"
    )]
    VcpuUnplug {
        /// vCPUs present.
        present: usize,
        /// The vCPU count asked for.
        wanted: usize,
    },
}

/// A connected QMP client; clones share the connection.
#[derive(Clone)]
pub struct QmpClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    reader: AbortHandle,
    greeting: Greeting,
    timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What the reader task and the callers share.
struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<Option<Disconnect>>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    closed: Option<Disconnect>,
}

type Reply = Result<Value, wire::CommandFailure>;

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QmpClient")
            .field("version", &self.inner.greeting.version.qemu)
            .field("closed", &self.disconnect_reason())
            .finish()
    }
}

impl QmpClient {
    /// Connects to a QMP socket and negotiates capabilities.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        Self::handshake(stream, timeout).await
    }

    /// Runs the handshake on an open stream and starts the reader; `timeout` bounds the
    /// handshake and every later command.
    pub async fn handshake(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let greeting = tokio::time::timeout(timeout, negotiate(&mut reader, &mut write))
            .await
            .map_err(|_| {
                QmpError::Handshake(format!(
                    "no greeting and reply within {timeout:?}; QEMU serves one QMP client \
                     at a time, is another one connected?"
                ))
            })??;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_id: 1,
                ..State::default()
            }),
            events: broadcast::channel(EVENT_BUFFER).0,
            closed: watch::channel(None).0,
        });
        let task = tokio::spawn(read_loop(reader, Arc::clone(&shared)));
        Ok(QmpClient {
            inner: Arc::new(Inner {
                shared,
                writer: tokio::sync::Mutex::new(write),
                reader: task.abort_handle(),
                greeting,
                timeout,
            }),
        })
    }

    /// The greeting QEMU sent.
    pub fn greeting(&self) -> &Greeting {
        &self.inner.greeting
    }

    /// A receiver of every event from now on.
    pub fn events(&self) -> broadcast::Receiver<QmpEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Why the connection ended, or `None` while it is up.
    pub fn disconnect_reason(&self) -> Option<Disconnect> {
        self.inner.shared.closed.borrow().clone()
    }

    /// A receiver that turns `Some` when the connection ends; it does not keep the
    /// connection open.
    pub(crate) fn closed_watch(&self) -> watch::Receiver<Option<Disconnect>> {
        self.inner.shared.closed.subscribe()
    }

    /// Waits until the connection ends and says why.
    pub async fn closed(&self) -> Disconnect {
        let mut closed = self.inner.shared.closed.subscribe();
        match closed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(Disconnect::Eof),
            Err(_) => Disconnect::Eof,
        }
    }

    /// Runs a command and returns its raw `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, self.execute_untimed(command, arguments))
            .await
            .map_err(|_| QmpError::Timeout {
                command: command.to_string(),
                after: timeout,
            })?
    }

    /// Runs a command and decodes its `return` value.
    pub async fn call<R: DeserializeOwned>(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<R, QmpError> {
        let value = self.execute(command, arguments).await?;
        serde_json::from_value(value).map_err(|source| QmpError::Decode {
            command: command.to_string(),
            source,
        })
    }

    async fn execute_untimed(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let shared = &self.inner.shared;
        let disconnected = |reason| QmpError::Disconnected {
            command: command.to_string(),
            reason,
        };
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = shared.state();
            if let Some(reason) = &state.closed {
                return Err(disconnected(reason.clone()));
            }
            let id = state.next_id;
            state.next_id += 1;
            state.pending.insert(id, tx);
            id
        };
        let _pending = PendingGuard { shared, id };
        let mut message = json!({"execute": command, "id": id});
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        {
            let mut writer = self.inner.writer.lock().await;
            if let Err(e) = writer.write_all(&line).await {
                return Err(disconnected(Disconnect::Io(e.to_string())));
            }
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => Err(QmpError::Command {
                command: command.to_string(),
                class: failure.class,
                desc: failure.desc,
            }),
            Err(_) => Err(disconnected(
                self.disconnect_reason().unwrap_or(Disconnect::Eof),
            )),
        }
    }
}

/// Forgets a command's reply slot when its caller stops waiting.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.state().pending.remove(&self.id);
    }
}

async fn negotiate(
    reader: &mut BufReader<OwnedReadHalf>,
    writer: &mut OwnedWriteHalf,
) -> Result<Greeting, QmpError> {
    #[derive(serde::Deserialize)]
    struct GreetingMessage {
        #[serde(rename = "QMP")]
        qmp: Greeting,
    }
    let mut line = Vec::new();
    let fail = |what: String| QmpError::Handshake(what);
    if !wire::read_line(reader, &mut line).await.map_err(fail)? {
        return Err(fail(
            "QEMU closed the connection before its greeting".into(),
        ));
    }
    let greeting = serde_json::from_slice::<GreetingMessage>(&line)
        .map_err(|e| {
            fail(format!(
                "not a QMP greeting ({e}): {}",
                wire::excerpt(&line)
            ))
        })?
        .qmp;
    writer
        .write_all(b"{\"execute\": \"qmp_capabilities\", \"id\": 0}\n")
        .await
        .map_err(|e| fail(format!("sending qmp_capabilities: {e}")))?;
    loop {
        if !wire::read_line(reader, &mut line).await.map_err(fail)? {
            return Err(fail(
                "QEMU closed the connection during qmp_capabilities".into(),
            ));
        }
        match wire::parse_message(&line).map_err(fail)? {
            wire::Incoming::Reply { result: Ok(_), .. } => return Ok(greeting),
            wire::Incoming::Reply { result: Err(e), .. } => {
                return Err(fail(format!(
                    "qmp_capabilities failed: {}: {}",
                    e.class, e.desc
                )));
            }
            wire::Incoming::Event(_) => {}
        }
    }
}

async fn read_loop(mut reader: BufReader<OwnedReadHalf>, shared: Arc<Shared>) {
    let mut line = Vec::new();
    let reason = loop {
        match wire::read_line(&mut reader, &mut line).await {
            Ok(true) => {}
            Ok(false) => break Disconnect::Eof,
            Err(e) => break Disconnect::Protocol(e),
        }
        match wire::parse_message(&line) {
            Ok(wire::Incoming::Reply {
                id: Some(id),
                result,
            }) => {
                if let Some(waiter) = shared.state().pending.remove(&id) {
                    // The caller may have given up already; then nobody wants the reply.
                    let _ = waiter.send(result);
                } else {
                    tracing::debug!(id, "QMP reply for a command nobody waits for");
                }
            }
            Ok(wire::Incoming::Reply { id: None, result }) => {
                tracing::warn!(?result, "QMP reply without an id ignored");
            }
            Ok(wire::Incoming::Event(event)) => {
                // No subscribers is fine: events are optional to watch.
                let _ = shared.events.send(event);
            }
            Err(e) => break Disconnect::Protocol(e),
        }
    };
    let waiters = {
        let mut state = shared.state();
        state.closed = Some(reason.clone());
        std::mem::take(&mut state.pending)
    };
    shared.closed.send_replace(Some(reason));
    // Dropping the senders wakes every waiter, which then reads the reason.
    drop(waiters);
}
