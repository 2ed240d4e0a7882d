//! The host's kernel and its modules: the newest `/boot/vmlinuz-*`, and the `.ko` files
//! a list of modules needs, in load order, read from `modules.dep`.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::GuestError;

/// A kernel image and its version (the part after `vmlinuz-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// The image.
    pub image: PathBuf,
    /// Its version, also the name of its modules directory.
    pub version: String,
}

/// The kernel with the highest version in `boot_dir`.
pub fn newest_kernel(boot_dir: &Path) -> Result<Kernel, GuestError> {
    let entries = std::fs::read_dir(boot_dir).map_err(|source| GuestError::Io {
        path: boot_dir.to_path_buf(),
        source,
    })?;
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            Some(Kernel {
                image: entry.path(),
                version,
            })
        })
        .max_by(|a, b| compare_versions(&a.version, &b.version))
        .ok_or_else(|| GuestError::NoKernel {
            boot_dir: boot_dir.to_path_buf(),
        })
}

/// Compares versions with runs of digits as numbers: `6.1.10` > `6.1.9`.
fn compare_versions(a: &str, b: &str) -> Ordering {
    let chunks = |s: &str| -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, chunk)) if *d == digit => chunk.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    };
    let key = |(digit, chunk): &(bool, String)| {
        if *digit {
            (
                chunk.trim_start_matches('0').len(),
                chunk.trim_start_matches('0').to_string(),
            )
        } else {
            (0, chunk.clone())
        }
    };
    let (a, b) = (chunks(a), chunks(b));
    a.iter().map(key).cmp(b.iter().map(key))
}

/// The module files `wanted` needs, dependencies first; modules built into the
/// kernel (`modules.builtin`) need no file and are left out.
pub fn resolve_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, GuestError> {
    let dep_file = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file).map_err(|source| GuestError::Io {
        path: dep_file.clone(),
        source,
    })?;
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in text.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        let needs = rest.split_whitespace().map(module_name).collect();
        deps.insert(module_name(path), (path.trim().to_string(), needs));
    }
    let builtin: HashSet<String> = std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .map(module_name)
        .collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        visit(
            &module_name(name),
            &deps,
            &builtin,
            &mut seen,
            &mut order,
            &dep_file,
        )?;
    }
    Ok(order
        .into_iter()
        .map(|path| modules_dir.join(path))
        .collect())
}

fn visit(
    name: &str,
    deps: &HashMap<String, (String, Vec<String>)>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    order: &mut Vec<String>,
    dep_file: &Path,
) -> Result<(), GuestError> {
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let Some((path, needs)) = deps.get(name) else {
        if builtin.contains(name) {
            return Ok(());
        }
        return Err(GuestError::ModuleMissing {
            module: name.to_string(),
            dep_file: dep_file.to_path_buf(),
        });
    };
    if !path.ends_with(".ko") {
        return Err(GuestError::CompressedModule {
            path: dep_file.with_file_name(path),
        });
    }
    for need in needs {
        visit(need, deps, builtin, seen, order, dep_file)?;
    }
    order.push(path.clone());
    Ok(())
}

/// `kernel/drivers/virtio/virtio-pci.ko.xz` → `virtio_pci`.
fn module_name(path: &str) -> String {
    let file = path.trim().rsplit('/').next().unwrap_or_default();
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare_versions("6.1.10-amd64", "6.1.9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("6.1.0-56-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("5.10.0", "6.1.0"), Ordering::Less);
        let dir = tempfile::tempdir().unwrap();
        for v in ["6.1.0-9-amd64", "6.1.0-56-amd64", "5.10.0-1-amd64"] {
            std::fs::write(dir.path().join(format!("vmlinuz-{v}")), "").unwrap();
        }
        std::fs::write(dir.path().join("config-9.9.9"), "").unwrap();
        assert_eq!(newest_kernel(dir.path()).unwrap().version, "6.1.0-56-amd64");
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            newest_kernel(empty.path()),
            Err(GuestError::NoKernel { .. })
        ));
    }

    #[test]
    fn dependencies_load_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("modules.dep"),
            "kernel/v/virtio_pci.ko: kernel/v/virtio_pci_legacy.ko kernel/v/virtio.ko kernel/v/virtio_ring.ko\n\
             kernel/v/virtio.ko: kernel/v/virtio_ring.ko\n\
             kernel/v/virtio_ring.ko:\n\
             kernel/v/virtio_pci_legacy.ko:\n\
             kernel/n/virtio_net.ko: kernel/v/virtio.ko kernel/v/virtio_ring.ko\n\
             kernel/x/squashed.ko.xz:\n\
             garbage line without colon\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("modules.builtin"), "kernel/a/button.ko\n").unwrap();
        let files = resolve_modules(dir.path(), &["virtio-pci", "virtio_net", "button"]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "kernel/v/virtio_pci_legacy.ko",
                "kernel/v/virtio_ring.ko",
                "kernel/v/virtio.ko",
                "kernel/v/virtio_pci.ko",
                "kernel/n/virtio_net.ko",
            ]
        );
        let err = resolve_modules(dir.path(), &["nope"]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = resolve_modules(dir.path(), &["squashed"]).unwrap_err();
        assert!(matches!(err, GuestError::CompressedModule { .. }), "{err}");
    }
}
