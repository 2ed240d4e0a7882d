//! The client against a fake QEMU on a socketpair, including one that misbehaves.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::*;

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "test"}, "capabilities": ["oob"]}}"#;
const SHORT: Duration = Duration::from_secs(5);

struct FakeQemu {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl FakeQemu {
    async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    async fn command(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Reads one command and answers it with `reply` under the command's id.
    async fn answer(&mut self, expected: &str, reply: Value) -> Value {
        let command = self.command().await;
        assert_eq!(command["execute"], expected);
        self.send(&json!({"return": reply, "id": command["id"]}).to_string())
            .await;
        command
    }
}

fn pair() -> (UnixStream, FakeQemu) {
    let (client, server) = UnixStream::pair().unwrap();
    let (read, writer) = server.into_split();
    (
        client,
        FakeQemu {
            reader: BufReader::new(read),
            writer,
        },
    )
}

async fn connected() -> (QmpClient, FakeQemu) {
    let (stream, mut qemu) = pair();
    let server = async {
        qemu.send(GREETING).await;
        qemu.answer("qmp_capabilities", json!({})).await;
        qemu
    };
    let (client, qemu) = tokio::join!(QmpClient::handshake(stream, SHORT), server);
    (client.unwrap(), qemu)
}

async fn handshake_with(lines: &[&str]) -> QmpError {
    let (stream, mut qemu) = pair();
    for line in lines {
        qemu.send(line).await;
    }
    // Half-close: the client can still send qmp_capabilities, then reads end of stream.
    qemu.writer.shutdown().await.unwrap();
    QmpClient::handshake(stream, SHORT).await.unwrap_err()
}

#[tokio::test]
async fn handshake_commands_and_events() {
    let (client, mut qemu) = connected().await;
    assert_eq!(
        client.greeting().version.qemu,
        QemuVersion {
            major: 7,
            minor: 2,
            micro: 0
        }
    );
    assert_eq!(client.greeting().capabilities, ["oob"]);
    let mut events = client.events();
    let server = async {
        qemu.send(r#"{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 5}}"#)
            .await;
        let command = qemu
            .answer(
                "query-status",
                json!({"running": false, "status": "paused"}),
            )
            .await;
        assert_eq!(command["id"], 1);
        let command = qemu.answer("balloon", json!({})).await;
        assert_eq!(command["arguments"], json!({"value": 1024}));
        qemu
    };
    let (status, balloon, _qemu) =
        tokio::join!(client.query_status(), client.balloon(1024), server);
    assert_eq!(
        status.unwrap(),
        StatusInfo {
            running: false,
            status: "paused".into()
        }
    );
    balloon.unwrap();
    let event = events.recv().await.unwrap();
    assert_eq!(event.event, "STOP");
    assert_eq!(client.disconnect_reason(), None);
}

#[tokio::test]
async fn malformed_handshakes_are_errors() {
    let cases: [&[&str]; 6] = [
        &[],
        &["this is not json"],
        &[r#"{"QMP": {}}"#],
        &[r#"{"return": {}}"#],
        &[GREETING],
        &[
            GREETING,
            r#"{"error": {"class": "GenericError", "desc": "nope"}}"#,
        ],
    ];
    for lines in cases {
        let err = handshake_with(lines).await;
        assert!(matches!(err, QmpError::Handshake(_)), "{lines:?}: {err}");
    }
    let err = handshake_with(&[GREETING, "{garbage"]).await;
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[tokio::test]
async fn silent_peer_times_out_the_handshake() {
    let (stream, _qemu) = pair();
    let err = QmpClient::handshake(stream, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no greeting"), "{err}");
}

#[tokio::test]
async fn garbage_after_handshake_fails_waiters() {
    let (client, mut qemu) = connected().await;
    let server = async {
        qemu.command().await;
        qemu.send("\u{1}garbage").await;
        qemu
    };
    let (result, _qemu) = tokio::join!(client.query_status(), server);
    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            QmpError::Disconnected {
                reason: Disconnect::Protocol(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(client.closed().await, Disconnect::Protocol(_)));
    let err = client.stop().await.unwrap_err();
    assert!(matches!(err, QmpError::Disconnected { .. }), "{err}");
}

#[tokio::test]
async fn early_eof_fails_waiters() {
    let (client, mut qemu) = connected().await;
    let server = async {
        qemu.command().await;
        drop(qemu);
    };
    let (result, ()) = tokio::join!(client.query_blockstats(), server);
    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            QmpError::Disconnected {
                reason: Disconnect::Eof,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(client.closed().await, Disconnect::Eof);
}

#[tokio::test]
async fn eof_mid_message_is_a_protocol_error() {
    let (client, mut qemu) = connected().await;
    qemu.writer.write_all(br#"{"return": "#).await.unwrap();
    drop(qemu);
    assert!(matches!(client.closed().await, Disconnect::Protocol(e) if e.contains("ended inside")));
}

#[tokio::test]
async fn errors_and_wrong_shapes() {
    let (client, mut qemu) = connected().await;
    let server = async {
        let command = qemu.command().await;
        let error = json!({"error": {"class": "DeviceNotFound", "desc": "no balloon"}, "id": command["id"]});
        qemu.send(&error.to_string()).await;
        qemu.answer("query-status", json!({"running": "yes"})).await;
        qemu.answer("query-balloon", json!([])).await;
        qemu
    };
    let calls = async {
        (
            client.balloon(1).await,
            client.query_status().await,
            client.query_balloon().await,
        )
    };
    let ((balloon, status, info), _qemu) = tokio::join!(calls, server);
    let err = balloon.unwrap_err();
    assert_eq!(
        err.to_string(),
        "QMP command balloon failed: DeviceNotFound: no balloon"
    );
    assert!(matches!(status.unwrap_err(), QmpError::Decode { .. }));
    assert!(matches!(info.unwrap_err(), QmpError::Decode { .. }));
}

#[tokio::test]
async fn stray_replies_are_ignored_and_timeouts_recover() {
    let (stream, mut qemu) = pair();
    let server = async {
        qemu.send(GREETING).await;
        qemu.answer("qmp_capabilities", json!({})).await;
        qemu
    };
    let (client, mut qemu) = tokio::join!(
        QmpClient::handshake(stream, Duration::from_millis(200)),
        server
    );
    let client = client.unwrap();
    let err = client.stop().await.unwrap_err();
    assert!(matches!(err, QmpError::Timeout { .. }), "{err}");
    let late = qemu.command().await;
    let server = async {
        qemu.send(&json!({"return": {}, "id": late["id"]}).to_string())
            .await;
        qemu.send(r#"{"return": {}}"#).await;
        qemu.send(r#"{"return": {}, "id": "text"}"#).await;
        qemu.send(r#"{"return": {}, "id": 999}"#).await;
        qemu.answer("cont", json!({})).await;
        qemu
    };
    let (result, _qemu) = tokio::join!(client.cont(), server);
    result.unwrap();
    assert_eq!(client.disconnect_reason(), None);
}

#[tokio::test]
async fn quit_accepts_the_connection_closing() {
    let (client, mut qemu) = connected().await;
    let server = async {
        qemu.command().await;
        drop(qemu);
    };
    let (result, ()) = tokio::join!(client.quit(), server);
    result.unwrap();
}

#[tokio::test]
async fn hotplug_uses_the_first_free_slot() {
    let (client, mut qemu) = connected().await;
    let slots = json!([
        {"props": {"core-id": 0, "thread-id": 0, "socket-id": 2}, "vcpus-count": 1, "type": "qemu64-x86_64-cpu"},
        {"props": {"core-id": 0, "thread-id": 0, "socket-id": 1}, "vcpus-count": 1, "type": "qemu64-x86_64-cpu"},
        {"props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1,
         "qom-path": "/machine/unattached/device[0]", "type": "qemu64-x86_64-cpu"}
    ]);
    let server = async {
        qemu.answer("query-hotpluggable-cpus", slots).await;
        let command = qemu.answer("device_add", json!({})).await;
        assert_eq!(
            command["arguments"],
            json!({"driver": "qemu64-x86_64-cpu", "id": "vcpu-s1-c0-t0",
                   "socket-id": 1, "core-id": 0, "thread-id": 0})
        );
        qemu.answer("query-hotpluggable-cpus", json!([])).await;
        qemu
    };
    let (id, _qemu) = tokio::join!(
        async { (client.hotplug_vcpu().await, client.hotplug_vcpu().await) },
        server
    );
    assert_eq!(id.0.unwrap(), "vcpu-s1-c0-t0");
    assert!(matches!(id.1.unwrap_err(), QmpError::NoFreeCpuSlot));
}

#[tokio::test]
async fn dropping_the_client_closes_the_socket() {
    let (client, mut qemu) = connected().await;
    drop(client);
    let mut line = String::new();
    let read = tokio::time::timeout(SHORT, qemu.reader.read_line(&mut line))
        .await
        .unwrap();
    assert_eq!(read.unwrap(), 0);
}
