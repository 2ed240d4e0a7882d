//! Units composed from blueprints, run by the daemon with the busybox test guest: the
//! component's port forwarded to the guest's httpd, the seed ISO attached, component
//! provenance in `config explain`, and a blueprint that fails to compose.

mod kit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kit::{TestDaemon, heavy, qemu_pids};
use serde_json::{Value, json};

const CONFIG: &str = r#"{
  hypervisor.compute.tags.small = { category = "performance"; priority = 40; values.resources.memory.size = "256Mi"; };
  hypervisor.composition.components = {
    web = { type = "service"; configuration.ports = [ { internal = 80; } ];
            configuration.files."/etc/web.conf" = { content = "port = 80\n"; }; };
    roomy = { type = "base"; configuration.resources.memory.minimum = "320Mi"; };
    a = { type = "base"; compatibility.requires = [ "b" ]; };
    b = { type = "base"; compatibility.requires = [ "a" ]; };
  };
  hypervisor.composition.blueprints = {
    site = { components = [ { component = "web"; } { component = "roomy"; } ]; };
    broken = { components = [ { component = "a"; } ]; };
  };
  hypervisor.compute.units.w = { tags = [ "small" ]; labels.blueprint = "site"; };
  hypervisor.compute.units.bad = { tags = [ "small" ]; blueprint = "broken"; };
}"#;

fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.").then_some(body)
}

fn ports(u: &Value) -> Vec<Value> {
    u["ports"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_blueprint_unit_boots_with_ports_seed_and_provenance() {
    let _g = heavy();
    let d = TestDaemon::start();
    let f = d.config("c.nix", CONFIG);
    d.json(&["apply", "--json", f.to_str().unwrap()]);

    // The blueprint that does not compose fails the unit with the chain.
    let bad = d.wait_unit("bad", Duration::from_secs(30), "failed", |u| {
        u["state"] == "FAILED"
    });
    assert_eq!(
        bad["reason"], "blueprint broken: dependency cycle: a → b → a",
        "{bad}"
    );

    d.wait_ready("w");
    let w = d.json(&["unit", "show", "w", "--json"]);
    let p = ports(&w);
    assert_eq!(p.len(), 1, "{w}");
    assert_eq!(
        (p[0]["internal"].as_u64(), p[0]["protocol"].as_str()),
        (Some(80), Some("tcp"))
    );
    let host = p[0]["external"].as_u64().unwrap() as u16;
    // The roomy component raised the memory.
    assert_eq!(w["memory"].as_u64(), Some(320 << 20), "{w}");

    // The forwarded port reaches the guest's httpd.
    let page = kit::wait_until(Duration::from_secs(30), "the guest's httpd", || get(host));
    assert!(page.contains("hypernix test guest w"), "{page}");

    // The seed is attached read-only and holds the rendered user-data.
    let iso = d.state().join("units/w/seed.iso");
    let pid = qemu_pids(d.state())
        .into_iter()
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("units/w/"))
        })
        .expect("w's QEMU");
    let cmdline = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ");
    assert!(
        cmdline.contains(&format!("filename={},read-only=on", iso.display())),
        "{cmdline}"
    );
    assert!(cmdline.contains("ide-cd,id=cdrom0,drive=cd0"), "{cmdline}");
    let rendered = d.json(&[
        "compose",
        "render",
        "site",
        f.to_str().unwrap(),
        "--unit",
        "w",
        "--format",
        "json",
    ]);
    let want = rendered["seed"]["user-data"].as_str().unwrap();
    assert!(want.contains("/etc/web.conf"), "{want}");
    if have_isoinfo() {
        let out = Command::new("isoinfo")
            .args(["-J", "-x", "/user-data", "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }

    // The guest's kernel reads the seed from its CD-ROM, Joliet names and all.
    let mut console = kit::Console::open(&d, "w");
    let out = console.run(
        "mkdir -p /mnt && mount -t iso9660 -o ro /dev/sr0 /mnt && ls /mnt && \
         head -1 /mnt/user-data && cat /mnt/meta-data",
    );
    assert!(
        out.contains("meta-data") && out.contains("network-config") && out.contains("user-data"),
        "{out}"
    );
    assert!(
        out.contains("#cloud-config") && out.contains("local-hostname: \"w\""),
        "{out}"
    );
    drop(console);

    // `config explain` names the component that set the memory.
    let explain = d.cli(&["config", "explain", "w", f.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&explain.stdout);
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("resources.memory.size"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("component roomy (blueprint site)"), "{row}");

    // A restart keeps the chosen host port.
    let old = w["pid"].as_u64();
    d.json(&["unit", "restart", "w", "--json"]);
    d.wait_unit("w", Duration::from_secs(90), "restarted and ready", |u| {
        u["state"] == "RUNNING" && u["ready"] == true && u["pid"].as_u64() != old
    });
    let again = d.json(&["unit", "show", "w", "--json"]);
    assert_eq!(ports(&again), p, "{again}");
    kit::wait_until(Duration::from_secs(30), "httpd after restart", || get(host));

    // A change to the composition alone restarts the unit with the new seed.
    let before = d.unit("w")["pid"].as_u64();
    let f = d.config("c.nix", &CONFIG.replace("port = 80\\n", "port = 8080\\n"));
    let plan = d.json(&["apply", "--json", f.to_str().unwrap()]);
    let change = &plan["units"][0];
    assert_eq!(
        (
            &change["unit"],
            &change["action"],
            &change["fields"][0]["path"]
        ),
        (&json!("w"), &json!("restart"), &json!("composition")),
        "{plan}"
    );
    assert_ne!(
        change["fields"][0]["old"]["instanceId"], change["fields"][0]["new"]["instanceId"],
        "{plan}"
    );
    d.wait_unit("w", Duration::from_secs(90), "recomposed and ready", |u| {
        u["state"] == "RUNNING" && u["ready"] == true && u["pid"].as_u64() != before
    });
    if have_isoinfo() {
        let out = Command::new("isoinfo")
            .args(["-J", "-x", "/user-data", "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("port = 8080"));
    }
}

fn have_isoinfo() -> bool {
    let found = ["/usr/bin/isoinfo", "/bin/isoinfo"]
        .iter()
        .any(|p| Path::new(p).is_file());
    if !found {
        eprintln!(
            "\n*** isoinfo is absent: the seed ISO's content is not checked; run scripts/install-deps.sh ***\n"
        );
    }
    found
}
