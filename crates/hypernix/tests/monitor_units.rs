//! Monitoring on real guests: `/metrics` parsed by Prometheus' own tools, a CPU burner in
//! one of two guests raising an alert on that unit, `monitor why` ranking that unit
//! first, the alert arriving on a GraphQL subscription, metric queries and capacity.

mod kit;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kit::{Console, TestDaemon, heavy, wait_until};
use serde_json::{Value, json};

const CONFIG: &str = r#"{
  hypervisor.compute.units.hot = { resources.memory.size = "256Mi"; };
  hypervisor.compute.units.calm = {
    resources.memory.size = "256Mi";
    storage = [ { name = "data"; capability = "block"; size = "64Mi"; } ];
  };
  hypervisor.monitoring.interval = "1s";
  hypervisor.monitoring.ai.detectors.cpu = {
    metrics = [ "hypernix_unit_cpu_usage_ratio" ];
    learning = 20;
    persistence = 3;
  };
}"#;

/// GET /metrics with `token`: status and body.
fn scrape(api: &str, token: Option<&str>) -> (u16, String) {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .build(),
    );
    let mut req = agent.get(&format!("http://{api}/metrics"));
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// Pipes `text` into a command; its status and output.
fn pipe(cmd: &mut Command, text: &str) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", kit::text(&out.stdout), kit::text(&out.stderr));
    (out.status.success(), text)
}

fn metric_present(text: &str, name: &str, unit: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with(name) && l.contains(&format!("unit=\"{unit}\"")))
}

#[test]
fn cpu_burner_alerts_on_its_unit_and_why_ranks_it_first() {
    let _g = heavy();
    let d = TestDaemon::start();
    let f = d.config("c.nix", CONFIG);
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    d.wait_ready("hot");
    d.wait_ready("calm");
    let ready_at = Instant::now();

    // /metrics: refused without a token or with a forged one; parsed by Prometheus' own
    // linter (promtool) and Python client parser.
    assert_eq!(scrape(&d.api, None).0, 401);
    assert_eq!(scrape(&d.api, Some("not-a-token")).0, 403);
    let token = d.token();
    let text = wait_until(Duration::from_secs(30), "unit CPU metrics", || {
        let (status, text) = scrape(&d.api, Some(&token));
        assert_eq!(status, 200, "{text}");
        (metric_present(&text, "hypernix_unit_cpu_usage_ratio", "hot")
            && metric_present(&text, "hypernix_unit_block_read_bytes_total", "calm"))
        .then_some(text)
    });
    for name in [
        "hypernix_host_memory_total_bytes",
        "hypernix_unit_resident_memory_bytes",
        "hypernix_host_cpu_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    let (ok, lint) = pipe(Command::new("promtool").args(["check", "metrics"]), &text);
    assert!(ok, "promtool check metrics:\n{lint}\n{text}");
    let parse = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                 fams = list(p(sys.stdin.read()))\nprint(len(fams), sum(len(f.samples) for f in fams))";
    let (ok, parsed) = pipe(Command::new("/usr/bin/python3").args(["-c", parse]), &text);
    assert!(ok, "prometheus_client parser: {parsed}");
    let families: usize = parsed.split_whitespace().next().unwrap().parse().unwrap();
    assert!(families >= 15, "{parsed}");

    // Let the detectors learn the idle guests (20 points after each unit settles).
    let learn = Duration::from_secs(35);
    std::thread::sleep(learn.saturating_sub(ready_at.elapsed()));
    let quiet = d.json(&["monitor", "alerts", "--json"]);
    assert_eq!(quiet, json!([]), "alerts on idle guests: {quiet}");

    let query = "subscription { alerts { id unit detector series } }";
    let (node, pushed) = kit::subscribe(&d.api, &token, query);
    let anomalies = "subscription { anomalies(unit: \"hot\") { unit metric score value } }";
    let (node2, anomalous) = kit::subscribe(&d.api, &token, anomalies);
    std::thread::sleep(Duration::from_secs(2));

    let mut console = Console::open(&d, "hot");
    console.run("(while :; do :; done) & true");
    let burn = Instant::now();
    let alert = wait_until(Duration::from_secs(60), "an alert on unit hot", || {
        d.json(&["monitor", "alerts", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["unit"] == "hot")
            .cloned()
    });
    eprintln!(
        "alert {} s after the burner started: {alert}",
        burn.elapsed().as_secs()
    );
    assert_eq!(alert["detector"], "cpu");
    assert!(
        alert["series"].as_str().unwrap().contains("unit=\"hot\""),
        "{alert}"
    );
    let alerts = d.json(&["monitor", "alerts", "--json"]);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["unit"] != "calm"),
        "the calm unit alerted: {alerts}"
    );

    let id = alert["id"].as_u64().unwrap().to_string();
    let why = d.json(&["monitor", "why", &id, "--json"]);
    let units: Vec<&Value> = why["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "unit")
        .collect();
    assert_eq!(units[0]["name"], "hot", "{why:#}");
    assert_eq!(
        why["causes"][0]["name"], "hot",
        "the burner ranks above every event: {why:#}"
    );
    assert!(units.iter().any(|c| c["name"] == "calm"), "{why:#}");
    let text = kit::text(&d.cli(&["monitor", "why", &id]).stdout);
    assert!(
        text.contains("hypernix_unit_cpu_usage_ratio rose"),
        "{text}"
    );

    wait_until(
        Duration::from_secs(10),
        "the alert on the subscription",
        || {
            pushed
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["data"]["alerts"]["unit"] == "hot")
                .cloned()
        },
    );
    let first = wait_until(
        Duration::from_secs(10),
        "an anomaly on the subscription",
        || anomalous.lock().unwrap().first().cloned(),
    );
    let a = &first["data"]["anomalies"];
    assert_eq!(a["unit"], "hot", "{first}");
    assert_eq!(a["metric"], "hypernix_unit_cpu_usage_ratio", "{first}");
    assert!(a["score"].as_f64().unwrap() >= 0.5, "{first}");
    for mut n in [node, node2] {
        let _ = n.kill();
        let _ = n.wait();
    }

    // The burner shows in the stored series; capacity has history to forecast from.
    let series = d.json(&[
        "monitor",
        "query",
        "hypernix_unit_cpu_usage_ratio",
        "--label",
        "unit=hot",
        "--since",
        "600",
        "--max-points",
        "1000",
        "--json",
    ]);
    let points = series[0]["points"].as_array().unwrap();
    let peak = points
        .iter()
        .filter_map(|p| p["max"].as_f64())
        .fold(0.0, f64::max);
    assert!(points.len() >= 30 && peak > 0.5, "{series}");
    let capacity = d.json(&["monitor", "capacity", "--json"]);
    let resources = capacity["resources"].as_array().unwrap();
    for name in ["cpu", "memory", "filesystem"] {
        let r = resources
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{capacity}"));
        assert!(r["historyPoints"].as_u64().unwrap() >= 20, "{r}");
        assert!(r["capacity"].as_f64().unwrap() > 0.0, "{r}");
    }
    let bad = d.cli(&["monitor", "why", "999999"]);
    assert!(!bad.status.success());
    assert!(
        kit::text(&bad.stderr).contains("no such alert"),
        "{}",
        kit::text(&bad.stderr)
    );
}

