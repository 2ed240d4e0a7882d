//! The seed's own example (`../shared/design/examples.nix`) loads and runs: both units
//! boot, prod-web composed from its blueprint (nginx-base's port forwarded, the seed
//! attached), its disks tiered volumes, and prod-web backed up by the continuous
//! `production` source. The example is imported unchanged; only its tier directories are
//! moved into the test's state directory, so the test never writes to the host's
//! /var/lib/hypernix.

mod kit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kit::{TestDaemon, heavy, wait_until};
use serde_json::{Value, json};

/// examples.nix with each directory tier's provider located under `dir`.
fn wrapper(dir: &str) -> String {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/design/examples.nix"
    );
    format!(
        r#"let
  ex = import {example};
  tiers = ex.hypervisor.storage.tiers;
  moved = name: tiers.${{name}} // {{
    providers = map (p: p // {{ location = "{dir}/tiers/${{name}}"; }}) tiers.${{name}}.providers;
  }};
in ex // {{
  hypervisor = ex.hypervisor // {{
    storage = ex.hypervisor.storage // {{
      tiers = tiers // {{ tier-1 = moved "tier-1"; tier-2 = moved "tier-2"; }};
    }};
  }};
}}"#
    )
}

/// The first line of the answer to `GET /` on a loopback port.
fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.")
        .then(|| body.lines().next().unwrap_or_default().to_string())
}

fn gql(d: &TestDaemon, query: &str) -> Value {
    let mut r = ureq::post(format!("http://{}/graphql", d.api))
        .header("authorization", &format!("Bearer {}", d.token()))
        .send_json(json!({ "query": query }))
        .unwrap();
    let v: Value = r.body_mut().read_json().unwrap();
    assert!(v["errors"].is_null(), "{v}");
    v["data"].clone()
}

#[test]
fn the_seed_example_loads_and_runs() {
    let _g = heavy();
    let d = TestDaemon::start();
    let f = d.config("example.nix", &wrapper(d.state().to_str().unwrap()));
    d.json(&["apply", "--json", f.to_str().unwrap()]);
    let web = d.wait_ready("prod-web");
    d.wait_ready("webserver");

    // prod-web: composed from secure-web, nginx-base's port 80 forwarded to the guest.
    let port = web["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["internal"] == 80))
        .and_then(|p| p["external"].as_u64())
        .unwrap_or_else(|| panic!("port 80 not forwarded: {web}")) as u16;
    let status = wait_until(Duration::from_secs(30), "prod-web's httpd", || get(port));
    assert!(status.contains("200"), "{status}");
    assert!(d.state().join("units/prod-web/seed.iso").is_file());
    let explain = d.cli(&["config", "explain", "prod-web", f.to_str().unwrap()]);
    assert!(explain.status.success());

    // Its disk (from the tier-0-storage tag) is a tiered volume served by the daemon; the
    // memory tier it names cannot hold volume data, which the unit is warned about.
    let volumes = gql(&d, "{ volumes { name size } }");
    assert!(
        volumes["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "prod-web.root" && v["size"] == json!(2u64 << 30)),
        "{volumes}"
    );
    let warned = d.events("unit.warning");
    assert!(
        warned
            .iter()
            .any(|e| e["payload"]["message"].to_string().contains("memory tier")),
        "{warned:?}"
    );

    // The continuous `production` source (label tier = frontend) backs prod-web up.
    let snapshot = wait_until(Duration::from_secs(120), "a backup of prod-web", || {
        let snaps = d.json(&["backup", "snapshots", "--json"]);
        snaps
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| {
                s["source"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("production/prod-web/"))
            })
            .cloned()
    });
    assert_eq!(snapshot["size"], json!(2u64 << 30), "{snapshot}");
    assert!(d.state().join("backup/default.key").is_file());
}
