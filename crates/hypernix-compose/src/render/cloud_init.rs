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
//!   phase in dependency order.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

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
            if f.owner != "root" || f.group != "root" {
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
    let pre: Vec<_> = c
        .hooks
        .iter()
        .filter(|h| h.phase == Phase::PreInstall)
        .collect();
    if !pre.is_empty() {
        y.push_str("bootcmd:\n");
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
    if !later.is_empty() || !c.remove.is_empty() {
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
    }
    y
}

/// FNV-1a, for a short instance id that changes with the content.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
