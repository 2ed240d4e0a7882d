//! The GraphQL API against a real daemon: a real third-party client (npm `graphql-ws`)
//! receives a unit's state changes in order; malformed and oversized requests get
//! GraphQL errors; unit create, update and delete go through mutations.

mod kit;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hypernix_api::client::Client;
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
    let client = Client::new(d.api.clone());
    let last: Vec<Value> = client.events(None).unwrap();
    let after = last.last().map(|e| e["id"].as_u64().unwrap()).unwrap_or(0);

    let dir = node_client();
    let mut node = Command::new("node")
        .arg(dir.join("subscribe.mjs"))
        .arg(format!("ws://{}/graphql", d.api))
        .arg("subscription($a: Int) { computeUnitStateChanged(name: \"web\", after: $a) { unit state eventId } }")
        .arg(json!({ "a": after }).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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

    let plan: Value = client
        .request(
            "mutation { createComputeUnit(name: \"web\", settings: { resources: { memory: { size: \"256Mi\" } } }) { units { unit action } } }",
            json!({}),
            "createComputeUnit",
        )
        .unwrap();
    assert_eq!(plan["units"][0]["action"], "create");
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
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // None: the server closed the connection before the client finished sending.
    let post = |body: &[u8]| -> Option<(u16, Value)> {
        let mut r = agent
            .post(&url)
            .header("content-type", "application/json")
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
    assert!(Client::new(d.api.clone()).units().is_ok());
}
