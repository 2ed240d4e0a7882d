//! Subscription delivery through the real server: many WebSocket subscribers speaking
//! graphql-transport-ws, events published through the daemon's bus at a fixed rate, and
//! delivery latency measured from the publish time carried in each event.
//!
//! Scenarios (issue 11), each on the embedded bus and on NATS JetStream:
//! - "filtered": 1,000 subscribers, each filtered to one unit; 5,000 events/s spread over
//!   those units for 30 s;
//! - "fan-out": 50 subscribers to every event; 2,000 events/s for 30 s.
//!
//! Then `computeUnits` queries per second over 1,000 units.
//!
//! Run: `cargo bench -p hypernix-api --bench subscriptions` (needs nats-server). Set
//! `HYPERNIX_BENCH_SECONDS` to shorten the 30 s runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hypernix_daemon::Daemon;
use hypernix_daemon::layout::Layout;
use hypernix_events::NewEvent;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Starts a daemon on a temporary state directory and serves the API; returns its address.
async fn serve(nats: Option<String>) -> (Arc<Daemon>, SocketAddr, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let daemon = Daemon::open(
        Layout::new(dir.path()),
        addr,
        Some(hypernix_vmm::Accel::Tcg),
        nats,
        None,
    )
    .await
    .unwrap();
    let limits = hypernix_api::Limits {
        subscriptions_per_connection: 1000,
        mutations_per_second: 1_000_000,
        ..Default::default()
    };
    let router = hypernix_api::server::router(daemon.clone(), limits, false);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let token = std::fs::read_to_string(Layout::new(dir.path()).root_token()).unwrap();
    (daemon, addr, dir, token)
}

/// One graphql-transport-ws subscriber; records latencies (ns) and counts deliveries.
async fn subscriber(
    addr: SocketAddr,
    token: String,
    filter: Value,
    latencies: Arc<Mutex<Vec<u64>>>,
    ready: Arc<AtomicU64>,
) {
    let mut req = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {"token": token}}).to_string(),
    ))
    .await
    .unwrap();
    let _ack = ws.next().await;
    let query = "subscription($f: EventFilter) { events(filter: $f) { id payload } }";
    let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"f": filter}}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    ready.fetch_add(1, Ordering::SeqCst);
    let mut mine = Vec::new();
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v["type"] != "next" {
            continue;
        }
        let payload = &v["payload"]["data"]["events"]["payload"];
        if payload["stop"] == true {
            break;
        }
        if let Some(sent) = payload["sentNs"].as_u64() {
            mine.push(now_ns().saturating_sub(sent));
        }
    }
    latencies.lock().await.extend(mine);
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// Runs one scenario; prints a result line.
async fn scenario(
    bus: &str,
    nats: Option<String>,
    name: &str,
    subscribers: usize,
    units: usize,
    rate: u64,
    secs: u64,
) {
    let (daemon, addr, _dir, token) = serve(nats).await;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        let filter = if units == 0 {
            json!({"kinds": ["bench.tick"]})
        } else {
            json!({"kinds": ["bench.tick"], "subject": format!("unit/u{}", i % units)})
        };
        tasks.push(tokio::spawn(subscriber(
            addr,
            token.clone(),
            filter,
            latencies.clone(),
            ready.clone(),
        )));
    }
    while ready.load(Ordering::SeqCst) < subscribers as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Publish at up to `rate` events/s for `secs` seconds: ticks of 10 ms, concurrently
    // within a tick; a bus slower than the rate publishes fewer, which the line reports.
    let per_tick = (rate / 100).max(1);
    let start = Instant::now();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Publishes are not awaited tick by tick: the offered rate stays the asked one, and a
    // bus slower than that shows as a lower published rate.
    let mut in_flight = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        for k in 0..per_tick {
            let n = published + k;
            let subject = if units == 0 {
                "unit/all".to_string()
            } else {
                format!("unit/u{}", n % units as u64)
            };
            let d = daemon.clone();
            in_flight.push(tokio::spawn(async move {
                d.publish(
                    NewEvent::new("bench.tick", subject)
                        .with_payload(json!({"sentNs": now_ns(), "n": n})),
                )
                .await
            }));
        }
        published += per_tick;
    }
    for p in in_flight {
        p.await.unwrap().unwrap();
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let total = published;
    // One stop event per subscriber subject, then wait for every subscriber to finish.
    let stops = if units == 0 { 1 } else { units };
    for u in 0..stops {
        let subject = if units == 0 {
            "unit/all".to_string()
        } else {
            format!("unit/u{u}")
        };
        daemon
            .publish(NewEvent::new("bench.tick", subject).with_payload(json!({"stop": true})))
            .await
            .unwrap();
    }
    let deadline =
        tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(tasks)).await;
    let rss = rss_mib();
    let mut l = latencies.lock().await.clone();
    l.sort_unstable();
    // Each event reaches every subscriber of its unit, or every subscriber in fan-out.
    let receivers = subscribers.checked_div(units).unwrap_or(subscribers) as u64;
    let expected = total * receivers;
    let lost = expected.saturating_sub(l.len() as u64);
    println!(
        "{bus:8} {name:9} subscribers {subscribers:5}  asked {rate} ev/s, published {:.0} ev/s for {publish_secs:.1} s  deliveries {}  lost {lost}  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  rss {rss} MiB{}",
        total as f64 / publish_secs,
        l.len(),
        pct(&l, 0.5),
        pct(&l, 0.99),
        pct(&l, 1.0),
        if deadline.is_err() {
            "  (subscribers timed out)"
        } else {
            ""
        }
    );
}

