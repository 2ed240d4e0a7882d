//! The QEMU command line for a [`VmSpec`].
//!
//! The machine is always a q35 with no default devices (`-nodefaults`), no user
//! configuration files and no display; every device is named here. Block devices are
//! two `-blockdev` nodes (protocol, then format) under a `virtio-blk-pci`; QMP and the
//! serial console are unix-socket servers in the [`RunDir`].

use std::net::IpAddr;
use std::path::Path;

use crate::rundir::RunDir;
use crate::spec::{Accel, Boot, Disk, DiskSource, Nic, PortForward, Protocol, VmSpec};

/// The QEMU binary spawned, looked up on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// The sandbox options used for hardened VMs.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The chardev id of the serial console.
pub const CONSOLE_CHARDEV: &str = "console";

/// The QMP node name of disk `index`, as `query-blockstats` reports it.
pub fn disk_node(index: usize) -> String {
    format!("disk{index}")
}

/// The qdev id of disk `index`'s virtio device.
pub fn disk_device(index: usize) -> String {
    format!("virtio-disk{index}")
}

/// QEMU's arguments (without the binary) for `spec`, which should have passed
/// [`VmSpec::validate`]; paths are written as given, so pass absolute ones.
pub fn qemu_args(spec: &VmSpec, run: &RunDir) -> Vec<String> {
    let mut args = Args::default();
    args.push("-name", format!("guest={},debug-threads=on", spec.name));
    if let Some(uuid) = &spec.uuid {
        args.push("-uuid", uuid.clone());
    }
    args.flag("-no-user-config");
    args.flag("-nodefaults");
    args.push("-display", "none");
    args.push("-machine", "q35");
    args.push("-accel", spec.accel.as_str());
    if spec.accel == Accel::Kvm {
        args.push("-cpu", "host");
    }
    args.push("-smp", format!("{},maxcpus={}", spec.vcpus, spec.max_vcpus));
    args.push("-m", format!("{}M", spec.memory_bytes >> 20));
    args.push("-msg", "timestamp=on");
    args.push("-pidfile", path(&run.pid_file()));
    args.push(
        "-chardev",
        format!(
            "socket,id=qmp,path={},server=on,wait=off",
            opt(&path(&run.qmp_socket()))
        ),
    );
    args.push("-mon", "chardev=qmp,mode=control");
    args.push(
        "-chardev",
        format!(
            "socket,id={CONSOLE_CHARDEV},path={},server=on,wait=off,logfile={}",
            opt(&path(&run.console_socket())),
            opt(&path(&run.console_log())),
        ),
    );
    args.push("-serial", format!("chardev:{CONSOLE_CHARDEV}"));
    if spec.hardened {
        args.push("-sandbox", SANDBOX);
    }
    if let Boot::Kernel {
        kernel,
        initrd,
        cmdline,
    } = &spec.boot
    {
        args.push("-kernel", path(kernel));
        if let Some(initrd) = initrd {
            args.push("-initrd", path(initrd));
        }
        args.push("-append", cmdline.clone());
    }
    if spec.balloon {
        args.push("-device", "virtio-balloon-pci,id=balloon0");
    }
    for (index, disk) in spec.disks.iter().enumerate() {
        let boots = spec.boot == Boot::Disk(index);
        disk_args(&mut args, index, disk, boots);
    }
    for (index, cdrom) in spec.cdroms.iter().enumerate() {
        cdrom_args(&mut args, index, cdrom);
    }
    for (index, nic) in spec.nics.iter().enumerate() {
        nic_args(&mut args, index, nic);
    }
    args.0.extend(spec.extra_args.iter().cloned());
    args.0
}

/// Seconds an NBD disk's requests wait for its server to come back before failing.
const NBD_RECONNECT_SECS: u32 = 30;

