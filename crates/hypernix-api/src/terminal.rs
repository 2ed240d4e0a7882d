//! A unit's serial console over a WebSocket, for the web console's terminal (xterm.js).
//!
//! 1. The client opens `GET /console/UNIT` as a WebSocket (browsers cannot set headers on
//!    one, so the token comes in the first message).
//! 2. Its first message is a text frame `{"token": "..."}`; the guard authorizes
//!    `unit.console` (right `compute`/`console`) on the unit and audits the decision. A
//!    refusal is answered with `{"error": "..."}` and the socket closes.
//! 3. The server sends `{"attached": "UNIT"}`, then the console log from its start (the
//!    boot, the readiness line) and what the guest writes after, as binary frames: it
//!    follows the log QEMU writes (`console.log`), restarting from its start when a new
//!    boot truncates it. Following the log, not the console socket, lets any number of
//!    viewers watch while `hypernix console` stays attached.
//! 4. Each later frame from the client is keyboard input, written to the unit's console
//!    socket (connected on the first key; `{"error": ...}` when another client holds it).
//!    What QEMU writes back on that socket is read and dropped (it is in the log too), so
//!    the guest's console never stalls on a full socket.
//! 5. Every second the token is checked again (expiry, revocation); the socket closes with
//!    `{"error": ...}` when it no longer allows the console.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Path, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use hypernix_caps::{Access, Request};
use hypernix_daemon::Daemon;
use hypernix_vmm::rundir::{CONSOLE_LOG, CONSOLE_SOCKET};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Most bytes of the log sent in one frame.
const CHUNK: usize = 64 * 1024;

/// The route `/console/{unit}`.
pub fn routes<S: Clone + Send + Sync + 'static>(daemon: Arc<Daemon>) -> Router<S> {
    Router::new().route(
        "/console/{unit}",
        get(move |Path(unit): Path<String>, upgrade: WebSocketUpgrade| {
            let daemon = daemon.clone();
            async move { upgrade_console(daemon, unit, upgrade) }
        }),
    )
}

fn upgrade_console(daemon: Arc<Daemon>, unit: String, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| async move {
        let mut socket = socket;
        if let Err(message) = serve(&daemon, &unit, &mut socket).await {
            let error = serde_json::json!({ "error": message }).to_string();
            let _ = socket.send(Message::Text(error.into())).await;
        }
        let _ = socket.send(Message::Close(None)).await;
    })
}

/// The capability request of attaching to `unit`'s console.
fn console_request(daemon: &Daemon, unit: &str) -> Request {
    let labels = daemon.unit(unit).map(|u| u.labels).unwrap_or_default();
    Request::new("unit.console", Access::new("compute", "console"))
        .on(format!("unit/{unit}"), labels)
        .units(1)
}

/// The token of the first message.
async fn first_token(socket: &mut WebSocket) -> Result<String, String> {
    let first = tokio::time::timeout(Duration::from_secs(10), socket.recv())
        .await
        .map_err(|_| "no token within 10 s; send {\"token\": \"...\"} first".to_string())?;
    let text = match first {
        Some(Ok(Message::Text(t))) => t,
        _ => return Err("the first message must be {\"token\": \"...\"}".into()),
    };
    let v: serde_json::Value =
        serde_json::from_str(text.as_str()).map_err(|e| format!("first message: {e}"))?;
    v.get("token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| "the first message must be {\"token\": \"...\"}".into())
}

/// Authorizes the session, then relays until the client leaves or the token lapses.
async fn serve(daemon: &Daemon, unit: &str, socket: &mut WebSocket) -> Result<(), String> {
    let token = first_token(socket).await?;
    let request = console_request(daemon, unit);
    daemon
        .guard()
        .authorize(Some(&token), &request)
        .map_err(|d| format!("console of {unit}: {}", d.reason))?;
    let run_dir = PathBuf::from(daemon.unit(unit).map_err(|e| e.to_string())?.run_dir);
    let attached = serde_json::json!({ "attached": unit }).to_string();
    send(socket, Message::Text(attached.into())).await?;

    let log = run_dir.join(CONSOLE_LOG);
    let mut offset = 0u64;
    let mut input: Option<UnixStream> = None;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut recheck = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = poll.tick() => {
                while let Some(bytes) = read_from(&log, &mut offset).await {
                    send(socket, Message::Binary(bytes.into())).await?;
                }
            }
            _ = recheck.tick() => {
                daemon
                    .guard()
                    .recheck(Some(&token), &request)
                    .map_err(|d| format!("console closed: {}", d.reason))?;
            }
            drained = drain(&mut input) => {
                if !matches!(drained, Ok(n) if n > 0) {
                    input = None;
                }
            }
            msg = socket.recv() => {
                let keys = match msg {
                    Some(Ok(Message::Text(t))) => t.as_str().as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Ok(()),
                };
                if input.is_none() {
                    let path = run_dir.join(CONSOLE_SOCKET);
                    let stream = UnixStream::connect(&path).await.map_err(|e| {
                        format!("cannot type into {unit}'s console ({e}); is it running, \
                                 or is `hypernix console {unit}` attached?")
                    })?;
                    input = Some(stream);
                }
                if let Some(stream) = input.as_mut() {
                    stream
                        .write_all(&keys)
                        .await
                        .map_err(|e| format!("console of {unit}: {e}"))?;
                }
            }
        }
    }
}

/// Reads and drops what QEMU sends the console socket's client (the same bytes reach the
/// viewer through the log): unread, they would fill the socket and stall the guest's
/// console. Pending forever while not connected.
async fn drain(input: &mut Option<UnixStream>) -> std::io::Result<usize> {
    match input {
        Some(stream) => {
            let mut buf = [0u8; 4096];
            stream.read(&mut buf).await
        }
        None => std::future::pending().await,
    }
}

async fn send(socket: &mut WebSocket, msg: Message) -> Result<(), String> {
    socket
        .send(msg)
        .await
        .map_err(|e| format!("websocket: {e}"))
}

/// The next bytes of the log after `offset` (at most [`CHUNK`]), moving `offset`; from
/// the start again when the log is shorter than `offset` (a new boot truncated it).
async fn read_from(log: &std::path::Path, offset: &mut u64) -> Option<Vec<u8>> {
    let mut file = tokio::fs::File::open(log).await.ok()?;
    let len = file.metadata().await.ok()?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return None;
    }
    file.seek(std::io::SeekFrom::Start(*offset)).await.ok()?;
    let want = usize::try_from(len - *offset).unwrap_or(CHUNK).min(CHUNK);
    let mut buf = vec![0u8; want];
    let n = file.read(&mut buf).await.ok()?;
    buf.truncate(n);
    *offset += n as u64;
    (n > 0).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_log_is_followed_and_restarted_when_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let mut offset = 0;
        assert_eq!(read_from(&log, &mut offset).await, None);
        std::fs::write(&log, b"boot\nHYPERNIX-READY\n").unwrap();
        let first = read_from(&log, &mut offset).await.unwrap();
        assert_eq!(first, b"boot\nHYPERNIX-READY\n");
        assert_eq!(read_from(&log, &mut offset).await, None);
        std::fs::write(&log, b"again\n").unwrap();
        assert_eq!(read_from(&log, &mut offset).await.unwrap(), b"again\n");
    }
}
