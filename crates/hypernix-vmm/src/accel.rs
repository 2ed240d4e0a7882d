//! Which accelerator really runs guests on this host.
//!
//! `/dev/kvm` opening is not enough: on some hosts (nested virtualization) KVM creates
//! VMs whose guests hang in the firmware or the kernel's early boot. So the probe
//! boots a kernel under KVM, as real VMs run (q35, `-cpu host`), and waits for its
//! first console line (`Linux version …`). No line within the timeout, an early QEMU
//! exit, no `/dev/kvm` or no kernel to try: TCG. [`probe`] probes once per process.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::OnceCell;

use crate::command::QEMU_BINARY;
use crate::guest::newest_kernel;
use crate::spec::Accel;

/// How long the probe guest gets to print its first line under KVM.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(6);

/// The line the probe kernel prints first once it runs.
const KERNEL_BANNER: &str = "Linux version";

/// The probe's verdict and why, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelProbe {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why, in a sentence.
    pub reason: String,
}

impl AccelProbe {
    fn tcg(reason: String) -> Self {
        AccelProbe {
            accel: Accel::Tcg,
            reason,
        }
    }
}

static DETECTED: OnceCell<AccelProbe> = OnceCell::const_new();

/// The accelerator for this host: probed with the newest kernel in `/boot` on the first
/// call, remembered for the rest of the process.
pub async fn probe() -> AccelProbe {
    DETECTED
        .get_or_init(|| async {
            match newest_kernel(Path::new("/boot")) {
                Ok(kernel) => {
                    probe_with(Path::new(QEMU_BINARY), &kernel.image, PROBE_TIMEOUT).await
                }
                Err(e) => AccelProbe::tcg(format!("no kernel to test KVM with ({e}); using TCG")),
            }
        })
        .await
        .clone()
}

/// Boots `kernel` under KVM with `qemu` and says whether it got as far as printing.
pub async fn probe_with(qemu: &Path, kernel: &Path, timeout: Duration) -> AccelProbe {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no /dev/kvm (kvm module not loaded, or no VT-x/AMD-V)".to_string()
            }
            _ => format!("cannot open /dev/kvm: {e}"),
        };
        return AccelProbe::tcg(format!("{why}; using TCG"));
    }
    let started = Instant::now();
    let mut child = match tokio::process::Command::new(qemu)
        .args([
            "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "128M", "-smp", "1",
        ])
        .args([
            "-no-user-config",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-serial",
            "stdio",
            "-append",
            "console=ttyS0 panic=-1",
            "-kernel",
        ])
        .arg(kernel)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return AccelProbe::tcg(format!("cannot run {}: {e}; using TCG", qemu.display())),
    };
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return AccelProbe::tcg("the KVM probe's output pipes were not set up; using TCG".into());
    };
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        // The probe only reports stderr; a read error just leaves it shorter.
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let banner = tokio::time::timeout(timeout, async {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(KERNEL_BANNER) {
                return true;
            }
        }
        false
    })
    .await;
    // Killing fails only when QEMU has exited already, which is what we want anyway.
    let _ = child.kill().await;
    let stderr = stderr_text.await.unwrap_or_default();
    let last_error = stderr
        .lines()
        .rev()
        .find(|l| !l.contains("warning"))
        .unwrap_or("")
        .trim();
    match banner {
        Ok(true) => AccelProbe {
            accel: Accel::Kvm,
            reason: format!(
                "a kernel booted under KVM in {:.1} s",
                started.elapsed().as_secs_f64()
            ),
        },
        Ok(false) => AccelProbe::tcg(format!(
            "QEMU under KVM exited before the kernel printed ({last_error}); using TCG"
        )),
        Err(_) => AccelProbe::tcg(format!(
            "a kernel under KVM printed nothing within {timeout:?} (guests hang here); using TCG"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_qemu_means_tcg() {
        if !Path::new("/dev/kvm").exists() {
            return; // Then the /dev/kvm check answers before QEMU is needed.
        }
        let probe = probe_with(
            Path::new("/nonexistent/qemu"),
            Path::new("/k"),
            PROBE_TIMEOUT,
        )
        .await;
        assert_eq!(probe.accel, Accel::Tcg);
        assert!(
            probe.reason.contains("/nonexistent/qemu"),
            "{}",
            probe.reason
        );
    }

    #[tokio::test]
    async fn an_early_exit_means_tcg() {
        if !Path::new("/dev/kvm").exists() {
            return;
        }
        let probe = probe_with(Path::new("/bin/false"), Path::new("/k"), PROBE_TIMEOUT).await;
        assert_eq!(probe.accel, Accel::Tcg);
        assert!(probe.reason.contains("exited before"), "{}", probe.reason);
    }
}
