//! The seed's secure-web blueprint on prod-web, provisioned in a real Debian guest (issue 7):
//! cloud-init reads the composed NoCloud seed, nginx answers on the forwarded port, and the
//! security component's file is in the guest.

mod kit;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kit::{Console, TestDaemon, heavy, wait_until};

/// The Debian guest image, built by the project's script or reused from its cache.
fn debian_image() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/debian-image.sh");
    let out = Command::new("bash").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/debian-image.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The body of `GET /` on a loopback port, if it answered.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The seed's composition (examples.nix, verbatim) and prod-web booting the Debian image.
fn config(image: &str) -> String {
    format!(
        r#"{{
  hypervisor.composition.components = {{
    nginx-base = {{
      type = "service";
      configuration.packages.install = [ "nginx" ];
      configuration.ports = [ {{ internal = 80; }} ];
    }};
    security-hardened = {{
      type = "security";
      configuration.files."/etc/security.conf" = {{ content = "hardened = true\n"; }};
    }};
  }};
  hypervisor.composition.blueprints.secure-web = {{
    components = [ {{ component = "nginx-base"; }} {{ component = "security-hardened"; }} ];
  }};
  hypervisor.compute.units.prod-web = {{
    labels = {{ blueprint = "secure-web"; tier = "frontend"; }};
    image = "{image}";
    resources.memory.size = "1Gi";
    network = [ {{ name = "eth0"; capability = "nat"; }} ];
  }};
}}"#
    )
}

#[test]
fn secure_web_blueprint_provisions_a_debian_guest() {
    let _g = heavy();
    let base = debian_image();
    let d = TestDaemon::start();
    // The guest writes to an overlay; the cached image stays clean.
    let overlay = d.state().join("prod-web.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(made.success());
    let f = d.config("c.nix", &config(overlay.to_str().unwrap()));
    d.json(&["apply", "--json", f.to_str().unwrap()]);

    let u = d.wait_unit("prod-web", Duration::from_secs(60), "running", |u| {
        u["state"] == "RUNNING"
    });
    let port = u["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("no ports in {u}"))
        .iter()
        .find(|p| p["internal"] == 80 && p["protocol"] == "tcp")
        .and_then(|p| p["external"].as_u64())
        .unwrap_or_else(|| panic!("port 80 not forwarded: {u}")) as u16;

    // nginx (from the nginx-base component) answers through the forwarded port.
    let page = wait_until(Duration::from_secs(600), "nginx's page", || {
        http_get(port).filter(|b| b.contains("Welcome to nginx!"))
    });
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");

    // cloud-init took the seed from the cidata volume and wrote the component's file.
    let mut console = Console::open_within(&d, "prod-web", Duration::from_secs(300));
    let status = console.run("cloud-init status --wait --long");
    assert!(status.contains("NoCloud"), "{status}");
    let conf = console.run("cat /etc/security.conf");
    assert!(conf.contains("hardened = true"), "{conf}");
    // The prompt names the host too; the marker is expanded by the guest's shell.
    let host = console.run("echo host=$(hostname)");
    assert!(host.contains("host=prod-web"), "{host}");
}
