//! The test guest's initramfs: busybox, kernel modules and the scripts that make a
//! booted kernel into a guest the tests can drive (see the `guest` module docs).

use std::path::{Path, PathBuf};

use super::GuestError;
use super::cpio::CpioWriter;

/// The line prefix `/init` prints on the console once the guest is up.
pub const READY_MARKER: &str = "HYPERNIX-READY";

/// Modules the guest loads, with their dependencies resolved from `modules.dep`.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_balloon",
    "button",
    "evdev",
    // A CD-ROM on the q35's AHCI controller, such as a cloud-init seed: `mount -t
    // iso9660 /dev/sr0 /mnt` (Joliet names included).
    "ahci",
    "sr_mod",
    "isofs",
];

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
name=hypernix-guest
for word in $(cat /proc/cmdline); do
    case "$word" in hypernix.hostname=*) name="${word#hypernix.hostname=}" ;; esac
done
hostname "$name"
while read -r module; do
    insmod "/lib/modules/$module" || echo "hypernix: insmod $module failed"
done < /etc/modules
acpid -d -c /etc/acpi &
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    udhcpc -i eth0 -s /etc/udhcpc.script -n -q -t 10 -T 1 || echo "hypernix: no DHCP lease on eth0"
fi
echo "hypernix test guest $name" > /www/index.html
httpd -p 80 -h /www
echo "HYPERNIX-READY $name"
# A shell on the serial console, for `hypernix console`; init itself never exits.
while true; do setsid cttyhack sh; sleep 1; done
"#;

const POWER_BUTTON: &str = r#"#!/bin/sh
echo "hypernix: power button pressed, powering off"
sync
poweroff -f
"#;

const UDHCPC: &str = r#"#!/bin/sh
case "$1" in
    bound|renew)
        ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
        if [ -n "$router" ]; then ip route replace default via "${router%% *}" dev "$interface"; fi
        ;;
esac
"#;

/// Scripts written into the initramfs: path, permission bits, text.
pub const SCRIPTS: &[(&str, u32, &str)] = &[
    ("init", 0o755, INIT),
    ("etc/acpi/PWRF/00000080", 0o755, POWER_BUTTON),
    ("etc/udhcpc.script", 0o755, UDHCPC),
];

const DIRS: &[&str] = &[
    "bin",
    "dev",
    "etc",
    "etc/acpi",
    "etc/acpi/PWRF",
    "lib",
    "lib/modules",
    "proc",
    "sys",
    "tmp",
    "var",
    "var/log",
    "var/run",
    "www",
];

/// Builds the initramfs (uncompressed cpio) from busybox and module files.
pub fn build(busybox: &Path, modules: &[PathBuf]) -> Result<Vec<u8>, GuestError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| GuestError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let busybox_bytes = read(busybox)?;
    check_static(busybox, &busybox_bytes)?;
    let mut cpio = CpioWriter::new(Vec::with_capacity(busybox_bytes.len() + (4 << 20)));
    let io = |source| GuestError::Io {
        path: PathBuf::from("initramfs"),
        source,
    };
    for dir in DIRS {
        cpio.dir(dir, 0o755).map_err(io)?;
    }
    cpio.char_device("dev/console", 0o600, 5, 1).map_err(io)?;
    cpio.file("bin/busybox", 0o755, &busybox_bytes)
        .map_err(io)?;
    cpio.symlink("bin/sh", "busybox").map_err(io)?;
    let mut load_order = String::new();
    for module in modules {
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        cpio.file(&format!("lib/modules/{name}"), 0o644, &read(module)?)
            .map_err(io)?;
        load_order.push_str(name);
        load_order.push('\n');
    }
    cpio.file("etc/modules", 0o644, load_order.as_bytes())
        .map_err(io)?;
    for (path, perm, text) in SCRIPTS {
        cpio.file(path, *perm, text.as_bytes()).map_err(io)?;
    }
    cpio.finish().map_err(io)
}

/// Fails unless `bytes` is a 64-bit little-endian ELF without an interpreter, i.e.
/// a static binary that runs with no libraries in the initramfs.
fn check_static(path: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    let problem = |problem: &str| GuestError::Busybox {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    if bytes.get(..4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(problem("is not a 64-bit little-endian ELF executable"));
    }
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |at: usize| {
        let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
        usize::try_from(u64::from_le_bytes(b)).ok()
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return Err(problem("has a truncated ELF header"));
    };
    for index in 0..phnum {
        let at = phoff.saturating_add(index.saturating_mul(phentsize));
        let p_type = at
            .checked_add(4)
            .and_then(|end| bytes.get(at..end))
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match p_type {
            None => return Err(problem("has program headers past its end")),
            Some(3) => return Err(problem("is dynamically linked; install busybox-static")),
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(program_types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64 + 56 * program_types.len()];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        bytes[0x38..0x3a].copy_from_slice(&(program_types.len() as u16).to_le_bytes());
        for (i, t) in program_types.iter().enumerate() {
            bytes[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn static_check() {
        let p = Path::new("busybox");
        assert!(check_static(p, &elf(&[1, 1])).is_ok());
        let err = check_static(p, &elf(&[1, 3])).unwrap_err();
        assert!(err.to_string().contains("busybox-static"), "{err}");
        assert!(check_static(p, b"#!/bin/sh").is_err());
        let mut truncated = elf(&[1, 1]);
        truncated.truncate(100);
        assert!(check_static(p, &truncated).is_err());
        let mut huge = elf(&[1]);
        huge[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_static(p, &huge).is_err());
    }

    #[test]
    fn archive_holds_scripts_and_modules() {
        let dir = tempfile::tempdir().unwrap();
        let busybox = dir.path().join("busybox");
        std::fs::write(&busybox, elf(&[1])).unwrap();
        let module = dir.path().join("virtio.ko");
        std::fs::write(&module, b"module bytes").unwrap();
        let archive = build(&busybox, &[module]).unwrap();
        let text = String::from_utf8_lossy(&archive);
        for needle in [
            "lib/modules/virtio.ko",
            "module bytes",
            "HYPERNIX-READY",
            "poweroff -f",
            "dev/console",
        ] {
            assert!(text.contains(needle), "{needle}");
        }
        assert!(text.contains("etc/modules\0"));
        assert!(INIT.contains(READY_MARKER));
    }
}