fn disk_args(args: &mut Args, index: usize, disk: &Disk, boots: bool) {
    let node = disk_node(index);
    let ro = if disk.read_only { "on" } else { "off" };
    let (protocol, format) = match &disk.source {
        DiskSource::File { path: file, format } => (
            format!(
                "driver=file,node-name={node}-file,filename={},read-only={ro}",
                opt(&path(file))
            ),
            format.driver(),
        ),
        // While the server restarts, requests wait for the reconnection (up to
        // NBD_RECONNECT_SECS) instead of failing in the guest.
        DiskSource::Nbd { socket, export } => (
            format!(
                "driver=nbd,node-name={node}-file,server.type=unix,server.path={},export={},\
                 reconnect-delay={NBD_RECONNECT_SECS},read-only={ro}",
                opt(&path(socket)),
                opt(export),
            ),
            "raw",
        ),
    };
    args.push("-blockdev", protocol);
    args.push(
        "-blockdev",
        format!("driver={format},node-name={node},file={node}-file,read-only={ro}"),
    );
    let boot_index = if boots { ",bootindex=1" } else { "" };
    let serial = disk
        .serial
        .as_ref()
        .map(|s| format!(",serial={}", opt(s)))
        .unwrap_or_default();
    args.push(
        "-device",
        format!(
            "virtio-blk-pci,id={},drive={node}{boot_index}{serial}",
            disk_device(index)
        ),
    );
}

/// A read-only CD-ROM on the q35's built-in AHCI controller.
fn cdrom_args(args: &mut Args, index: usize, image: &Path) {
    args.push(
        "-blockdev",
        format!(
            "driver=file,node-name=cd{index}-file,filename={},read-only=on",
            opt(&path(image))
        ),
    );
    args.push(
        "-blockdev",
        format!("driver=raw,node-name=cd{index},file=cd{index}-file,read-only=on"),
    );
    args.push("-device", format!("ide-cd,id=cdrom{index},drive=cd{index}"));
}

fn nic_args(args: &mut Args, index: usize, nic: &Nic) {
    let mut netdev = format!("user,id=net{index}");
    for forward in &nic.forwards {
        netdev.push_str(",hostfwd=");
        netdev.push_str(&hostfwd(forward));
    }
    args.push("-netdev", netdev);
    let mut device = format!("virtio-net-pci,id=nic{index},netdev=net{index}");
    if let Some(mac) = &nic.mac {
        device.push_str(",mac=");
        device.push_str(&opt(mac));
    }
    args.push("-device", device);
}

fn hostfwd(forward: &PortForward) -> String {
    let protocol = match forward.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let addr = match forward.host_addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!(
        "{protocol}:{addr}:{}-:{}",
        forward.host_port, forward.guest_port
    )
}