/// `computeUnits` queries per second over 1,000 units (units that fail at once: no VMs).
async fn query_throughput() {
    let (daemon, addr, _dir, token) = serve(None).await;
    let mut units = serde_json::Map::new();
    for i in 0..1000 {
        units.insert(
            format!("u{i:04}"),
            json!({"image": "/nonexistent/bench.img"}),
        );
    }
    let raw = json!({"compute": {"units": units}});
    daemon
        .apply(raw.as_object().unwrap().clone())
        .await
        .unwrap();
    let client = reqwest_like(addr, token);
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        let units: Value = client("{ computeUnits { name state vcpus memory } }");
        assert_eq!(
            units["data"]["computeUnits"].as_array().map(Vec::len),
            Some(1000)
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "computeUnits over 1,000 units: {:.1} queries/s ({:.2} ms each), rss {} MiB",
        n as f64 / secs,
        secs * 1000.0 / n as f64,
        rss_mib()
    );
}

/// A blocking GraphQL POST, run on the blocking pool.
fn reqwest_like(addr: SocketAddr, token: String) -> impl Fn(&str) -> Value {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    move |query: &str| {
        let agent = agent.clone();
        let q = query.to_string();
        let auth = format!("Bearer {token}");
        tokio::task::block_in_place(move || {
            agent
                .post(&format!("http://{addr}/graphql"))
                .header("Authorization", &auth)
                .send_json(json!({"query": q}))
                .unwrap()
                .body_mut()
                .read_json()
                .unwrap()
        })
    }
}

/// A fresh nats-server with JetStream, so that scenarios do not see each other's events.
struct Nats(
    std::process::Child,
    #[allow(dead_code)] // Kept for its drop: the store directory.
    tempfile::TempDir,
    String,
);

impl Nats {
    async fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs");
        tokio::time::sleep(Duration::from_millis(500)).await;
        Nats(child, store, format!("nats://127.0.0.1:{port}"))
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let secs: u64 = std::env::var("HYPERNIX_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        scenario("embedded", None, "filtered", 1000, 1000, 5000, secs).await;
        scenario("embedded", None, "fan-out", 50, 0, 2000, secs).await;
        let nats = Nats::start().await;
        scenario(
            "nats",
            Some(nats.2.clone()),
            "filtered",
            1000,
            1000,
            5000,
            secs,
        )
        .await;
        drop(nats);
        let nats = Nats::start().await;
        scenario("nats", Some(nats.2.clone()), "fan-out", 50, 0, 2000, secs).await;
        drop(nats);
        query_throughput().await;
    });
}