#[test]
fn a_filling_tier_raises_a_predictive_alert_before_it_is_full() {
    let _g = heavy();
    let d = TestDaemon::start();
    let state = d.state().display();
    let f = d.config(
        "c.nix",
        &format!(
            r#"{{
  hypervisor.storage.defaultTier = 0;
  hypervisor.storage.tiers.only = {{ level = 0; providers = [ {{ type = "ssd-array"; capacity = "160Mi"; location = "{state}/tiers/only"; }} ]; }};
  hypervisor.compute.units.writer = {{
    resources.memory.size = "256Mi";
    storage = [ {{ name = "data"; capability = "block"; size = "512Mi"; }} ];
  }};
  hypervisor.monitoring.interval = "1s";
  hypervisor.monitoring.ai.prediction.capacity.horizons = [ "10m" ];
}}"#
        ),
    );
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    d.wait_ready("writer");
    let mut console = Console::open(&d, "writer");
    // 1 MiB a second of new data: the 160 MiB tier fills in under three minutes.
    console.run(
        "(i=0; while [ $i -lt 400 ]; do dd if=/dev/urandom of=/dev/vda bs=1M count=1 seek=$i \
         conv=fsync 2>/dev/null; i=$((i+1)); sleep 1; done) & true",
    );
    let started = Instant::now();
    // Other resources may be predicted too (a host disk filling up under a build is).
    let predicted = wait_until(Duration::from_secs(120), "a capacity prediction", || {
        d.events("monitor.predicted")
            .into_iter()
            .find(|e| e["payload"]["resource"] == "tier/only")
    });
    let p = &predicted["payload"];
    let used = p["used"].as_f64().unwrap();
    let capacity = p["capacity"].as_f64().unwrap();
    assert!(used < capacity, "predicted before full: {predicted}");
    let at = p["crossesAtMs"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!(at > now - 60_000 && at < now + 600_000, "{predicted}");
    eprintln!(
        "predicted {} s after writing began, at {:.0}% used, full in {} s",
        started.elapsed().as_secs(),
        used / capacity * 100.0,
        (at - now) / 1000
    );
    let report = d.json(&["monitor", "capacity", "--json"]);
    let tier = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "tier/only")
        .cloned()
        .unwrap_or_else(|| panic!("{report}"));
    assert!(tier["crossesAt"].is_string(), "{tier}");
}
