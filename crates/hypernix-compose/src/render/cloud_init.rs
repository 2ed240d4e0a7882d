//! The cloud-init NoCloud seed: `user-data`, `meta-data` and `network-config`.
//!
//! user-data is `#cloud-config` YAML; every scalar is written as a double-quoted JSON
//! string, which YAML reads unchanged:
//! - `packages` (with `package_update`) installs the composition's packages;
//! - `write_files` writes each file with its permissions and `owner:group`, deferred
//!   until after packages when the owner is not root (the package may create the user),
//!   and appends the environment to `/etc/environment`;
//! - `bootcmd` runs preInstall hooks once per instance (`cloud-init-per`), before
//!   packages;
//! - `runcmd` removes packages, then runs postInstall, configure and validate hooks, each
//!   phase in dependency order;
//! - volumes: persistent ones are disks found by serial number (`fs_setup`, `mounts`),
//!   ephemeral ones tmpfs, config and secret ones read-only directories (0755 / 0700).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use hypernix_config::schema::composition::VolumeKind;

use crate::merge::{Composed, Phase};

/// QEMU's MAC address for a guest's first NIC when none is set.
pub const QEMU_FIRST_MAC: &str = "52:54:00:12:34:56";

/// The three files of a NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Seed {
    /// `#cloud-config` user data.
    pub user_data: String,
    /// Instance id and hostname.
    pub meta_data: String,
    /// Network configuration, version 2.
    pub network_config: String,
}

impl Seed {
    /// The files by their names on the seed volume.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            ("user-data", self.user_data.as_bytes()),
            ("meta-data", self.meta_data.as_bytes()),
            ("network-config", self.network_config.as_bytes()),
        ]
    }

    /// The seed as an ISO 9660 volume labelled `cidata`.
    pub fn iso(&self) -> Vec<u8> {
        super::iso::write("cidata", &self.files())
    }
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Renders the seed of a composition for a guest named `hostname` whose first NIC has
/// the MAC address `mac`.
pub fn seed(composed: &Composed, hostname: &str, mac: &str) -> Seed {
    let user_data = user_data(composed);
    let id = fnv1a(user_data.as_bytes()) ^ fnv1a(hostname.as_bytes()).rotate_left(1);
    let meta_data = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        q(&format!("hypernix-{hostname}-{:08x}", id as u32)),
        q(hostname)
    );
    let network_config = format!(
        "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: {}\n    set-name: \"eth0\"\n    dhcp4: true\n",
        q(&mac.to_ascii_lowercase())
    );
    Seed {
        user_data,
        meta_data,
        network_config,
    }
}

