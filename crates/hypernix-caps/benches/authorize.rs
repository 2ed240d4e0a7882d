//! Authorization latency with a 3-block token (p50/p99, a token seen before and tokens
//! seen for the first time), audit append throughput with batched fsync, and audit
//! verification speed. `cargo bench -p hypernix-caps --bench authorize`.

use std::time::{Duration, Instant};

use hypernix_caps::audit::{self, AuditLog, AuditRecord};
use hypernix_caps::token::{self, Attenuation};
use hypernix_caps::{Access, Authorizer, KeyRing, Request};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:.1} µs p99={:.1} µs max={:.1} µs",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.last().unwrap().as_secs_f64() * 1e6
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyRing::open_or_init(&dir.path().join("keys")).unwrap();
    let security = serde_json::from_value(serde_json::json!({
        "capabilities": { "web-operator": {
            "resources": { "compute": { "control": true, "console": true, "limits": { "maxUnits": 10 } } },
            "scope": { "labels": { "tier": "frontend" } },
            "delegation": { "allowed": true, "maxDepth": 3 } } },
        "principals": { "alice": { "type": "user", "grants": [ { "capability": "web-operator",
            "temporal": {
                "validity": { "start": "2020-01-01T00:00:00Z", "end": "2100-01-01T00:00:00Z" },
                "schedule": { "timezone": "Europe/Paris", "windows": [ { "startTime": "00:00", "endTime": "23:59" } ] },
                "usage": { "rateLimit": { "requests": 1000000000, "window": "1s" } } } } ] } }
    }))
    .unwrap();
    let auth = Authorizer::new(keys.clone(), &security).unwrap();
    let three_blocks = |_: usize| {
        let t = token::issue(&keys, &security, "alice", None, chrono::Utc::now()).unwrap();
        let t = token::attenuate(
            &t.token,
            &Attenuation {
                operations: vec!["unit.start".into(), "unit.stop".into()],
                ..Default::default()
            },
        )
        .unwrap();
        token::attenuate(
            &t,
            &Attenuation {
                labels: vec![("env".into(), "e0".into())],
                expires: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let labels = [
        ("tier".to_string(), "frontend".to_string()),
        ("env".to_string(), "e0".to_string()),
    ]
    .into();
    let req = Request::new("unit.start", Access::new("compute", "control"))
        .on("unit/web", labels)
        .units(1);

    let token = three_blocks(0);
    for _ in 0..500 {
        auth.authorize(Some(&token), &req, chrono::Utc::now())
            .unwrap();
    }
    let samples = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            auth.authorize(Some(&token), &req, chrono::Utc::now())
                .unwrap();
            t.elapsed()
        })
        .collect();
    report(
        "authorize, 3-block token seen before (signatures cached)",
        samples,
    );

    let fresh: Vec<String> = (0..2_000).map(three_blocks).collect();
    let samples = fresh
        .iter()
        .map(|tok| {
            let t = Instant::now();
            auth.authorize(Some(tok), &req, chrono::Utc::now()).unwrap();
            t.elapsed()
        })
        .collect();
    report(
        "authorize, 3-block token seen for the first time (3 signatures verified)",
        samples,
    );

    let path = dir.path().join("audit.log");
    let n = 200_000;
    let record = |i: usize| AuditRecord {
        time: chrono::Utc::now(),
        principal: "alice".into(),
        token: Some("0123456789abcdef0123456789abcdef".into()),
        operation: "unit.start".into(),
        resource: Some(format!("unit/web{}", i % 100)),
        allowed: !i.is_multiple_of(10),
        reason: i
            .is_multiple_of(10)
            .then(|| "the token does not allow unit.start".into()),
    };
    let log = AuditLog::open(&path, &keys).unwrap();
    let t = Instant::now();
    for i in 0..n {
        log.append(record(i));
    }
    log.flush().unwrap();
    let secs = t.elapsed().as_secs_f64();
    drop(log);
    println!(
        "audit append: {n} records in {secs:.2} s = {:.0} records/s (batched fsync, {} bytes/record)",
        n as f64 / secs,
        std::fs::metadata(&path).unwrap().len() / n as u64
    );

    let log = AuditLog::open(&path, &keys).unwrap();
    let t = Instant::now();
    let mut one = Vec::new();
    for i in 0..2_000 {
        let s = Instant::now();
        log.append(record(i));
        log.flush().unwrap();
        one.push(s.elapsed());
    }
    drop(log);
    let _ = t;
    report(
        "audit append + flush, one record at a time (one fsync each)",
        one,
    );

    let t = Instant::now();
    let r = audit::verify(&path, &keys).unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(r.ok(), "{:?}", r.problems);
    println!(
        "audit verify: {} records, {} checkpoints in {secs:.2} s = {:.0} records/s",
        r.records,
        r.checkpoints,
        r.records as f64 / secs
    );
}
