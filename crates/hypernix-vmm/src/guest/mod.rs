//! The test guest: the host's Debian kernel and a busybox initramfs built here.
//!
//! [`ensure_test_guest`] keeps it in a cache directory as three files: `vmlinuz` (a
//! copy of the newest `/boot/vmlinuz-*`), `initrd.cpio` (an uncompressed `newc` cpio)
//! and `manifest.json`, which records every input (paths, sizes and modification times
//! of the kernel, busybox and modules; the scripts' text). The guest is rebuilt only
//! when the recorded inputs differ from the current ones. The work is blocking file
//! I/O: call it from `spawn_blocking` in async code.
//!
//! What the guest does: `/init` (PID 1) mounts `/proc`, `/sys` and `/dev`, installs the
//! busybox applets, takes its hostname from `hypernix.hostname=` on the kernel command
//! line ([`TestGuest::boot`] puts it there), loads [`GUEST_MODULES`] and their
//! dependencies in `modules.dep` order, starts `acpid`, configures `eth0` by DHCP
//! (QEMU's user network hands out 10.0.2.15), serves a page with `httpd` on port 80
//! (`hypernix test guest <hostname>`), prints `HYPERNIX-READY <hostname>`
//! ([`READY_MARKER`]) on the serial console, then runs a shell there.
//!
//! The ACPI power button (QMP `system_powerdown`): the `button` module turns the press
//! into a key event on an `evdev` device; busybox `acpid` maps it to `PWRF/00000080`
//! and runs `/etc/acpi/PWRF/00000080`, which syncs and powers off, and QEMU exits.

mod cpio;
mod initramfs;
mod kernel;

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};
use thiserror::Error;

use crate::spec::Boot;

pub use initramfs::{GUEST_MODULES, READY_MARKER};
pub use kernel::{Kernel, newest_kernel, resolve_modules};

/// The kernel command line every test guest boots with.
pub const BASE_CMDLINE: &str = "console=ttyS0 panic=-1 loglevel=4";

/// Bumped when the layout of the cache changes.
const FORMAT: u32 = 1;

/// A failure building the test guest.
#[derive(Debug, Error)]
pub enum GuestError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// There is no kernel to boot.
    #[error("no vmlinuz-* in {boot_dir}; install a kernel (apt-get install linux-image-amd64)")]
    NoKernel {
        /// Where we looked.
        boot_dir: PathBuf,
    },
    /// A module the guest needs is not in `modules.dep`.
    #[error("kernel module {module} is not listed in {dep_file}; the test guest needs it")]
    ModuleMissing {
        /// The module.
        module: String,
        /// The dependency file read.
        dep_file: PathBuf,
    },
    /// A module the guest needs is compressed, which busybox `insmod` cannot load.
    #[error("kernel module {path} is compressed; the test guest needs uncompressed .ko files")]
    CompressedModule {
        /// The module file.
        path: PathBuf,
    },
    /// busybox cannot run alone in the initramfs.
    #[error("{path} {problem}")]
    Busybox {
        /// The binary.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A hostname that cannot go on the kernel command line.
    #[error("guest hostname {0:?} is not usable: use 1-63 letters, digits and '-'")]
    Hostname(String),
}

/// Where the test guest's parts come from on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSources {
    /// Where `vmlinuz-*` kernels are.
    pub boot_dir: PathBuf,
    /// The parent of the per-version module directories.
    pub modules_root: PathBuf,
    /// A static busybox.
    pub busybox: PathBuf,
}

impl Default for GuestSources {
    fn default() -> Self {
        GuestSources {
            boot_dir: "/boot".into(),
            modules_root: "/lib/modules".into(),
            busybox: "/usr/bin/busybox".into(),
        }
    }
}

/// A built test guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestGuest {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line, without a hostname.
    pub cmdline: String,
}

impl TestGuest {
    /// How to boot this guest with `hostname`, which it prints after [`READY_MARKER`].
    pub fn boot(&self, hostname: &str) -> Result<Boot, GuestError> {
        let valid = !hostname.is_empty()
            && hostname.len() <= 63
            && hostname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(GuestError::Hostname(hostname.to_string()));
        }
        Ok(Boot::Kernel {
            kernel: self.kernel.clone(),
            initrd: Some(self.initrd.clone()),
            cmdline: format!("{} hypernix.hostname={hostname}", self.cmdline),
        })
    }
}

/// `$XDG_CACHE_HOME/hypernix/images/test-guest`, else `~/.cache/…`; `None` without either.
pub fn default_cache_dir() -> Option<PathBuf> {
    let non_empty = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache =
        non_empty("XDG_CACHE_HOME").or_else(|| non_empty("HOME").map(|h| h.join(".cache")))?;
    Some(cache.join("hypernix/images/test-guest"))
}

/// Builds the test guest from the host's defaults into `cache_dir`, or reuses it.
pub fn ensure_test_guest(cache_dir: &Path) -> Result<TestGuest, GuestError> {
    ensure_test_guest_from(cache_dir, &GuestSources::default())
}

