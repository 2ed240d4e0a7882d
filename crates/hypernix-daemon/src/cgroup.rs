//! CPU quotas: a unit with fewer compute units than its vCPUs allow (150 units on 2 vCPUs)
//! gets a CFS quota in a cgroup of its own, `hypernix/UNIT` under the cpu controller
//! (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us`).

use std::path::{Path, PathBuf};

const PERIOD_US: u64 = 100_000;

/// Limits QEMU (`pid`) to `quota` cores when that is less than `vcpus`; `Err` says why not.
pub fn limit(unit: &str, pid: u32, quota: f64, vcpus: u32) -> Result<(), String> {
    if quota >= f64::from(vcpus) {
        return Ok(());
    }
    let quota_us = ((quota * PERIOD_US as f64).round() as u64).max(1000);
    let (dir, files) = if let Some(root) = v2_root() {
        // The cpu controller must be enabled for the children of each level on the way.
        let parent = root.join("hypernix");
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        for level in [&root, &parent] {
            let control = level.join("cgroup.subtree_control");
            std::fs::write(&control, "+cpu").map_err(|e| format!("{}: {e}", control.display()))?;
        }
        (
            parent.join(unit),
            vec![("cpu.max", format!("{quota_us} {PERIOD_US}"))],
        )
    } else {
        let dir = Path::new("/sys/fs/cgroup/cpu/hypernix").join(unit);
        (
            dir,
            vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota_us.to_string()),
            ],
        )
    };
    let fail = |what: &Path, e: std::io::Error| {
        format!(
            "CPU quota of {quota} cores not enforced: {}: {e}; run the daemon as root on a host with the cpu cgroup controller",
            what.display()
        )
    };
    std::fs::create_dir_all(&dir).map_err(|e| fail(&dir, e))?;
    for (file, value) in files {
        let p = dir.join(file);
        std::fs::write(&p, value).map_err(|e| fail(&p, e))?;
    }
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string()).map_err(|e| fail(&procs, e))
}

/// The cgroup v2 mount whose cpu controller can be delegated, if any.
fn v2_root() -> Option<PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    controllers
        .split_whitespace()
        .any(|c| c == "cpu")
        .then_some(root)
}
