use super::*;
use crate::memory::MemoryLog;
use futures::StreamExt;
use serde_json::json;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

fn bus_over(log: &Arc<MemoryLog>, capacity: usize) -> EmbeddedBus {
    EmbeddedBus::with_capacity(Arc::clone(log) as Arc<dyn EventLog>, capacity)
}

fn started(n: u64) -> NewEvent {
    NewEvent::new("unit.started", format!("unit/u{n}")).with_payload(json!({ "n": n }))
}

/// Takes `count` events from `stream`, failing the test on an error or a stall.
async fn take_ids(
    stream: &mut (impl Stream<Item = Result<std::sync::Arc<Event>, BusError>> + Unpin),
    count: usize,
) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let event = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("subscription stalled")
            .expect("subscription ended early")
            .expect("subscription failed");
        ids.push(event.id);
    }
    ids
}

fn range(first: u64, last: u64) -> Vec<u64> {
    (first..=last).collect()
}

#[tokio::test]
async fn publish_assigns_increasing_ids_and_keeps_the_fields() {
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 16);
    let first = bus.publish(started(1)).await.unwrap();
    let second = bus
        .publish(NewEvent::new("unit.failed", "unit/db").with_correlation_id("pass-9"))
        .await
        .unwrap();
    assert_eq!((first.id, second.id), (1, 2));
    assert!(first.time <= second.time);
    assert_eq!(second.kind, "unit.failed");
    assert_eq!(second.subject, "unit/db");
    assert_eq!(second.correlation_id.as_deref(), Some("pass-9"));
    assert_eq!(log.read_from(None, 10).unwrap(), vec![first, second]);
    assert_eq!(log.last_id().unwrap(), Some(2));
}

#[tokio::test]
async fn live_subscriber_sees_events_in_publish_order() {
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 1024);
    let mut stream = Box::pin(bus.subscribe(None));
    // Nothing to replay: the subscriber reads the empty log once, then waits on the broadcast.
    let idle = tokio::time::timeout(Duration::from_millis(20), stream.next()).await;
    assert!(idle.is_err());
    for n in 1..=100 {
        bus.publish(started(n)).await.unwrap();
    }
    let events: Vec<std::sync::Arc<Event>> =
        (&mut stream).take(100).map(Result::unwrap).collect().await;
    assert_eq!(log.reads(), 1);
    let ids: Vec<u64> = events.iter().map(|event| event.id).collect();
    assert_eq!(ids, range(1, 100));
    for event in &events {
        assert_eq!(event.payload, json!({ "n": event.id }));
    }
}

#[tokio::test]
async fn replays_after_the_given_id_then_continues_live() {
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 16);
    for n in 1..=600 {
        bus.publish(started(n)).await.unwrap();
    }
    let mut stream = Box::pin(bus.subscribe(Some(4)));
    assert_eq!(take_ids(&mut stream, 596).await, range(5, 600));
    for n in 601..=605 {
        bus.publish(started(n)).await.unwrap();
    }
    assert_eq!(take_ids(&mut stream, 5).await, range(601, 605));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_an_id_misses_nothing_under_concurrent_publishing() {
    const PUBLISHERS: u64 = 4;
    const EACH: u64 = 300;
    const TOTAL: u64 = PUBLISHERS * EACH;
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 64);

    let from_start = tokio::spawn({
        let mut stream = Box::pin(bus.subscribe(None));
        async move { take_ids(&mut stream, TOTAL as usize).await }
    });
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    bus.publish(started(p * EACH + n)).await.unwrap();
                    if n % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();

    // Subscribers that join mid-stream from whatever id the log has reached, and one that
    // stops and resumes from the last id it saw, several times.
    let mut joiners = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let start = log.last_id().unwrap().unwrap_or(0);
        let mut stream = Box::pin(bus.subscribe(Some(start)));
        joiners.push((
            start,
            tokio::spawn(async move { take_ids(&mut stream, (TOTAL - start) as usize).await }),
        ));
    }
    let resumer = tokio::spawn({
        let bus = bus.clone();
        async move {
            let mut seen = Vec::new();
            while (seen.len() as u64) < TOTAL {
                let mut stream = Box::pin(bus.subscribe(seen.last().copied()));
                let chunk = 137.min(TOTAL as usize - seen.len());
                seen.extend(take_ids(&mut stream, chunk).await);
            }
            seen
        }
    });

    for publisher in publishers {
        publisher.await.unwrap();
    }
    assert_eq!(from_start.await.unwrap(), range(1, TOTAL));
    for (start, joiner) in joiners {
        assert_eq!(joiner.await.unwrap(), range(start + 1, TOTAL));
    }
    assert_eq!(resumer.await.unwrap(), range(1, TOTAL));
}

#[tokio::test]
async fn lagged_subscriber_goes_back_to_the_log() {
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 4);
    let mut stream = Box::pin(bus.subscribe(None));
    bus.publish(started(1)).await.unwrap();
    assert_eq!(take_ids(&mut stream, 1).await, vec![1]);
    assert_eq!(log.reads(), 1);

    // Fifty events into a channel of four: the receiver lags and must re-read the log.
    for n in 2..=51 {
        bus.publish(started(n)).await.unwrap();
    }
    assert_eq!(take_ids(&mut stream, 50).await, range(2, 51));
    assert_eq!(log.reads(), 2);

    bus.publish(started(52)).await.unwrap();
    assert_eq!(take_ids(&mut stream, 1).await, vec![52]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_on_a_tiny_channel_sees_everything_once() {
    const TOTAL: u64 = 500;
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 2);
    let mut stream = Box::pin(bus.subscribe(None));
    let publisher = tokio::spawn({
        let bus = bus.clone();
        async move {
            for n in 1..=TOTAL {
                bus.publish(started(n)).await.unwrap();
            }
        }
    });
    let mut ids = Vec::new();
    while (ids.len() as u64) < TOTAL {
        ids.extend(take_ids(&mut stream, 1).await);
        if ids.len() % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    publisher.await.unwrap();
    assert_eq!(ids, range(1, TOTAL));
}

#[tokio::test]
async fn subscription_ends_when_the_bus_is_dropped() {
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 16);
    let mut stream = Box::pin(bus.subscribe(None));
    bus.publish(started(1)).await.unwrap();
    drop(bus);
    assert_eq!(take_ids(&mut stream, 1).await, vec![1]);
    let end = tokio::time::timeout(PATIENCE, stream.next()).await.unwrap();
    assert!(end.is_none());
}

#[tokio::test]
async fn failed_log_read_is_yielded_once_and_ends_the_stream() {
    let log = Arc::new(MemoryLog::default());
    let bus = bus_over(&log, 16);
    bus.publish(started(1)).await.unwrap();
    log.fail_reads();
    let mut stream = Box::pin(bus.subscribe(None));
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, BusError::Log(_)), "{err:?}");
    assert!(stream.next().await.is_none());
}