/// Builds the test guest from `sources` into `cache_dir`, or reuses it.
pub fn ensure_test_guest_from(
    cache_dir: &Path,
    sources: &GuestSources,
) -> Result<TestGuest, GuestError> {
    let kernel = newest_kernel(&sources.boot_dir)?;
    let modules = resolve_modules(&sources.modules_root.join(&kernel.version), GUEST_MODULES)?;
    let manifest = manifest(&kernel.image, &sources.busybox, &modules)?;
    let guest = TestGuest {
        kernel: cache_dir.join("vmlinuz"),
        initrd: cache_dir.join("initrd.cpio"),
        cmdline: BASE_CMDLINE.to_string(),
    };
    let manifest_path = cache_dir.join("manifest.json");
    let recorded = std::fs::read(&manifest_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    if recorded.as_ref() == Some(&manifest) && guest.kernel.is_file() && guest.initrd.is_file() {
        return Ok(guest);
    }
    std::fs::create_dir_all(cache_dir).map_err(|source| GuestError::Io {
        path: cache_dir.to_path_buf(),
        source,
    })?;
    let kernel_bytes = std::fs::read(&kernel.image).map_err(|source| GuestError::Io {
        path: kernel.image.clone(),
        source,
    })?;
    write_atomically(&guest.kernel, &kernel_bytes)?;
    write_atomically(
        &guest.initrd,
        &initramfs::build(&sources.busybox, &modules)?,
    )?;
    write_atomically(&manifest_path, manifest.to_string().as_bytes())?;
    Ok(guest)
}

/// What the guest is built from; equal manifests mean equal guests.
fn manifest(kernel: &Path, busybox: &Path, modules: &[PathBuf]) -> Result<Value, GuestError> {
    let scripts: Vec<Value> = initramfs::SCRIPTS
        .iter()
        .map(|(path, perm, text)| json!({"path": path, "mode": perm, "text": text}))
        .collect();
    Ok(json!({
        "format": FORMAT,
        "cmdline": BASE_CMDLINE,
        "kernel": stamp(kernel)?,
        "busybox": stamp(busybox)?,
        "modules": modules.iter().map(|m| stamp(m)).collect::<Result<Vec<_>, _>>()?,
        "scripts": scripts,
    }))
}

/// A file's identity for the manifest: path, size and modification time.
fn stamp(path: &Path) -> Result<Value, GuestError> {
    let meta = std::fs::metadata(path).map_err(|source| GuestError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    Ok(json!({
        "path": path.to_string_lossy(),
        "size": meta.len(),
        "mtime_ns": modified.as_nanos().to_string(),
    }))
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), GuestError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let io = |source| GuestError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake host: one kernel, a modules tree with every guest module, a static "busybox".
    fn fake_host(root: &Path) -> GuestSources {
        let boot = root.join("boot");
        let modules = root.join("modules/6.1.0-test");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::create_dir_all(modules.join("kernel")).unwrap();
        std::fs::write(boot.join("vmlinuz-6.1.0-test"), b"kernel").unwrap();
        let mut dep = String::new();
        for name in GUEST_MODULES {
            dep.push_str(&format!("kernel/{name}.ko:\n"));
            std::fs::write(modules.join(format!("kernel/{name}.ko")), name.as_bytes()).unwrap();
        }
        std::fs::write(modules.join("modules.dep"), dep).unwrap();
        let busybox = root.join("busybox");
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        std::fs::write(&busybox, elf).unwrap();
        GuestSources {
            boot_dir: boot,
            modules_root: root.join("modules"),
            busybox,
        }
    }

    #[test]
    fn builds_once_then_reuses_then_rebuilds_on_change() {
        let host = tempfile::tempdir().unwrap();
        let sources = fake_host(host.path());
        let cache = host.path().join("cache");
        let guest = ensure_test_guest_from(&cache, &sources).unwrap();
        assert_eq!(std::fs::read(&guest.kernel).unwrap(), b"kernel");
        let built = std::fs::metadata(&guest.initrd)
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        ensure_test_guest_from(&cache, &sources).unwrap();
        assert_eq!(
            std::fs::metadata(&guest.initrd)
                .unwrap()
                .modified()
                .unwrap(),
            built
        );
        std::fs::write(sources.boot_dir.join("vmlinuz-6.1.0-test"), b"new kernel").unwrap();
        ensure_test_guest_from(&cache, &sources).unwrap();
        assert_eq!(std::fs::read(&guest.kernel).unwrap(), b"new kernel");
        std::fs::remove_file(&guest.initrd).unwrap();
        ensure_test_guest_from(&cache, &sources).unwrap();
        assert!(guest.initrd.is_file());
    }

    #[test]
    fn boot_carries_the_hostname() {
        let guest = TestGuest {
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline: BASE_CMDLINE.into(),
        };
        let Boot::Kernel {
            cmdline, initrd, ..
        } = guest.boot("vm-1").unwrap()
        else {
            panic!("not a kernel boot");
        };
        assert!(cmdline.ends_with(" hypernix.hostname=vm-1"));
        assert_eq!(initrd, Some(PathBuf::from("/i")));
        for bad in ["", "a b", "x;reboot", &"a".repeat(64)] {
            assert!(
                matches!(guest.boot(bad), Err(GuestError::Hostname(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_parts_are_named() {
        let host = tempfile::tempdir().unwrap();
        let mut sources = fake_host(host.path());
        sources.busybox = host.path().join("no-busybox");
        let err = ensure_test_guest_from(&host.path().join("c"), &sources).unwrap_err();
        assert!(err.to_string().contains("no-busybox"), "{err}");
        sources.boot_dir = host.path().join("nowhere");
        let err = ensure_test_guest_from(&host.path().join("c"), &sources).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
