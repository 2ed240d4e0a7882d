//! What one virtual machine is: the [`VmSpec`] this crate turns into a QEMU process.
//!
//! The daemon maps a resolved unit onto a `VmSpec`; this crate depends on no other
//! hypernix crate. [`VmSpec::validate`] checks everything QEMU would otherwise reject
//! late or misread (names that break its option syntax, sizes, paths that are not UTF-8).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The smallest memory size a VM may have.
pub const MIN_MEMORY_BYTES: u64 = 16 << 20;

/// The most vCPUs a q35 machine accepts here.
pub const MAX_VCPUS: u32 = 255;

/// One virtual machine, as QEMU should run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The VM's name: letters, digits, `.`, `_` and `-`; it names the QEMU process.
    pub name: String,
    /// The SMBIOS UUID the guest sees, in the 8-4-4-4-12 hex form.
    pub uuid: Option<String>,
    /// vCPUs present at boot.
    pub vcpus: u32,
    /// vCPUs that can be hot-plugged up to.
    pub max_vcpus: u32,
    /// Guest memory in bytes, a whole number of MiB.
    pub memory_bytes: u64,
    /// Whether the guest gets a virtio balloon device.
    pub balloon: bool,
    /// What the guest boots.
    pub boot: Boot,
    /// Block devices, attached in order as virtio disks.
    pub disks: Vec<Disk>,
    /// ISO 9660 images attached read-only as CD-ROMs (AHCI), in order.
    pub cdroms: Vec<PathBuf>,
    /// Network cards, attached in order as virtio NICs.
    pub nics: Vec<Nic>,
    /// The accelerator QEMU runs the guest with.
    pub accel: Accel,
    /// Whether QEMU runs under its seccomp sandbox (`-sandbox on,…`); a QEMU built
    /// without seccomp rejects the option at spawn.
    pub hardened: bool,
    /// Raw QEMU arguments appended last, unchecked.
    pub extra_args: Vec<String>,
}

/// What a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A Linux kernel loaded directly by QEMU.
    Kernel {
        /// The kernel image (bzImage).
        kernel: PathBuf,
        /// The initramfs, if any.
        initrd: Option<PathBuf>,
        /// The kernel command line.
        cmdline: String,
    },
    /// The firmware boots the disk at this index of [`VmSpec::disks`].
    Disk(usize),
}

/// One virtio block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Where the blocks come from.
    pub source: DiskSource,
    /// Whether the guest may only read.
    pub read_only: bool,
    /// The serial number the guest sees (`/dev/disk/by-id/virtio-SERIAL`), at most 20 bytes.
    pub serial: Option<String>,
}

/// Where a disk's blocks come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// An image file on the host.
    File {
        /// The image file.
        path: PathBuf,
        /// Its format.
        format: DiskFormat,
    },
    /// An NBD export on a unix socket.
    Nbd {
        /// The NBD server's socket.
        socket: PathBuf,
        /// The export name.
        export: String,
    },
}

/// An image file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// Plain bytes.
    Raw,
    /// QEMU copy-on-write v2.
    Qcow2,
}

