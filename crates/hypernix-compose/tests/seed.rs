//! The rendered seed, read back with real tools: `isoinfo` for the ISO volume and
//! `cloud-init schema` for the user-data. Each test skips loudly when its tool is absent
//! (scripts/install-deps.sh installs genisoimage and cloud-init).

use std::path::Path;
use std::process::Command;

use hypernix_compose::{Values, compose, seed};
use hypernix_config::schema::composition::Composition;
use serde_json::json;

fn secure_web() -> Composition {
    serde_json::from_value(json!({
        "components": {
            "nginx-base": { "type": "service", "configuration": {
                "packages": { "install": [ "nginx" ] }, "ports": [ { "internal": 80 } ],
                "files": { "/var/www/html/index.html": { "content": "hi\n", "owner": "www-data",
                                                        "group": "www-data", "mode": "0640" } } } },
            "security-hardened": { "type": "security", "configuration": {
                "files": { "/etc/security.conf": { "content": "hardened = true\n" } },
                "environment": { "HARDENED": "yes \"really\"" },
                "packages": { "remove": [ "telnet" ] },
                "hooks": { "preInstall": "echo pre", "configure": "chmod 600 /etc/security.conf",
                           "validate": "test -f /etc/security.conf" } } }
        },
        "blueprints": { "secure-web": { "components": [
            { "component": "nginx-base" }, { "component": "security-hardened" } ] } }
    }))
    .unwrap()
}

fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(tool).is_file()));
    if !found {
        eprintln!("\n*** SKIPPED: `{tool}` is not installed; run scripts/install-deps.sh ***\n");
    }
    found
}

#[test]
fn user_data_holds_packages_files_environment_and_hooks() {
    let c = compose(&secure_web(), "secure-web", &Values::new()).unwrap();
    let s = seed(&c, "prod-web", "52:54:00:12:34:56");
    let u = &s.user_data;
    assert!(u.starts_with("#cloud-config\n"), "{u}");
    assert!(u.contains("packages:\n  - \"nginx\"\n"), "{u}");
    assert!(u.contains("  - path: \"/etc/security.conf\"\n    content: \"hardened = true\\n\"\n    permissions: \"0644\"\n    owner: \"root:root\"\n"), "{u}");
    assert!(
        u.contains("HARDENED=\\\"yes \\\\\\\"really\\\\\\\"\\\"\\n"),
        "{u}"
    );
    assert!(u.contains("bootcmd:\n  - [\"cloud-init-per\", \"instance\", \"hypernix-pre-install-security-hardened\", \"sh\", \"-c\", \"echo pre\"]"), "{u}");
    assert!(
        u.contains("owner: \"www-data:www-data\"\n    defer: true\n"),
        "{u}"
    );
    let configure = u.find("chmod 600").unwrap();
    let validate = u.find("test -f").unwrap();
    let remove = u.find("apt-get remove -y 'telnet'").unwrap();
    assert!(remove < configure && configure < validate, "{u}");
    assert!(
        s.meta_data.starts_with("instance-id: \"hypernix-prod-web-"),
        "{}",
        s.meta_data
    );
    assert!(s.meta_data.contains("local-hostname: \"prod-web\"\n"));
    assert!(
        s.network_config
            .contains("macaddress: \"52:54:00:12:34:56\"")
    );
    assert!(s.network_config.contains("dhcp4: true"));
    // The instance id follows the content.
    let other = seed(&c, "prod-web-2", "52:54:00:12:34:56");
    assert_ne!(other.meta_data.lines().next(), s.meta_data.lines().next());
}

#[test]
fn iso_reads_back_with_isoinfo() {
    if !have("isoinfo") {
        return;
    }
    let c = compose(&secure_web(), "secure-web", &Values::new()).unwrap();
    let s = seed(&c, "prod-web", "52:54:00:12:34:56");
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("seed.iso");
    std::fs::write(&iso, s.iso()).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("isoinfo")
            .args(args)
            .arg("-i")
            .arg(&iso)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "isoinfo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let info = run(&["-d"]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(info.contains("Joliet"), "{info}");
    let listing = run(&["-J", "-f"]);
    let mut names: Vec<&str> = listing.lines().collect();
    names.sort();
    assert_eq!(names, ["/meta-data", "/network-config", "/user-data"]);
    for (name, content) in s.files() {
        assert_eq!(
            run(&["-J", "-x", &format!("/{name}")]).as_bytes(),
            content,
            "{name}"
        );
    }
    // Readers without Joliet see 8.3 names with the same data.
    assert_eq!(run(&["-x", "/USERDATA.;1"]), s.user_data);
    // blkid, as cloud-init's ds-identify uses it, finds the label.
    if have("blkid") {
        let out = Command::new("blkid").arg("-p").arg(&iso).output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("LABEL=\"cidata\"") && said.contains("TYPE=\"iso9660\""),
            "{said}"
        );
    }
}

