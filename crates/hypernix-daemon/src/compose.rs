//! A unit's blueprint as the daemon runs it: composed at apply, then, at each start, the
//! cloud-init seed written to `UNIT_DIR/seed.iso` (attached read-only as a CD-ROM) and
//! each component port forwarded from the host on the unit's first NIC.
//!
//! A port with `external` is forwarded from that port on every host address; one
//! without gets a free port on 127.0.0.1, chosen once and kept in `UNIT_DIR/ports.json`
//! so it stays the same across restarts.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use hypernix_compose::merge::protocol_name;
use hypernix_compose::render::QEMU_FIRST_MAC;
use hypernix_compute::{Action, FieldChange, Plan, ResolvedUnit, UnitChange};
use hypernix_config::schema::composition::VolumeKind;
use hypernix_vmm::{PortForward, Protocol};

use crate::model::{ComposedDisk, ComposedPort, ForwardedPort, UnitComposition};

/// The unit's composition as the daemon runs it, from the blueprint the resolver
/// composed; a blueprint that did not compose keeps its error for the unit to fail with.
pub fn unit_composition(unit: &ResolvedUnit) -> Option<UnitComposition> {
    let (blueprint, composed) = unit.blueprint.as_ref()?;
    let blueprint = blueprint.clone();
    Some(match composed {
        Ok(c) => {
            // The daemon leaves MACs to QEMU, which gives the first NIC this one.
            UnitComposition {
                seed: Some(hypernix_compose::seed(
                    c,
                    &hostname(&unit.name),
                    QEMU_FIRST_MAC,
                )),
                ports: c
                    .ports
                    .iter()
                    .map(|p| ComposedPort {
                        internal: p.internal,
                        external: p.external,
                        protocol: protocol_name(p.protocol).to_string(),
                    })
                    .collect(),
                disks: c
                    .volumes
                    .iter()
                    .filter(|v| v.kind == VolumeKind::Persistent)
                    .map(|v| ComposedDisk {
                        name: v.name.clone(),
                        size: v.size.unwrap_or_default(),
                    })
                    .collect(),
                error: None,
                blueprint,
            }
        }
        Err(e) => UnitComposition {
            blueprint,
            error: Some(e.to_string()),
            seed: None,
            ports: Vec::new(),
            disks: Vec::new(),
        },
    })
}

/// The guest's hostname: the unit's name, as far as hostnames allow.
pub fn hostname(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect()
}

/// Writes the seed ISO into `dir`; returns its path.
pub fn write_seed(dir: &Path, c: &UnitComposition) -> Result<Option<PathBuf>, String> {
    let Some(seed) = &c.seed else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("seed.iso");
    let tmp = dir.join("seed.iso.tmp");
    std::fs::write(&tmp, seed.iso())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("writing the cloud-init seed {}: {e}", path.display()))?;
    Ok(Some(path))
}

/// The forwards of the composed ports, choosing (and storing in `dir`) host ports for
/// those without `external`.
pub fn forwards(dir: &Path, c: &UnitComposition) -> Result<Vec<PortForward>, String> {
    let file = dir.join("ports.json");
    let mut chosen: BTreeMap<String, u16> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let before = chosen.clone();
    let mut out = Vec::new();
    for p in &c.ports {
        let protocol = if p.protocol == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let (host_addr, host_port) = match p.external {
            Some(port) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            None => {
                let key = format!("{}/{}", p.internal, p.protocol);
                let port = match chosen.get(&key) {
                    Some(port) => *port,
                    None => {
                        let port = free_port(protocol)?;
                        chosen.insert(key, port);
                        port
                    }
                };
                (IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            }
        };
        out.push(PortForward {
            protocol,
            host_addr,
            host_port,
            guest_port: p.internal,
        });
    }
    if chosen != before {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = serde_json::to_vec_pretty(&chosen).map_err(|e| e.to_string())?;
        std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(out)
}

/// A port the kernel says is free on 127.0.0.1 now.
fn free_port(protocol: Protocol) -> Result<u16, String> {
    let addr = (Ipv4Addr::LOCALHOST, 0);
    let port = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
    };
    port.map(|a| a.port())
        .map_err(|e| format!("no free host port to forward: {e}"))
}

/// The forwarded ports as the API shows them.
pub fn shown(forwards: &[PortForward]) -> Vec<ForwardedPort> {
    forwards
        .iter()
        .map(|f| ForwardedPort {
            internal: f.guest_port,
            external: f.host_port,
            protocol: match f.protocol {
                Protocol::Tcp => "tcp".into(),
                Protocol::Udp => "udp".into(),
            },
        })
        .collect()
}

/// Marks in `plan` each unit whose composition changed (`old` → `new`, by unit): its
/// guest reads the seed only when it boots, so it restarts even when no setting changed.
pub fn plan_recomposed(
    plan: &mut Plan,
    old: &BTreeMap<String, Option<UnitComposition>>,
    new: &BTreeMap<String, Option<UnitComposition>>,
) {
    for (name, after) in new {
        let Some(before) = old.get(name) else {
            continue;
        };
        if before == after {
            continue;
        }
        let change = FieldChange {
            path: "composition".into(),
            old: summary(before.as_ref()),
            new: summary(after.as_ref()),
            live: false,
            reason: "the composed blueprint changed; the guest reads its cloud-init seed \
                     when it boots"
                .into(),
        };
        match plan.units.iter_mut().find(|u| &u.unit == name) {
            Some(u) => {
                u.action = Action::Restart;
                u.fields.push(change);
            }
            None => plan.units.push(UnitChange {
                unit: name.clone(),
                action: Action::Restart,
                fields: vec![change],
            }),
        }
    }
    plan.units.sort_by(|a, b| a.unit.cmp(&b.unit));
}

/// A composition as a plan shows it: the blueprint and the seed's instance id, which
/// changes with the rendered user-data, or the error.
fn summary(c: Option<&UnitComposition>) -> serde_json::Value {
    let Some(c) = c else {
        return serde_json::Value::Null;
    };
    let instance = c.seed.as_ref().and_then(|s| {
        s.meta_data
            .lines()
            .find_map(|l| l.strip_prefix("instance-id: "))
            .map(|id| id.trim_matches('"').to_string())
    });
    serde_json::json!({ "blueprint": c.blueprint, "instanceId": instance, "error": c.error })
}
