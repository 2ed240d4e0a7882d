//! From a resolved unit to what the daemon runs: the [`UnitSpec`] kept in the store, and
//! the [`VmSpec`] handed to QEMU. Options this host cannot honour are errors that say so;
//! they make the unit Failed with the reason, never silently ignored.

use std::path::Path;

use hypernix_compute::ResolvedUnit;
use hypernix_config::schema::compute::{Architecture, SecurityLevel, StorageRequest};
use hypernix_vmm::{Accel, Boot, Disk, DiskFormat, DiskSource, Nic, TestGuest, VmSpec};

use crate::layout::Layout;
use crate::model::{RestartPolicy, UnitSpec};
use crate::storage::StorageEngine;

/// The spec the daemon stores for a resolved unit.
pub fn unit_spec(unit: &ResolvedUnit) -> UnitSpec {
    UnitSpec {
        vcpus: unit.cpu.vcpus,
        max_vcpus: unit.cpu.max_vcpus,
        cpu_quota: unit.cpu.quota_cores,
        memory: unit.memory.bytes(),
        restart: RestartPolicy::from(unit.settings.workload.kind),
        labels: unit.settings.labels.clone(),
        settings: unit.settings.clone(),
        composition: crate::compose::unit_composition(unit),
    }
}

/// Builds the QEMU spec of a unit with warnings about settings only partly honoured,
/// or says why this host cannot run it.
pub fn vm_spec(
    name: &str,
    spec: &UnitSpec,
    layout: &Layout,
    storage: &StorageEngine,
    accel: Accel,
    guest: impl FnOnce() -> Result<TestGuest, String>,
) -> Result<(VmSpec, Vec<String>), String> {
    let mut warnings = Vec::new();
    let s = &spec.settings;
    if s.resources.compute.architecture != Architecture::X86_64 {
        return Err("resources.compute.architecture: only x86_64 guests run on this host".into());
    }
    if let Some(a) = s.resources.accelerators.first() {
        return Err(format!(
            "resources.accelerators: {:?} passthrough is not available on this host; remove it",
            a.kind
        ));
    }
    if let Some(c) = &spec.composition
        && let Some(e) = &c.error
    {
        return Err(format!("blueprint {}: {e}", c.blueprint));
    }
    if s.resources.memory.hugepages.is_some() {
        return Err(
            "resources.memory.hugepages: huge pages are not set up on this host; remove it".into(),
        );
    }
    if s.features.isolation.security_level == SecurityLevel::Confidential {
        return Err("features.isolation.securityLevel: confidential guests need SEV or TDX, which this host lacks; use hardened".into());
    }
    let host = host_memory().unwrap_or(u64::MAX);
    if spec.memory > host {
        return Err(format!(
            "resources.memory.size: {} is more than the host's {} of memory",
            hypernix_config::Size(spec.memory),
            hypernix_config::Size(host)
        ));
    }
    let mut disks = Vec::new();
    let boot = match &s.image {
        None => {
            // The guest's hostname is the unit's name, as far as hostnames allow.
            let hostname = crate::compose::hostname(name);
            guest()?.boot(&hostname).map_err(|e| e.to_string())?
        }
        Some(image) => {
            let path = Path::new(image);
            if !path.is_file() {
                return Err(format!(
                    "image: {image} does not exist; build it or fix the path"
                ));
            }
            disks.push(Disk {
                source: DiskSource::File {
                    path: path.to_path_buf(),
                    format: image_format(path)?,
                },
                read_only: false,
                serial: None,
            });
            Boot::Disk(0)
        }
    };
    for d in &s.storage {
        let (source, warning) = storage.disk(layout, name, d)?;
        warnings.extend(warning);
        disks.push(Disk {
            source,
            read_only: false,
            serial: None,
        });
    }
    if let Some(c) = &spec.composition {
        for v in &c.disks {
            if s.storage.iter().any(|d| d.name == v.name) {
                return Err(format!(
                    "blueprint {}: volume {} has the name of one of the unit's own disks; \
                     rename one of them",
                    c.blueprint, v.name
                ));
            }
            let request = StorageRequest {
                name: v.name.clone(),
                capability: "composed".into(),
                size: hypernix_config::Size(v.size),
                tier: None,
                performance: Default::default(),
            };
            let (source, warning) = storage.disk(layout, name, &request)?;
            warnings.extend(warning);
            disks.push(Disk {
                source,
                read_only: false,
                serial: Some(hypernix_compose::render::volume_serial(&v.name)),
            });
        }
    }
    let mut nics = Vec::new();
    for n in &s.network {
        if n.capability != "nat" {
            return Err(format!(
                "network {}: capability {:?} is not available; this host offers \"nat\" (user-mode networking)",
                n.name, n.capability
            ));
        }
        nics.push(Nic::default());
    }
    let mut cdroms = Vec::new();
    if let Some(c) = &spec.composition {
        let dir = layout.unit_dir(name);
        cdroms.extend(crate::compose::write_seed(&dir, c)?);
        let forwards = crate::compose::forwards(&dir, c)?;
        if !forwards.is_empty() {
            // Ports go on the first NIC; a unit without one gets a user-mode NIC for them.
            if nics.is_empty() {
                nics.push(Nic::default());
            }
            nics[0].forwards.extend(forwards);
        }
    }
    let mut extra_args = Vec::new();
    if !s.resources.compute.features.is_empty() {
        let flags: Vec<String> = s
            .resources
            .compute
            .features
            .iter()
            .map(|f| format!("+{f}"))
            .collect();
        extra_args.extend(["-cpu".to_string(), format!("max,{}", flags.join(","))]);
    }
    let spec = VmSpec {
        name: name.to_string(),
        uuid: s.uuid.clone(),
        vcpus: spec.vcpus,
        max_vcpus: spec.max_vcpus,
        memory_bytes: spec.memory,
        balloon: true,
        boot,
        disks,
        cdroms,
        nics,
        accel,
        hardened: s.features.isolation.security_level == SecurityLevel::Hardened,
        extra_args,
    };
    Ok((spec, warnings))
}

fn image_format(path: &Path) -> Result<DiskFormat, String> {
    let mut magic = [0u8; 4];
    use std::io::Read;
    std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| format!("image {}: {e}", path.display()))?;
    Ok(if &magic == b"QFI\xfb" {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    })
}

/// The host's memory in bytes, from /proc/meminfo.
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
