//! The NATS JetStream bus against a real nats-server: order, replay from an id, and a
//! subscriber that reconnects with its last id missing nothing.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use hypernix_events::{EventBus, NatsBus, NewEvent};

/// A nats-server, its store directory (kept until drop) and its URL.
struct Server(Child, #[allow(dead_code)] tempfile::TempDir, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (apt-get install nats-server)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, dir, format!("nats://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_live_and_resume_miss_nothing() {
    let s = server();
    let bus = NatsBus::connect(&s.2, "HYPERNIX", Duration::from_secs(3600))
        .await
        .unwrap();
    for i in 0..5 {
        let e = bus
            .publish(NewEvent::new("unit.started", format!("unit/u{i}")))
            .await
            .unwrap();
        assert_eq!(e.id, i + 1);
    }
    // A subscriber from the start sees the history, then live events.
    let mut sub = bus.subscribe(None);
    for i in 0..5u64 {
        assert_eq!(sub.next().await.unwrap().unwrap().id, i + 1);
    }
    bus.publish(NewEvent::new("unit.stopped", "unit/u0"))
        .await
        .unwrap();
    let live = sub.next().await.unwrap().unwrap();
    assert_eq!((live.id, live.kind.as_str()), (6, "unit.stopped"));
    drop(sub);

    // Published while nobody listened; resuming after id 6 gets exactly 7..=9.
    for i in 0..3 {
        bus.publish(NewEvent::new("unit.state", format!("unit/u{i}")))
            .await
            .unwrap();
    }
    let mut resumed = bus.subscribe(Some(6));
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(resumed.next().await.unwrap().unwrap().id);
    }
    assert_eq!(got, [7, 8, 9]);

    // A second connection (another daemon) reads the same history.
    let other = NatsBus::connect(&s.2, "HYPERNIX", Duration::from_secs(3600))
        .await
        .unwrap();
    let all = other.read(None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    assert_eq!(other.read(Some(7), 1).await.unwrap()[0].id, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_server_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = NatsBus::connect(
        &format!("nats://127.0.0.1:{port}"),
        "HYPERNIX",
        Duration::from_secs(60),
    )
    .await
    .err()
    .expect("no server");
    assert!(err.to_string().contains("nats-server -js"), "{err}");
}