/// A path as QEMU gets it (validated specs hold UTF-8 paths only).
fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A value inside a `key=value,…` option: QEMU reads `,,` as a literal comma.
fn opt(value: &str) -> String {
    value.replace(',', ",,")
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn flag(&mut self, flag: &str) {
        self.0.push(flag.to_string());
    }

    fn push(&mut self, flag: &str, value: impl Into<String>) {
        self.0.push(flag.to_string());
        self.0.push(value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DiskFormat;
    use crate::spec::tests::sample;

    fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn machine_basics() {
        let args = qemu_args(&sample(), &RunDir::new("/run/vm"));
        for flag in ["-no-user-config", "-nodefaults"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        assert_eq!(value_of(&args, "-machine"), ["q35"]);
        assert_eq!(value_of(&args, "-accel"), ["tcg"]);
        assert_eq!(value_of(&args, "-cpu"), Vec::<&str>::new());
        assert_eq!(value_of(&args, "-smp"), ["1,maxcpus=2"]);
        assert_eq!(value_of(&args, "-m"), ["256M"]);
        assert_eq!(value_of(&args, "-display"), ["none"]);
        assert_eq!(value_of(&args, "-name"), ["guest=web-1,debug-threads=on"]);
        assert_eq!(value_of(&args, "-pidfile"), ["/run/vm/qemu.pid"]);
        assert_eq!(value_of(&args, "-kernel"), ["/k"]);
        assert_eq!(value_of(&args, "-initrd"), ["/i"]);
        assert_eq!(value_of(&args, "-append"), ["console=ttyS0"]);
        assert_eq!(
            value_of(&args, "-device"),
            ["virtio-balloon-pci,id=balloon0"]
        );
        assert!(value_of(&args, "-sandbox").is_empty());
    }

    #[test]
    fn sockets_and_console_log() {
        let args = qemu_args(&sample(), &RunDir::new("/run/vm"));
        assert_eq!(
            value_of(&args, "-chardev"),
            [
                "socket,id=qmp,path=/run/vm/qmp.sock,server=on,wait=off",
                "socket,id=console,path=/run/vm/console.sock,server=on,wait=off,\
                 logfile=/run/vm/console.log",
            ]
        );
        assert_eq!(value_of(&args, "-mon"), ["chardev=qmp,mode=control"]);
        assert_eq!(value_of(&args, "-serial"), ["chardev:console"]);
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let args = qemu_args(&sample(), &RunDir::new("/run/a,b"));
        assert!(value_of(&args, "-chardev")[0].contains("path=/run/a,,b/qmp.sock,"));
    }

    #[test]
    fn kvm_hardened_uuid() {
        let spec = crate::VmSpec {
            accel: Accel::Kvm,
            hardened: true,
            uuid: Some("01234567-89ab-cdef-0123-456789abcdef".into()),
            ..sample()
        };
        let args = qemu_args(&spec, &RunDir::new("/r"));
        assert_eq!(value_of(&args, "-accel"), ["kvm"]);
        assert_eq!(value_of(&args, "-cpu"), ["host"]);
        assert_eq!(value_of(&args, "-sandbox"), [SANDBOX]);
        assert_eq!(
            value_of(&args, "-uuid"),
            ["01234567-89ab-cdef-0123-456789abcdef"]
        );
    }

    #[test]
    fn cdroms_are_read_only_ahci() {
        let spec = crate::VmSpec {
            cdroms: vec!["/run/u/seed.iso".into()],
            ..sample()
        };
        let args = qemu_args(&spec, &RunDir::new("/r"));
        assert_eq!(
            value_of(&args, "-blockdev"),
            [
                "driver=file,node-name=cd0-file,filename=/run/u/seed.iso,read-only=on",
                "driver=raw,node-name=cd0,file=cd0-file,read-only=on",
            ]
        );
        assert!(value_of(&args, "-device").contains(&"ide-cd,id=cdrom0,drive=cd0"));
    }

    #[test]
    fn disks_file_and_nbd() {
        let spec = crate::VmSpec {
            balloon: false,
            boot: Boot::Disk(1),
            disks: vec![
                Disk {
                    source: DiskSource::File {
                        path: "/img/a.qcow2".into(),
                        format: DiskFormat::Qcow2,
                    },
                    read_only: false,
                    serial: None,
                },
                Disk {
                    source: DiskSource::Nbd {
                        socket: "/run/nbd.sock".into(),
                        export: "vol,1".into(),
                    },
                    read_only: true,
                    serial: Some("hnx-data".into()),
                },
            ],
            ..sample()
        };
        let args = qemu_args(&spec, &RunDir::new("/r"));
        assert_eq!(
            value_of(&args, "-blockdev"),
            [
                "driver=file,node-name=disk0-file,filename=/img/a.qcow2,read-only=off",
                "driver=qcow2,node-name=disk0,file=disk0-file,read-only=off",
                "driver=nbd,node-name=disk1-file,server.type=unix,server.path=/run/nbd.sock,\
                 export=vol,,1,reconnect-delay=30,read-only=on",
                "driver=raw,node-name=disk1,file=disk1-file,read-only=on",
            ]
        );
        assert_eq!(
            value_of(&args, "-device"),
            [
                "virtio-blk-pci,id=virtio-disk0,drive=disk0",
                "virtio-blk-pci,id=virtio-disk1,drive=disk1,bootindex=1,serial=hnx-data",
            ]
        );
        assert!(value_of(&args, "-kernel").is_empty());
    }

    #[test]
    fn nics_with_forwards() {
        let mut udp = PortForward::tcp(5353, 53);
        udp.protocol = Protocol::Udp;
        udp.host_addr = "::1".parse().unwrap();
        let spec = crate::VmSpec {
            balloon: false,
            nics: vec![
                Nic {
                    mac: Some("52:54:00:00:00:01".into()),
                    forwards: vec![PortForward::tcp(8080, 80), udp],
                },
                Nic::default(),
            ],
            ..sample()
        };
        let args = qemu_args(&spec, &RunDir::new("/r"));
        assert_eq!(
            value_of(&args, "-netdev"),
            [
                "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:[::1]:5353-:53",
                "user,id=net1",
            ]
        );
        assert_eq!(
            value_of(&args, "-device"),
            [
                "virtio-net-pci,id=nic0,netdev=net0,mac=52:54:00:00:00:01",
                "virtio-net-pci,id=nic1,netdev=net1",
            ]
        );
    }

    #[test]
    fn extra_args_come_last() {
        let spec = crate::VmSpec {
            extra_args: vec!["-bogus".into(), "x".into()],
            ..sample()
        };
        let args = qemu_args(&spec, &RunDir::new("/r"));
        assert_eq!(&args[args.len() - 2..], ["-bogus", "x"]);
    }
}