impl DiskFormat {
    /// The QEMU block driver name.
    pub fn driver(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// One virtio network card on QEMU's user-mode network (guest address 10.0.2.15).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Nic {
    /// The MAC address (`52:54:00:…`); QEMU picks one when absent.
    pub mac: Option<String>,
    /// Host ports forwarded into the guest.
    pub forwards: Vec<PortForward>,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The host address QEMU listens on.
    pub host_addr: IpAddr,
    /// The host port QEMU listens on.
    pub host_port: u16,
    /// The guest port connections go to.
    pub guest_port: u16,
}

impl PortForward {
    /// A TCP forward from `127.0.0.1:host_port` to the guest's `guest_port`.
    pub fn tcp(host_port: u16, guest_port: u16) -> Self {
        PortForward {
            protocol: Protocol::Tcp,
            host_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port,
            guest_port,
        }
    }
}

/// A transport protocol for port forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's portable binary translator: slow, works everywhere.
    Tcg,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Something in a [`VmSpec`] QEMU cannot run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    /// The name is empty, too long, or has characters QEMU options cannot carry.
    #[error(
        "VM name {0:?} is not usable: use 1-64 letters, digits, '.', '_' or '-', \
         starting with a letter or digit"
    )]
    Name(String),
    /// The UUID is not in the 8-4-4-4-12 hex form.
    #[error("VM {name}: uuid {uuid:?} is not of the form 01234567-89ab-cdef-0123-456789abcdef")]
    Uuid {
        /// The VM.
        name: String,
        /// The value given.
        uuid: String,
    },
    /// The vCPU counts are out of range or inverted.
    #[error(
        "VM {name}: {vcpus} vCPUs with at most {max_vcpus}: need 1 <= vcpus <= max_vcpus <= {MAX_VCPUS}"
    )]
    Vcpus {
        /// The VM.
        name: String,
        /// vCPUs at boot.
        vcpus: u32,
        /// The hot-plug limit.
        max_vcpus: u32,
    },
    /// The memory size is too small or not whole MiB.
    #[error(
        "VM {name}: memory of {bytes} bytes must be a whole number of MiB and at least {} MiB",
        MIN_MEMORY_BYTES >> 20
    )]
    Memory {
        /// The VM.
        name: String,
        /// The size given.
        bytes: u64,
    },
    /// A boot-from-disk index points past the disk list.
    #[error("VM {name}: boots disk {index} but has only {count} disks")]
    BootDisk {
        /// The VM.
        name: String,
        /// The index given.
        index: usize,
        /// How many disks there are.
        count: usize,
    },
    /// A path cannot be passed to QEMU.
    #[error(
        "VM {name}: path {path:?} must be absolute, UTF-8 and free of control characters; \
         rename or move it"
    )]
    Path {
        /// The VM.
        name: String,
        /// The path.
        path: PathBuf,
    },
    /// A free-form value (kernel command line, export name, MAC) has a character
    /// that cannot go into a QEMU option.
    #[error("VM {name}: {what} {value:?} holds a control character; remove it")]
    Value {
        /// The VM.
        name: String,
        /// What the value is.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Two forwards claim one host port.
    #[error("VM {name}: host port {port} is forwarded twice; give each forward its own port")]
    DuplicateForward {
        /// The VM.
        name: String,
        /// The port.
        port: u16,
    },
}

