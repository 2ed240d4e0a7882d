//! The GraphQL API against a real daemon: a real third-party client (npm `graphql-ws`)
//! receives a unit's state changes in order; malformed and oversized requests get
//! GraphQL errors; unit create, update and delete go through mutations.

mod kit;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kit::{TestDaemon, heavy, wait_until};
use serde_json::{Value, json};

fn node_client() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hypernix-api/tests/node");
    assert!(
        dir.join("node_modules/graphql-ws").exists(),
        "run `npm ci` in {} (scripts/test.sh does)",
        dir.display()
    );
    dir
}

#[test]
fn graphql_ws_client_sees_state_changes_in_order() {
    let _g = heavy();
    let d = TestDaemon::start();
    let client = d.client();
    let last: Vec<Value> = client.events(None).unwrap();
    let after = last.last().map(|e| e["id"].as_u64().unwrap()).unwrap_or(0);

    let (mut node, lines) = node_subscribe(
        &d.api,
        &d.token(),
        "subscription($a: Int) { computeUnitStateChanged(name: \"web\", after: $a) { unit state eventId } }",
        json!({ "a": after }),
    );

    let plan: Value = client
        .request(
            "mutation { createComputeUnit(name: \"web\", settings: { resources: { memory: { size: \"256Mi\" } } }) { units { unit action } } }",
            json!({}),
            "createComputeUnit",
        )
        .unwrap();
    assert_eq!(plan["units"][0]["action"], "create");
    let jobs: Vec<Value> = client
        .request("{ jobs { job phase done total } }", json!({}), "jobs")
        .unwrap();
    let last = jobs.last().expect("the apply is a job");
    assert_eq!(
        (last["phase"].as_str(), &last["done"], &last["total"]),
        (Some("completed"), &json!(1), &json!(1))
    );
    d.wait_ready("web");
    client.act("web", "STOP").unwrap();

    let states = wait_until(
        Duration::from_secs(20),
        "STOPPED at the graphql-ws client",
        || {
            let seen: Vec<String> = lines
                .lock()
                .unwrap()
                .iter()
                .map(|v| {
                    v["data"]["computeUnitStateChanged"]["state"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string()
                })
                .collect();
            seen.contains(&"STOPPED".to_string()).then_some(seen)
        },
    );
    assert_eq!(states, ["STARTING", "RUNNING", "STOPPING", "STOPPED"]);
    let ids: Vec<u64> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|v| {
            v["data"]["computeUnitStateChanged"]["eventId"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let _ = node.kill();
    let _ = node.wait();

    // Update and delete through mutations.
    let plan: Value = client
        .request(
            "mutation { updateComputeUnit(name: \"web\", settings: { resources: { memory: { size: \"256Mi\" } }, labels: { team: \"a\" } }) { units { unit action } } }",
            json!({}),
            "updateComputeUnit",
        )
        .unwrap();
    assert_eq!(plan["units"][0]["action"], "apply-live");
    let labelled: Vec<Value> = client
        .request(
            "{ computeUnits(filter: { labels: [{ key: \"team\", value: \"a\" }] }) { name } }",
            json!({}),
            "computeUnits",
        )
        .unwrap();
    assert_eq!(labelled.len(), 1);
    let plan: Value = client
        .request(
            "mutation { deleteComputeUnit(name: \"web\") { units { unit action } } }",
            json!({}),
            "deleteComputeUnit",
        )
        .unwrap();
    assert_eq!(plan["units"][0]["action"], "destroy");
    assert!(client.units().unwrap().is_empty());
}

#[test]
fn malformed_and_oversized_requests_get_graphql_errors() {
    let d = TestDaemon::start();
    let url = format!("http://{}/graphql", d.api);
    let token = d.token();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // None: the server closed the connection before the client finished sending.
    let post = |body: &[u8]| -> Option<(u16, Value)> {
        let mut r = agent
            .post(&url)
            .header("content-type", "application/json")
            .header("authorization", &format!("Bearer {token}"))
            .send(body)
            .ok()?;
        let status = r.status().as_u16();
        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
        Some((status, v))
    };
    for body in [
        b"not json".to_vec(),
        b"{\"query\": 3}".to_vec(),
        b"{\"query\": \"{ computeUnits { nosuch } }\"}".to_vec(),
        b"{\"query\": \"{ computeUnits {\"}".to_vec(),
        b"{\"query\": \"mutation { controlComputeUnit(name: \\\"x\\\", action: EXPLODE) { name } }\"}".to_vec(),
        b"{\"query\": \"{ computeUnit(name: \\\"missing\\\") { name } }\"}".to_vec(),
    ] {
        let (status, v) = post(&body).expect("an answer");
        let errors = v["errors"].as_array();
        assert!(
            errors.is_some_and(|e| !e.is_empty()),
            "{} bytes: status {status}, {v}",
            body.len()
        );
    }
    // Over api.limits.bodySize: refused with 413, or cut off while still sending; never hung.
    for _ in 0..3 {
        if let Some((status, v)) = post(&vec![b' '; 2 << 20]) {
            assert_eq!(status, 413, "{v}");
            assert!(v["errors"][0]["message"].is_string(), "{v}");
        }
    }
    // The daemon still answers.
    assert!(d.client().units().is_ok());
}

/// Starts the graphql-ws client on `query`; returns its output lines as they arrive.
fn node_subscribe(
    api: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> (
    std::process::Child,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    let mut node = Command::new("node")
        .arg(node_client().join("subscribe.mjs"))
        .arg(format!("ws://{api}/graphql"))
        .arg(query)
        .arg(variables.to_string())
        .env("HYPERNIX_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = lines.clone();
    let stdout = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&line).unwrap_or(Value::Null));
        }
    });
    (node, lines)
}

