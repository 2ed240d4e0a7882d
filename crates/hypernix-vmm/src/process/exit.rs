//! Noticing that a QEMU process ended, whether we started it or found it running.
//!
//! A child is reaped with `wait`, which also gives its exit status. A QEMU found after a
//! daemon restart is not our child: a pidfd becomes readable when it exits, and where
//! pidfds are missing `/proc/<pid>` is polled every 200 ms. Either way the watcher
//! then waits briefly for QMP to close, so it can report QEMU's `SHUTDOWN` reason.

use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, watch};

use crate::qmp::{Disconnect, QmpEvent};

/// How often `/proc` is polled when there is no pidfd.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// How long after the process ends the watcher waits for QMP's last events.
const QMP_DRAIN: Duration = Duration::from_millis(500);

/// How a QEMU process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, when QEMU was our child and exited normally.
    pub code: Option<i32>,
    /// The signal that killed it, when QEMU was our child.
    pub signal: Option<i32>,
    /// The reason of QEMU's last `SHUTDOWN` event (`guest-shutdown`, `host-qmp-quit`, …).
    pub shutdown_reason: Option<String>,
}

impl Exit {
    /// Whether the guest powered itself off (QEMU's `SHUTDOWN` reason `guest-shutdown`).
    pub fn guest_shutdown(&self) -> bool {
        self.shutdown_reason.as_deref() == Some("guest-shutdown")
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}")?,
            (None, Some(signal)) => write!(f, "killed by signal {signal}")?,
            (None, None) => f.write_str("exited")?,
        }
        if let Some(reason) = &self.shutdown_reason {
            write!(f, " after shutdown ({reason})")?;
        }
        Ok(())
    }
}

/// What the watcher waits on.
pub enum Waiter {
    /// Our own child.
    Child(tokio::process::Child),
    /// Another process, through a pidfd.
    Pidfd {
        /// The pidfd.
        fd: AsyncFd<OwnedFd>,
        /// The process, polled if the pidfd fails.
        pid: u32,
    },
    /// Another process, by polling `/proc`.
    Poll(u32),
}

impl Waiter {
    /// A waiter for a process that is not our child.
    pub fn for_pid(pid: u32) -> Waiter {
        let fd = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .and_then(|pid| pidfd_open(pid, PidfdFlags::NONBLOCK).ok())
            // SAFETY: an OwnedFd is open and keeps its one descriptor until dropped,
            // which is what registration requires.
            .and_then(|fd| unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok());
        fd.map_or(Waiter::Poll(pid), |fd| Waiter::Pidfd { fd, pid })
    }

    async fn wait(self) -> (Option<i32>, Option<i32>) {
        match self {
            Waiter::Child(mut child) => match child.wait().await {
                Ok(status) => (status.code(), status.signal()),
                Err(_) => (None, None),
            },
            Waiter::Pidfd { fd, pid } => {
                // Readable means exited; an error means the fd cannot tell, so poll.
                if fd.readable().await.is_err() {
                    poll_until_gone(pid).await;
                }
                (None, None)
            }
            Waiter::Poll(pid) => {
                poll_until_gone(pid).await;
                (None, None)
            }
        }
    }
}

async fn poll_until_gone(pid: u32) {
    while is_alive(pid) {
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits for the process to end, collects the `SHUTDOWN` reason, and publishes the exit.
pub async fn watch(
    waiter: Waiter,
    mut events: broadcast::Receiver<QmpEvent>,
    mut closed: watch::Receiver<Option<Disconnect>>,
    exit: watch::Sender<Option<Exit>>,
) {
    let mut shutdown_reason = None;
    let wait = waiter.wait();
    tokio::pin!(wait);
    let (code, signal) = loop {
        tokio::select! {
            status = &mut wait => break status,
            event = events.recv() => match event {
                Ok(event) => note_shutdown(&event, &mut shutdown_reason),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break wait.await,
            },
        }
    };
    // The reader forwards every event before it marks the connection closed.
    let _ = tokio::time::timeout(QMP_DRAIN, closed.wait_for(Option::is_some)).await;
    while let Ok(event) = events.try_recv() {
        note_shutdown(&event, &mut shutdown_reason);
    }
    exit.send_replace(Some(Exit {
        code,
        signal,
        shutdown_reason,
    }));
}

fn note_shutdown(event: &QmpEvent, reason: &mut Option<String>) {
    if event.event == "SHUTDOWN" {
        *reason = event
            .data
            .get("reason")
            .and_then(|r| r.as_str())
            .map(str::to_string);
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// Whether `pid` is a live QEMU named `name` using `pid_file`.
pub fn is_qemu_for(pid: u32, name: &str, pid_file: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let is_qemu = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|f| f.to_string_lossy().starts_with("qemu-system"));
    let value = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let named =
        value("-name").is_some_and(|v| v.split(',').any(|part| part == format!("guest={name}")));
    let same_dir = value("-pidfile").is_some_and(|v| Path::new(&v) == pid_file);
    is_qemu && named && same_dir && is_alive(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
        assert!(!is_qemu_for(std::process::id(), "x", Path::new("/p")));
    }

    #[test]
    fn exit_display() {
        let exit = Exit {
            code: Some(0),
            signal: None,
            shutdown_reason: Some("guest-shutdown".into()),
        };
        assert_eq!(
            exit.to_string(),
            "exited with code 0 after shutdown (guest-shutdown)"
        );
        let exit = Exit {
            code: None,
            signal: Some(9),
            shutdown_reason: None,
        };
        assert_eq!(exit.to_string(), "killed by signal 9");
    }

    #[tokio::test]
    async fn pidfd_and_poll_notice_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let waiter = Waiter::for_pid(pid);
        let reap = std::thread::spawn(move || child.wait());
        let waited = tokio::time::timeout(Duration::from_secs(5), waiter.wait()).await;
        assert_eq!(waited.unwrap(), (None, None));
        reap.join().unwrap().unwrap();
        let gone = tokio::time::timeout(Duration::from_secs(5), Waiter::Poll(pid).wait()).await;
        assert!(gone.is_ok());
    }
}