impl VmSpec {
    /// Checks the spec; QEMU is only started for specs that pass.
    pub fn validate(&self) -> Result<(), SpecError> {
        let name = || self.name.clone();
        if !valid_name(&self.name) {
            return Err(SpecError::Name(self.name.clone()));
        }
        if let Some(uuid) = &self.uuid
            && !valid_uuid(uuid)
        {
            return Err(SpecError::Uuid {
                name: name(),
                uuid: uuid.clone(),
            });
        }
        if self.vcpus == 0 || self.vcpus > self.max_vcpus || self.max_vcpus > MAX_VCPUS {
            return Err(SpecError::Vcpus {
                name: name(),
                vcpus: self.vcpus,
                max_vcpus: self.max_vcpus,
            });
        }
        if self.memory_bytes < MIN_MEMORY_BYTES || !self.memory_bytes.is_multiple_of(1 << 20) {
            return Err(SpecError::Memory {
                name: name(),
                bytes: self.memory_bytes,
            });
        }
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                self.check_path(kernel)?;
                if let Some(initrd) = initrd {
                    self.check_path(initrd)?;
                }
                self.check_value("kernel command line", cmdline)?;
            }
            Boot::Disk(index) if *index >= self.disks.len() => {
                return Err(SpecError::BootDisk {
                    name: name(),
                    index: *index,
                    count: self.disks.len(),
                });
            }
            Boot::Disk(_) => {}
        }
        for disk in &self.disks {
            match &disk.source {
                DiskSource::File { path, .. } => self.check_path(path)?,
                DiskSource::Nbd { socket, export } => {
                    self.check_path(socket)?;
                    self.check_value("NBD export name", export)?;
                }
            }
        }
        for cdrom in &self.cdroms {
            self.check_path(cdrom)?;
        }
        let mut ports = Vec::new();
        for nic in &self.nics {
            if let Some(mac) = &nic.mac {
                self.check_value("MAC address", mac)?;
            }
            for forward in &nic.forwards {
                let key = (forward.protocol, forward.host_port);
                if ports.contains(&key) {
                    return Err(SpecError::DuplicateForward {
                        name: name(),
                        port: forward.host_port,
                    });
                }
                ports.push(key);
            }
        }
        Ok(())
    }

    fn check_path(&self, path: &Path) -> Result<(), SpecError> {
        match path.to_str() {
            Some(text) if path.is_absolute() && !text.chars().any(char::is_control) => Ok(()),
            _ => Err(SpecError::Path {
                name: self.name.clone(),
                path: path.to_path_buf(),
            }),
        }
    }

    fn check_value(&self, what: &'static str, value: &str) -> Result<(), SpecError> {
        if value.chars().any(char::is_control) {
            return Err(SpecError::Value {
                name: self.name.clone(),
                what,
                value: value.to_string(),
            });
        }
        Ok(())
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn valid_uuid(uuid: &str) -> bool {
    let groups: Vec<&str> = uuid.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> VmSpec {
        VmSpec {
            name: "web-1".into(),
            uuid: None,
            vcpus: 1,
            max_vcpus: 2,
            memory_bytes: 256 << 20,
            balloon: true,
            boot: Boot::Kernel {
                kernel: "/k".into(),
                initrd: Some("/i".into()),
                cmdline: "console=ttyS0".into(),
            },
            disks: vec![],
            cdroms: vec![],
            nics: vec![],
            accel: Accel::Tcg,
            hardened: false,
            extra_args: vec![],
        }
    }

    #[test]
    fn sample_is_valid() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn names_that_break_options_are_rejected() {
        for bad in ["", "a,b", "-x", "a b", "ä", &"x".repeat(65)] {
            let spec = VmSpec {
                name: bad.into(),
                ..sample()
            };
            assert!(
                matches!(spec.validate(), Err(SpecError::Name(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn uuid_form_is_checked() {
        let good = VmSpec {
            uuid: Some("01234567-89ab-cdef-0123-456789ABCDEF".into()),
            ..sample()
        };
        assert_eq!(good.validate(), Ok(()));
        let bad = VmSpec {
            uuid: Some("0123-not-a-uuid".into()),
            ..sample()
        };
        assert!(matches!(bad.validate(), Err(SpecError::Uuid { .. })));
    }

    #[test]
    fn vcpus_and_memory_are_checked() {
        let spec = VmSpec {
            vcpus: 3,
            max_vcpus: 2,
            ..sample()
        };
        assert!(matches!(spec.validate(), Err(SpecError::Vcpus { .. })));
        let spec = VmSpec {
            vcpus: 0,
            ..sample()
        };
        assert!(matches!(spec.validate(), Err(SpecError::Vcpus { .. })));
        let spec = VmSpec {
            memory_bytes: (256 << 20) + 1,
            ..sample()
        };
        let err = spec.validate().unwrap_err();
        assert!(err.to_string().contains("whole number of MiB"), "{err}");
    }

    #[test]
    fn boot_disk_must_exist() {
        let spec = VmSpec {
            boot: Boot::Disk(0),
            ..sample()
        };
        assert!(matches!(
            spec.validate(),
            Err(SpecError::BootDisk {
                index: 0,
                count: 0,
                ..
            })
        ));
    }

    #[test]
    fn paths_must_be_absolute() {
        let spec = VmSpec {
            boot: Boot::Kernel {
                kernel: "vmlinuz".into(),
                initrd: None,
                cmdline: String::new(),
            },
            ..sample()
        };
        assert!(matches!(spec.validate(), Err(SpecError::Path { .. })));
    }

    #[test]
    fn control_characters_are_rejected() {
        let spec = VmSpec {
            boot: Boot::Kernel {
                kernel: "/k".into(),
                initrd: None,
                cmdline: "a\nb".into(),
            },
            ..sample()
        };
        assert!(matches!(spec.validate(), Err(SpecError::Value { .. })));
    }

    #[test]
    fn duplicate_forwards_are_rejected() {
        let nic = Nic {
            mac: None,
            forwards: vec![PortForward::tcp(8080, 80)],
        };
        let spec = VmSpec {
            nics: vec![nic.clone(), nic],
            ..sample()
        };
        assert!(matches!(
            spec.validate(),
            Err(SpecError::DuplicateForward { port: 8080, .. })
        ));
    }
}
