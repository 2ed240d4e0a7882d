//! What the web console offers a token (issue 10): `allowed` answers per unit whether a
//! scoped token may stop it or read its console, without doing either, and the units page
//! in Chromium offers just those actions; the console
//! WebSocket (`/console/UNIT`) attaches only with the console right on that unit; `/ui`
//! serves the embedded page with its Content-Security-Policy; `auditLog` lists the checks.
//! The cluster page draws a one-node cluster and its leader.

mod kit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kit::{TestDaemon, wait_until};
use serde_json::{Value, json};
use tungstenite::Message;

const CONFIG: &str = r#"{ hypervisor = {
  compute.units = {
    web = { image = "/nonexistent/web.img"; labels.tier = "frontend"; };
    db = { image = "/nonexistent/db.img"; labels.tier = "backend"; };
  };
  security.capabilities.web-operator = {
    resources.compute = { control = true; console = true; };
    scope.labels.tier = "frontend";
  };
  security.principals.alice = { type = "user"; grants = [ { capability = "web-operator"; } ]; };
}; }"#;

/// POSTs a GraphQL request with `token`; the JSON answer.
fn post(d: &TestDaemon, token: &str, query: &str, variables: Value) -> Value {
    ureq::post(&format!("http://{}/graphql", d.api))
        .header("authorization", &format!("Bearer {token}"))
        .send_json(json!({ "query": query, "variables": variables }))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap()
}

/// The answer of `allowed` for: stop web, stop db, console of web, console of db, delete web.
fn offers(d: &TestDaemon, token: &str) -> Value {
    let checks = json!([
        { "type": "MUTATION", "field": "controlComputeUnit", "args": { "name": "web", "action": "STOP" } },
        { "type": "MUTATION", "field": "controlComputeUnit", "args": { "name": "db", "action": "STOP" } },
        { "type": "QUERY", "field": "consoleLog", "args": { "name": "web" } },
        { "type": "QUERY", "field": "consoleLog", "args": { "name": "db" } },
        { "type": "MUTATION", "field": "deleteComputeUnit", "args": { "name": "web" } },
        { "type": "QUERY", "field": "noSuchField" },
    ]);
    let v = post(
        d,
        token,
        "query($c: [OperationCheck!]!) { allowed(checks: $c) }",
        json!({ "c": checks }),
    );
    v["data"]["allowed"].clone()
}

/// The first text message of the console socket of `unit`, after sending `token`.
fn console_answer(d: &TestDaemon, unit: &str, token: &str) -> Value {
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/console/{unit}", d.api)).unwrap();
    ws.send(Message::text(json!({ "token": token }).to_string()))
        .unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(_) => panic!("closed without an answer"),
            _ => {}
        }
    }
}

/// Debian's Chromium with playwright-core; a test fails, naming the fix, without them.
fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/node_modules/playwright-core");
    assert!(
        path.exists() && dir.exists(),
        "Chromium ({}) and playwright-core ({}) are needed: scripts/test.sh installs both",
        path.display(),
        dir.display()
    );
    path
}