/// The `#cloud-config` document.
pub fn user_data(c: &Composed) -> String {
    let mut y = String::from("#cloud-config\n");
    let names: Vec<&str> = c.members.iter().map(|m| m.alias.as_str()).collect();
    let _ = writeln!(
        y,
        "# Composed by hypernix from blueprint {}: {}",
        c.blueprint,
        names.join(", ")
    );
    if !c.install.is_empty() {
        y.push_str("package_update: true\npackages:\n");
        for p in c.install.keys() {
            let _ = writeln!(y, "  - {}", q(p));
        }
    }
    if !c.files.is_empty() || !c.environment.is_empty() {
        y.push_str("write_files:\n");
        for (path, f) in &c.files {
            let _ = writeln!(y, "  - path: {}", q(path));
            let _ = writeln!(y, "    content: {}", q(&f.content));
            let _ = writeln!(y, "    permissions: {}", q(&f.mode));
            let _ = writeln!(y, "    owner: {}", q(&format!("{}:{}", f.owner, f.group)));
            // Deferred until after packages (which may create the owner) and after the
            // persistent volumes are mounted (a file inside one belongs on its disk).
            if f.owner != "root" || f.group != "root" || on_disk_volume(c, path) {
                y.push_str("    defer: true\n");
            }
        }
        if !c.environment.is_empty() {
            let mut env = String::new();
            for (k, v) in &c.environment {
                let _ = writeln!(env, "{k}={}", q(&v.value));
            }
            y.push_str("  - path: \"/etc/environment\"\n");
            let _ = writeln!(y, "    content: {}", q(&env));
            y.push_str("    append: true\n");
        }
    }
    disks(&mut y, c);
    let pre: Vec<_> = c
        .hooks
        .iter()
        .filter(|h| h.phase == Phase::PreInstall)
        .collect();
    let scratch: Vec<_> = c
        .volumes
        .iter()
        .filter(|v| v.kind == VolumeKind::Ephemeral)
        .collect();
    if !pre.is_empty() || !scratch.is_empty() {
        y.push_str("bootcmd:\n");
        // Ephemeral volumes are tmpfs, in fstab from the first boot on, so they are empty
        // after every restart; mounted before write_files writes into them.
        for v in scratch {
            let size = v.size.map(|s| format!("size={s},")).unwrap_or_default();
            let cmd = format!(
                "mkdir -p {p} && echo 'tmpfs {p} tmpfs {size}mode=0755 0 0' >> /etc/fstab && mount {p}",
                p = v.path
            );
            let _ = writeln!(
                y,
                "  - [\"cloud-init-per\", \"instance\", {}, \"sh\", \"-c\", {}]",
                q(&format!("hypernix-volume-{}", v.name)),
                q(&cmd)
            );
        }
        for h in pre {
            let once = format!("hypernix-pre-install-{}", h.component);
            let _ = writeln!(
                y,
                "  - [\"cloud-init-per\", \"instance\", {}, \"sh\", \"-c\", {}]",
                q(&once),
                q(&h.command)
            );
        }
    }
    let later: Vec<_> = c
        .hooks
        .iter()
        .filter(|h| h.phase != Phase::PreInstall)
        .collect();
    let read_only: Vec<_> = c
        .volumes
        .iter()
        .filter(|v| matches!(v.kind, VolumeKind::Config | VolumeKind::Secret))
        .collect();
    if !later.is_empty() || !c.remove.is_empty() || !read_only.is_empty() {
        y.push_str("runcmd:\n");
        if !c.remove.is_empty() {
            let mut cmd = String::from("DEBIAN_FRONTEND=noninteractive apt-get remove -y");
            for p in c.remove.keys() {
                cmd.push_str(" '");
                cmd.push_str(&p.replace('\'', "'\\''"));
                cmd.push('\'');
            }
            let _ = writeln!(y, "  - [\"sh\", \"-c\", {}]", q(&cmd));
        }
        for h in later {
            let _ = writeln!(y, "  # {:?} hook of {}", h.phase, h.component);
            let _ = writeln!(y, "  - [\"sh\", \"-c\", {}]", q(&h.command));
        }
        // Config and secret volumes: directories the hooks above may fill, then bound
        // read-only onto themselves (in fstab, so again after every restart).
        for v in read_only {
            let mode = if v.kind == VolumeKind::Secret {
                "0700"
            } else {
                "0755"
            };
            let cmd = format!(
                "mkdir -p {p} && chmod {mode} {p} && echo '{p} {p} none bind,ro 0 0' >> /etc/fstab && mount {p}",
                p = v.path
            );
            let _ = writeln!(y, "  # {:?} volume {} of {}", v.kind, v.name, v.component);
            let _ = writeln!(y, "  - [\"sh\", \"-c\", {}]", q(&cmd));
        }
    }
    y
}

/// The device of a persistent volume's disk in the guest, by its serial number.
pub fn volume_device(name: &str) -> String {
    format!("/dev/disk/by-id/virtio-{}", volume_serial(name))
}

/// The serial number of a persistent volume's disk.
pub fn volume_serial(name: &str) -> String {
    format!("hnx-{name}")
}

/// Persistent volumes: an ext4 file system made on first use (never over existing data)
/// and mounted by the disk's serial number.
fn disks(y: &mut String, c: &Composed) {
    let disks: Vec<_> = c
        .volumes
        .iter()
        .filter(|v| v.kind == VolumeKind::Persistent)
        .collect();
    if disks.is_empty() {
        return;
    }
    y.push_str("fs_setup:\n");
    for v in &disks {
        let _ = writeln!(y, "  - label: {}", q(&v.name));
        y.push_str("    filesystem: \"ext4\"\n");
        let _ = writeln!(y, "    device: {}", q(&volume_device(&v.name)));
        y.push_str("    partition: \"none\"\n");
    }
    y.push_str("mounts:\n");
    for v in &disks {
        let _ = writeln!(
            y,
            "  - [{}, {}, \"ext4\", \"defaults,nofail\", \"0\", \"2\"]",
            q(&volume_device(&v.name)),
            q(&v.path)
        );
    }
}

/// Whether `path` lies inside a persistent volume.
fn on_disk_volume(c: &Composed, path: &str) -> bool {
    c.volumes.iter().any(|v| {
        v.kind == VolumeKind::Persistent
            && path
                .strip_prefix(v.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// FNV-1a, for a short instance id that changes with the content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