#[test]
fn two_daemons_share_events_on_nats_and_a_resumed_subscriber_misses_nothing() {
    let _g = heavy();
    let nats = kit::NatsServer::start();
    let a = TestDaemon::start_with(&["--nats", &nats.url]);
    let b = TestDaemon::start_with(&["--nats", &nats.url]);
    let query = "subscription($a: Int) { events(after: $a, filter: { kinds: [\"unit.started\"] }) { id subject } }";
    let (mut node, lines) = node_subscribe(&b.api, &b.token(), query, json!({ "a": 0 }));

    let f = a.config(
        "c.nix",
        r#"{ hypervisor.compute.units.x.resources.memory.size = "256Mi"; }"#,
    );
    a.json(&["apply", "--json", f.to_str().unwrap()]);
    let first = wait_until(
        Duration::from_secs(30),
        "unit.started of daemon A at daemon B's subscriber",
        || {
            lines
                .lock()
                .unwrap()
                .iter()
                .find(|v| v["data"]["events"]["subject"] == "unit/x")
                .cloned()
        },
    );
    let first_id = first["data"]["events"]["id"].as_u64().unwrap();
    let _ = node.kill();
    let _ = node.wait();

    // While nobody listens, more units start; a subscriber resuming after its last id gets
    // exactly those, in order.
    let f = a.config("c.nix", r#"{ hypervisor.compute.units = { x.resources.memory.size = "256Mi"; y.resources.memory.size = "256Mi"; z.resources.memory.size = "256Mi"; }; }"#);
    a.json(&["apply", "--json", f.to_str().unwrap()]);
    a.wait_unit("z", Duration::from_secs(30), "started", |u| {
        u["pid"].is_u64()
    });
    a.wait_unit("y", Duration::from_secs(30), "started", |u| {
        u["pid"].is_u64()
    });
    let (mut node, lines) = node_subscribe(&b.api, &b.token(), query, json!({ "a": first_id }));
    let subjects = wait_until(Duration::from_secs(30), "the missed events", || {
        let seen: Vec<String> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|v| {
                v["data"]["events"]["subject"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            })
            .collect();
        (seen.len() >= 2).then_some(seen)
    });
    let mut sorted = subjects.clone();
    sorted.sort();
    assert_eq!(sorted, ["unit/y", "unit/z"], "{subjects:?}");
    let _ = node.kill();
    let _ = node.wait();
    // Both daemons read the same history.
    let on_a = a.events("unit.started").len();
    let on_b = b.events("unit.started").len();
    assert_eq!((on_a, on_b), (3, 3));
}

#[test]
fn the_command_lines_client_subscribes_and_a_forged_token_is_refused() {
    let d = TestDaemon::start();
    let query = "subscription($a: Int) { events(after: $a) { id kind subject } }";
    let mut sub = d.client().subscribe(query, json!({ "a": 0 })).unwrap();
    // A unit this host cannot run: configured, then failed, without booting anything.
    let f = d.config(
        "huge.nix",
        r#"{ hypervisor.compute.units.huge.resources.memory.size = "64Ti"; }"#,
    );
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let first = wait_until(Duration::from_secs(10), "an event", || {
        sub.next(Duration::from_millis(200)).unwrap()
    });
    assert_eq!(first["events"]["subject"], "unit/huge", "{first}");

    let forged = hypernix_api::client::Client::new(d.api.clone()).with_token("hnx1.forged");
    let refused = forged
        .subscribe(query, json!({ "a": 0 }))
        .and_then(|mut s| s.next(Duration::from_secs(5)));
    assert!(refused.is_err(), "{refused:?}");
}
