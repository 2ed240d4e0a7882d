//! The seed's secure-web blueprint on prod-web, provisioned in a real Debian guest (issue 7):
//! cloud-init reads the composed NoCloud seed, nginx answers on the forwarded port, and the
//! security component's file is in the guest. Beside it, a unit whose component declares
//! one volume of each kind gets them mounted as composed.

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
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The seed's composition (examples.nix, verbatim) and prod-web booting the Debian image,
/// and a `db` unit whose component has a persistent, an ephemeral, a config and a secret
/// volume.
fn config(image: &str, db_image: &str) -> String {
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
  hypervisor.composition.components.db = {{
    type = "storage";
    configuration.volumes = [
      {{ name = "data"; path = "/srv/data"; type = "persistent"; size = "64Mi"; }}
      {{ name = "scratch"; path = "/srv/scratch"; type = "ephemeral"; size = "16Mi"; }}
      {{ name = "conf"; path = "/etc/db"; type = "config"; }}
      {{ name = "keys"; path = "/etc/db-keys"; type = "secret"; }}
    ];
    configuration.files."/srv/data/README".content = "on the disk\n";
    configuration.files."/etc/db/db.conf".content = "port = 5432\n";
  }};
  hypervisor.composition.blueprints.db.components = [ {{ component = "db"; }} ];
  hypervisor.compute.units.db = {{
    blueprint = "db";
    image = "{db_image}";
    resources.memory.size = "768Mi";
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
    // Each guest writes to an overlay; the cached image stays clean.
    let overlay = |name: &str| {
        let path = d.state().join(format!("{name}.qcow2"));
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        path.to_str().unwrap().to_string()
    };
    let (web, db) = (overlay("prod-web"), overlay("db"));
    let f = d.config("c.nix", &config(&web, &db));
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
    drop(console);

    // db: the persistent volume is its own disk (found by serial number) holding the
    // component's file, the ephemeral one tmpfs, config and secret read-only directories.
    let mut console = Console::open_within(&d, "db", Duration::from_secs(300));
    console.run("cloud-init status --wait");
    let mounts = console.run("mount | grep -E ' on /(srv|etc/db)'");
    for want in [
        "/dev/vdb on /srv/data type ext4 (rw",
        "tmpfs on /srv/scratch type tmpfs (rw,relatime,size=16384k,mode=755",
        " on /etc/db type ext4 (ro,",
        " on /etc/db-keys type ext4 (ro,",
    ] {
        assert!(mounts.contains(want), "{want} in {mounts}");
    }
    let serial = console.run("readlink /dev/disk/by-id/virtio-hnx-data");
    assert!(serial.contains("../../vdb"), "{serial}");
    let files = console.run("cat /srv/data/README /etc/db/db.conf; stat -c 'mode=%a' /etc/db-keys");
    assert!(
        files.contains("on the disk\nport = 5432") || files.contains("on the disk\r\nport = 5432"),
        "{files}"
    );
    assert!(files.contains("mode=700"), "{files}");
    let write = console.run("touch /etc/db/x || echo refused=$((1+1))");
    assert!(write.contains("refused=2"), "{write}");
}