#[test]
fn cloud_init_accepts_the_user_data() {
    if !have("cloud-init") {
        return;
    }
    let c = compose(&secure_web(), "secure-web", &Values::new()).unwrap();
    let s = seed(&c, "prod-web", "52:54:00:12:34:56");
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in s.files() {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(dir.path().join("user-data"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "cloud-init schema rejected user-data:\n{text}\n{}",
        s.user_data
    );
    assert!(text.contains("Valid"), "{text}");
}

#[test]
fn cloud_init_renders_the_network_config_as_dhcp_on_the_first_nic() {
    if !have("cloud-init") {
        return;
    }
    let c = compose(&secure_web(), "secure-web", &Values::new()).unwrap();
    let s = seed(&c, "prod-web", "52:54:00:12:34:56");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("network-config");
    std::fs::write(&input, &s.network_config).unwrap();
    let out_dir = dir.path().join("out");
    let out = Command::new("cloud-init")
        .args([
            "devel",
            "net-convert",
            "--kind",
            "yaml",
            "--output-kind",
            "eni",
        ])
        .args([
            "--distro",
            "debian",
            "-m",
            "ens3,52:54:00:12:34:56",
            "--network-data",
        ])
        .arg(&input)
        .arg("-d")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eni =
        std::fs::read_to_string(out_dir.join("etc/network/interfaces.d/50-cloud-init")).unwrap();
    assert!(eni.contains("iface eth0 inet dhcp"), "{eni}");
    // The NIC with that MAC is renamed eth0.
    let rules =
        std::fs::read_to_string(out_dir.join("etc/udev/rules.d/70-persistent-net.rules")).unwrap();
    assert!(
        rules.contains("52:54:00:12:34:56") && rules.contains("eth0"),
        "{rules}"
    );
}

/// A blueprint with one volume of each kind and a file on the persistent one.
fn with_volumes() -> Composition {
    serde_json::from_value(json!({
        "components": {
            "db": { "type": "storage", "configuration": {
                "volumes": [
                    { "name": "data", "path": "/srv/data", "type": "persistent", "size": "64Mi" },
                    { "name": "scratch", "path": "/srv/scratch", "type": "ephemeral", "size": "16Mi" },
                    { "name": "conf", "path": "/etc/db", "type": "config" },
                    { "name": "keys", "path": "/etc/db-keys", "type": "secret" } ],
                "files": { "/srv/data/README": { "content": "on the disk\n" },
                           "/etc/db/db.conf": { "content": "port = 5432\n" } } } }
        },
        "blueprints": { "db": { "components": [ { "component": "db" } ] } }
    }))
    .unwrap()
}

#[test]
fn volumes_render_as_disks_tmpfs_and_read_only_directories() {
    let c = compose(&with_volumes(), "db", &Values::new()).unwrap();
    let u = seed(&c, "db", "52:54:00:12:34:56").user_data;
    let dev = "/dev/disk/by-id/virtio-hnx-data";
    assert!(u.contains(&format!("fs_setup:\n  - label: \"data\"\n    filesystem: \"ext4\"\n    device: \"{dev}\"\n    partition: \"none\"\n")), "{u}");
    assert!(
        u.contains(&format!(
            "mounts:\n  - [\"{dev}\", \"/srv/data\", \"ext4\", \"defaults,nofail\", \"0\", \"2\"]"
        )),
        "{u}"
    );
    // A file on the persistent volume waits until the disk is mounted; others do not.
    assert!(u.contains("path: \"/srv/data/README\"\n    content: \"on the disk\\n\"\n    permissions: \"0644\"\n    owner: \"root:root\"\n    defer: true\n"), "{u}");
    assert!(
        u.contains("owner: \"root:root\"\n  - path: \"/srv/data/README\""),
        "{u}"
    );
    assert!(
        u.contains("tmpfs /srv/scratch tmpfs size=16777216,mode=0755 0 0"),
        "{u}"
    );
    assert!(
        u.contains("chmod 0755 /etc/db && echo '/etc/db /etc/db none bind,ro 0 0'"),
        "{u}"
    );
    assert!(u.contains("chmod 0700 /etc/db-keys"), "{u}");
}

#[test]
fn cloud_init_accepts_user_data_with_volumes() {
    if !have("cloud-init") {
        return;
    }
    let c = compose(&with_volumes(), "db", &Values::new()).unwrap();
    let s = seed(&c, "db", "52:54:00:12:34:56");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data");
    std::fs::write(&file, &s.user_data).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("Valid"),
        "{text}\n{}",
        s.user_data
    );
}