/// What the units page offers `token`, per unit: `{"actions": [...], "console": bool}`.
fn page_offers(d: &TestDaemon, token: &str, chromium: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/offers.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(format!("http://{}", d.api))
        .env("HYPERNIX_TOKEN", token)
        .env("CHROMIUM", chromium)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "offers.mjs: {}{}",
        kit::text(&out.stdout),
        kit::text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_scoped_token_is_offered_and_attached_only_what_it_may_do() {
    let d = TestDaemon::start();
    let f = d.config("caps.nix", CONFIG);
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let alice = d.json(&["caps", "issue", "alice", "--json"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let root = d.token();

    assert_eq!(
        offers(&d, &alice),
        json!([true, false, true, false, false, false])
    );
    assert_eq!(
        offers(&d, &root),
        json!([true, true, true, true, true, false])
    );
    // Nothing was done: both units are still as the apply left them.
    for u in d.units() {
        assert_ne!(u["state"], "STOPPING", "{u}");
    }

    // The units page, in Chromium, offers exactly that (the units failed to start, as
    // their images do not exist, so Start is the action in question); a scoped token does
    // not even list the units outside its scope.
    let chromium = chromium();
    assert_eq!(
        page_offers(&d, &alice, &chromium),
        json!({ "web": { "actions": ["start"], "console": true } })
    );
    assert_eq!(
        page_offers(&d, &root, &chromium),
        json!({
            "web": { "actions": ["start"], "console": true },
            "db": { "actions": ["start"], "console": true },
        })
    );

    assert_eq!(
        console_answer(&d, "web", &alice),
        json!({ "attached": "web" })
    );
    let refused = console_answer(&d, "db", &alice);
    assert!(
        refused["error"].as_str().unwrap().contains("console of db"),
        "{refused}"
    );
    let forged = console_answer(&d, "web", "not-a-token");
    assert!(forged["error"].is_string(), "{forged}");

    // The page is served from the binary, with a policy that keeps it on this origin.
    let mut page = ureq::get(&format!("http://{}/ui/", d.api)).call().unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(page.body_mut().read_to_string().unwrap().contains("app.js"));
    let js = ureq::get(&format!("http://{}/ui/vendor/xterm.js", d.api))
        .call()
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );

    // The audit log shows the console refusal; `allowed` itself is audited, its checks not.
    let log = wait_until(
        Duration::from_secs(10),
        "the console refusal audited",
        || {
            let v = post(
                &d,
                &root,
                "{ auditLog(limit: 1000) { operation resource allowed principal } }",
                json!({}),
            );
            let log = v["data"]["auditLog"].as_array().unwrap().clone();
            log.iter()
                .any(|r| {
                    r["operation"] == "unit.console"
                        && r["resource"] == "unit/db"
                        && r["allowed"] == false
                })
                .then_some(log)
        },
    );
    assert!(
        log.iter()
            .any(|r| r["operation"] == "auth.allowed" && r["principal"] == "alice")
    );
    assert!(
        !log.iter().any(|r| r["operation"] == "unit.stop"),
        "a check was audited as a stop: {log:?}"
    );
}

/// The cluster page of a one-node cluster, in Chromium: the node in the graph, ringed as
/// the leader, and in the table with its role.
#[test]
fn the_cluster_page_draws_the_nodes_and_the_leader() {
    let chromium = chromium();
    let files = tempfile::tempdir().unwrap();
    let node = files.path().join("node1.nix");
    std::fs::write(
        &node,
        r#"{ hypervisor.mesh = { enable = true; clusterName = "console"; node.id = "1";
             node.roles = [ "worker" ]; }; }"#,
    )
    .unwrap();
    let mesh = format!("127.0.0.1:{}", kit::mesh_port());
    let d = TestDaemon::start_with(&["--node", node.to_str().unwrap(), "--mesh-listen", &mesh]);
    wait_until(Duration::from_secs(30), "a leader", || {
        let s = d.json(&["mesh", "status", "--json"]);
        s["leader"].as_u64().map(|_| ())
    });
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-artifacts");
    let out = std::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/cluster.mjs"))
        .arg(format!("http://{}", d.api))
        .arg(&artifacts)
        .env("HYPERNIX_TOKEN", d.token())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "cluster.mjs: {}{}",
        kit::text(&out.stdout),
        kit::text(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["heading"], "Cluster console", "{seen}");
    assert!(
        seen["summary"].as_str().unwrap().contains("leader 1"),
        "{seen}"
    );
    assert_eq!(seen["graphNodes"], 1, "{seen}");
    assert_eq!(seen["leaderRings"], 1, "{seen}");
    let row = &seen["rows"][0];
    assert!(row[0].as_str().unwrap().contains("(leader)"), "{seen}");
    assert_eq!(row[1], "worker", "{seen}");
}
