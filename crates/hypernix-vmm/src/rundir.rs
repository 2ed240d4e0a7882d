//! The run directory: where one QEMU process keeps its sockets, pid and logs.
//!
//! Every VM has its own directory, which the daemon chooses and which outlives the
//! daemon, so that a restarted daemon finds its VMs again ([`crate::Vm::attach`]):
//!
//! | file | what |
//! |---|---|
//! | [`QMP_SOCKET`] `qmp.sock` | QMP control socket; QEMU serves one client at a time |
//! | [`CONSOLE_SOCKET`] `console.sock` | the serial console (ttyS0), attach with any unix-socket client |
//! | [`CONSOLE_LOG`] `console.log` | everything the guest wrote to the console, written by QEMU, truncated at each start |
//! | [`PID_FILE`] `qemu.pid` | QEMU's pid, written and locked by QEMU (`-pidfile`) |
//! | [`QEMU_LOG`] `qemu.log` | QEMU's own stdout and stderr, truncated at each start |

use std::io;
use std::path::{Path, PathBuf};

/// The QMP socket's file name.
pub const QMP_SOCKET: &str = "qmp.sock";
/// The serial console socket's file name.
pub const CONSOLE_SOCKET: &str = "console.sock";
/// The serial console log's file name.
pub const CONSOLE_LOG: &str = "console.log";
/// The pid file's name.
pub const PID_FILE: &str = "qemu.pid";
/// QEMU's stdout/stderr log's file name.
pub const QEMU_LOG: &str = "qemu.log";

/// The longest path a unix socket address holds (`sun_path` less its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// One VM's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl RunDir {
    /// The run directory at `path` (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The QMP socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.path.join(QMP_SOCKET)
    }

    /// The serial console socket.
    pub fn console_socket(&self) -> PathBuf {
        self.path.join(CONSOLE_SOCKET)
    }

    /// The serial console log.
    pub fn console_log(&self) -> PathBuf {
        self.path.join(CONSOLE_LOG)
    }

    /// The pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.path.join(PID_FILE)
    }

    /// QEMU's own log.
    pub fn qemu_log(&self) -> PathBuf {
        self.path.join(QEMU_LOG)
    }

    /// Whether the socket paths fit in a unix socket address.
    pub fn sockets_fit(&self) -> bool {
        [self.qmp_socket(), self.console_socket()]
            .iter()
            .all(|p| p.as_os_str().len() <= MAX_SOCKET_PATH)
    }

    /// Creates the directory and removes what a previous QEMU left: sockets, pid file.
    pub fn prepare(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.path)?;
        for stale in [self.qmp_socket(), self.console_socket(), self.pid_file()] {
            match std::fs::remove_file(&stale) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The pid in the pid file, or `None` when there is no file or it holds no pid.
    pub fn read_pid(&self) -> io::Result<Option<u32>> {
        match std::fs::read_to_string(self.pid_file()) {
            Ok(text) => Ok(text.trim().parse().ok().filter(|pid| *pid > 0)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last `max` bytes of QEMU's log, as text.
    pub fn qemu_log_tail(&self, max: usize) -> String {
        tail(&self.qemu_log(), max)
    }

    /// The serial console log so far, as text (empty when there is none yet).
    pub fn console_text(&self) -> String {
        std::fs::read(self.console_log())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

fn tail(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_stale_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("vm"));
        run.prepare().unwrap();
        std::fs::write(run.pid_file(), "1234\n").unwrap();
        assert_eq!(run.read_pid().unwrap(), Some(1234));
        std::fs::write(run.pid_file(), "garbage").unwrap();
        assert_eq!(run.read_pid().unwrap(), None);
        run.prepare().unwrap();
        assert_eq!(run.read_pid().unwrap(), None);
        assert!(run.sockets_fit());
        assert!(!RunDir::new("/x".repeat(60)).sockets_fit());
    }

    #[test]
    fn log_tail_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(run.qemu_log_tail(10), "");
        std::fs::write(run.qemu_log(), "first line\nsecond line\n").unwrap();
        assert_eq!(run.qemu_log_tail(12), "second line");
    }
}
