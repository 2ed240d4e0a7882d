//! QEMU processes: starting one detached from the daemon, finding it again, and
//! driving it through QMP.
//!
//! [`Vm::spawn`] starts QEMU in a session of its own (`setsid`), stdin from
//! `/dev/null`, stdout and stderr into the run directory's `qemu.log`, so that neither a
//! closing terminal nor a daemon restart stops it. (Under systemd, give the daemon's unit
//! `KillMode=process`, or the cgroup takes QEMU with it.) Start-up counts as done when
//! QMP answers; QEMU exiting before that is a [`VmError::SpawnFailed`] carrying its
//! stderr. [`Vm::attach`] checks the pid file names a live QEMU of the same name and
//! run directory, then connects QMP; QEMU serves one QMP client at a time, so drop the
//! old handle first.

mod exit;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open, pidfd_send_signal};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::command::{QEMU_BINARY, qemu_args};
use crate::qmp::{BalloonInfo, BlockStats, CpuInfo, QmpClient, QmpError, StatusInfo};
use crate::rundir::{MAX_SOCKET_PATH, RunDir};
use crate::spec::{SpecError, VmSpec};

pub use exit::Exit;
use exit::{Waiter, is_qemu_for};

/// How long QEMU may take to answer on QMP after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one QMP command may take.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Vm::shutdown`] waits after `quit` and after SIGKILL.
const FORCE_WAIT: Duration = Duration::from_secs(5);

/// How much of `qemu.log` errors quote.
const LOG_TAIL: usize = 4096;

/// A failure starting, finding or driving a VM.
#[derive(Debug, Error)]
pub enum VmError {
    /// The spec cannot run.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The run directory cannot be used.
    #[error("run directory {path}: {source}")]
    RunDir {
        /// The directory or file in it.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The run directory's socket paths would not fit a unix socket address.
    #[error(
        "run directory {0} is too long: socket paths in it must stay under {MAX_SOCKET_PATH} bytes; \
         choose a shorter directory"
    )]
    RunDirTooLong(PathBuf),
    /// A QEMU for this VM already runs from the run directory.
    #[error("VM {name} is already running as pid {pid}; attach to it or stop it first")]
    AlreadyRunning {
        /// The VM.
        name: String,
        /// Its QEMU.
        pid: u32,
    },
    /// QEMU could not be executed.
    #[error("cannot run {binary}: {source}; install qemu-system-x86")]
    Exec {
        /// The binary.
        binary: String,
        /// The cause.
        source: std::io::Error,
    },
    /// QEMU exited while starting.
    #[error("QEMU for VM {name} exited while starting ({exit}); its output:\n{stderr}")]
    SpawnFailed {
        /// The VM.
        name: String,
        /// How it exited.
        exit: Exit,
        /// The end of QEMU's stdout and stderr.
        stderr: String,
    },
    /// QEMU started but QMP did not answer.
    #[error(
        "QEMU for VM {name} did not answer on QMP within {after:?} ({source}); its output:\n{stderr}"
    )]
    StartTimeout {
        /// The VM.
        name: String,
        /// How long we waited.
        after: Duration,
        /// The last QMP error.
        source: Box<QmpError>,
        /// The end of QEMU's stdout and stderr.
        stderr: String,
    },
    /// No QEMU of this VM runs from the run directory.
    #[error("VM {name} is not running from {run_dir}: {why}")]
    NotRunning {
        /// The VM.
        name: String,
        /// The run directory.
        run_dir: PathBuf,
        /// What was found instead.
        why: String,
    },
    /// A QMP command failed.
    #[error("VM {name}: {source}")]
    Qmp {
        /// The VM.
        name: String,
        /// The cause.
        source: QmpError,
    },
    /// A signal could not be sent.
    #[error("VM {name}: cannot signal QEMU pid {pid}: {source}")]
    Signal {
        /// The VM.
        name: String,
        /// Its QEMU.
        pid: u32,
        /// The cause.
        source: std::io::Error,
    },
    /// QEMU outlived SIGKILL.
    #[error(
        "VM {name}: QEMU pid {pid} still runs {after:?} after SIGKILL; it may be stuck in the kernel (D state)"
    )]
    Unkillable {
        /// The VM.
        name: String,
        /// Its QEMU.
        pid: u32,
        /// How long we waited.
        after: Duration,
    },
}

/// How [`Vm::shutdown`] ended the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStep {
    /// It had exited already.
    AlreadyExited,
    /// The guest powered off after the ACPI power button.
    Powerdown,
    /// QEMU quit on QMP `quit`.
    Quit,
    /// QEMU was killed with SIGKILL.
    Killed,
}

/// A running (or recently running) QEMU and its QMP connection.
#[derive(Debug)]
pub struct Vm {
    name: String,
    run: RunDir,
    pid: u32,
    qmp: QmpClient,
    signal_fd: Option<OwnedFd>,
    exit: watch::Receiver<Option<Exit>>,
    watcher: JoinHandle<()>,
}

impl Drop for Vm {
    /// Stops watching; QEMU keeps running and can be attached to again.
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Vm {
    /// Starts QEMU for `spec` with its files in `run_dir` and connects QMP.
    pub async fn spawn(spec: &VmSpec, run_dir: impl AsRef<Path>) -> Result<Vm, VmError> {
        Vm::spawn_via(spec, run_dir, &[]).await
    }

    /// Like [`Vm::spawn`], but through `launcher`, a command that execs the rest of its
    /// command line in place, so the pid stays QEMU's (`ip netns exec NS`: QEMU in a
    /// network namespace); empty, QEMU runs directly.
    pub async fn spawn_via(
        spec: &VmSpec,
        run_dir: impl AsRef<Path>,
        launcher: &[String],
    ) -> Result<Vm, VmError> {
        spec.validate()?;
        let run_dir = &absolute(run_dir.as_ref())?;
        let run = RunDir::new(run_dir);
        if !run.sockets_fit() {
            return Err(VmError::RunDirTooLong(run_dir.to_path_buf()));
        }
        let run_error = |path: PathBuf| move |source| VmError::RunDir { path, source };
        if let Some(pid) = run.read_pid().map_err(run_error(run.pid_file()))?
            && is_qemu_for(pid, &spec.name, &run.pid_file())
        {
            return Err(VmError::AlreadyRunning {
                name: spec.name.clone(),
                pid,
            });
        }
        run.prepare().map_err(run_error(run_dir.to_path_buf()))?;
        let log = File::create(run.qemu_log()).map_err(run_error(run.qemu_log()))?;
        let log_too = log.try_clone().map_err(run_error(run.qemu_log()))?;
        // The launcher's command line, if any, then QEMU's.
        let mut argv = launcher.iter().map(String::as_str).chain([QEMU_BINARY]);
        let program = argv.next().unwrap_or(QEMU_BINARY);
        let mut command = tokio::process::Command::new(program);
        command
            .args(argv)
            .args(qemu_args(spec, &run))
            .current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_too);
        // SAFETY: the closure runs between fork and exec and only makes the setsid
        // system call, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().map_err(|source| VmError::Exec {
            binary: program.into(),
            source,
        })?;
        let Some(pid) = child.id() else {
            let exit = child
                .wait()
                .await
                .map(exit_of)
                .unwrap_or_else(|_| unknown_exit());
            return Err(spawn_failed(&spec.name, &run, exit));
        };
        let signal_fd = open_pidfd(pid);
        let qmp = match connect_while_alive(&run, &mut child).await {
            Ok(qmp) => qmp,
            Err(StartError::Exited(exit)) => return Err(spawn_failed(&spec.name, &run, exit)),
            Err(StartError::Qmp(source)) => {
                // A QEMU that never answers is of no use; kill it so it does not linger.
                let _ = child.kill().await;
                return Err(VmError::StartTimeout {
                    name: spec.name.clone(),
                    after: START_TIMEOUT,
                    source: Box::new(source),
                    stderr: run.qemu_log_tail(LOG_TAIL),
                });
            }
        };
        Ok(Vm::watch(
            spec.name.clone(),
            run,
            pid,
            qmp,
            signal_fd,
            Waiter::Child(child),
        ))
    }

    /// Finds the QEMU of VM `name` running from `run_dir` and connects QMP.
    pub async fn attach(run_dir: impl AsRef<Path>, name: &str) -> Result<Vm, VmError> {
        let run_dir = &absolute(run_dir.as_ref())?;
        let run = RunDir::new(run_dir);
        let not_running = |why: String| VmError::NotRunning {
            name: name.to_string(),
            run_dir: run_dir.to_path_buf(),
            why,
        };
        let pid = run
            .read_pid()
            .map_err(|source| VmError::RunDir {
                path: run.pid_file(),
                source,
            })?
            .ok_or_else(|| not_running("no pid in qemu.pid".into()))?;
        // The pidfd pins the process checked next, should the pid be reused later.
        let signal_fd = open_pidfd(pid);
        if !is_qemu_for(pid, name, &run.pid_file()) {
            return Err(not_running(format!(
                "pid {pid} is not a live QEMU of this VM"
            )));
        }
        let qmp = QmpClient::connect(&run.qmp_socket(), QMP_TIMEOUT)
            .await
            .map_err(|source| VmError::Qmp {
                name: name.to_string(),
                source,
            })?;
        Ok(Vm::watch(
            name.to_string(),
            run,
            pid,
            qmp,
            signal_fd,
            Waiter::for_pid(pid),
        ))
    }

    fn watch(
        name: String,
        run: RunDir,
        pid: u32,
        qmp: QmpClient,
        signal_fd: Option<OwnedFd>,
        waiter: Waiter,
    ) -> Vm {
        let (tx, exit) = watch::channel(None);
        let watcher = tokio::spawn(exit::watch(waiter, qmp.events(), qmp.closed_watch(), tx));
        Vm {
            name,
            run,
            pid,
            qmp,
            signal_fd,
            exit,
            watcher,
        }
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// QEMU's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The run directory.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    /// The QMP connection, for commands without a wrapper here.
    pub fn qmp(&self) -> &QmpClient {
        &self.qmp
    }

    /// How QEMU ended, or `None` while it runs.
    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits until QEMU has ended; noticed within a second of its exit.
    pub async fn wait_exit(&self) -> Exit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_else(unknown_exit),
            // The watcher only stops after publishing, or when this handle drops.
            Err(_) => unknown_exit(),
        }
    }

    /// Asks the guest to power off (ACPI), then `quit`s QEMU, then kills it, giving
    /// the guest `grace` to power off on its own.
    pub async fn shutdown(&self, grace: Duration) -> Result<(ShutdownStep, Exit), VmError> {
        if let Some(exit) = self.exit() {
            return Ok((ShutdownStep::AlreadyExited, exit));
        }
        // A failed powerdown (QMP gone, guest paused) leaves it to quit and kill.
        if self.qmp.system_powerdown().await.is_ok()
            && let Ok(exit) = tokio::time::timeout(grace, self.wait_exit()).await
        {
            return Ok((ShutdownStep::Powerdown, exit));
        }
        if self.qmp.quit().await.is_ok()
            && let Ok(exit) = tokio::time::timeout(FORCE_WAIT, self.wait_exit()).await
        {
            return Ok((ShutdownStep::Quit, exit));
        }
        Ok((ShutdownStep::Killed, self.kill().await?))
    }

    /// Kills QEMU with SIGKILL and waits for it to end.
    pub async fn kill(&self) -> Result<Exit, VmError> {
        if let Some(exit) = self.exit() {
            return Ok(exit);
        }
        let sent = match &self.signal_fd {
            Some(fd) => pidfd_send_signal(fd, Signal::KILL),
            None => match i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
                Some(pid) => kill_process(pid, Signal::KILL),
                None => Err(rustix::io::Errno::SRCH),
            },
        };
        if let Err(errno) = sent
            && errno != rustix::io::Errno::SRCH
        {
            return Err(VmError::Signal {
                name: self.name.clone(),
                pid: self.pid,
                source: errno.into(),
            });
        }
        tokio::time::timeout(FORCE_WAIT, self.wait_exit())
            .await
            .map_err(|_| VmError::Unkillable {
                name: self.name.clone(),
                pid: self.pid,
                after: FORCE_WAIT,
            })
    }

    /// The run state (`query-status`).
    pub async fn status(&self) -> Result<StatusInfo, VmError> {
        self.qmp_result(self.qmp.query_status().await)
    }

    /// Pauses every vCPU (`stop`).
    pub async fn pause(&self) -> Result<(), VmError> {
        self.qmp_result(self.qmp.stop().await)
    }

    /// Resumes a paused VM (`cont`).
    pub async fn resume(&self) -> Result<(), VmError> {
        self.qmp_result(self.qmp.cont().await)
    }

    /// Resets the machine (`system_reset`).
    pub async fn reset(&self) -> Result<(), VmError> {
        self.qmp_result(self.qmp.system_reset().await)
    }

    /// Asks the balloon driver to give the guest `bytes` of memory (`balloon`).
    pub async fn balloon(&self, bytes: u64) -> Result<(), VmError> {
        self.qmp_result(self.qmp.balloon(bytes).await)
    }

    /// The memory the guest has now (`query-balloon`).
    pub async fn balloon_info(&self) -> Result<BalloonInfo, VmError> {
        self.qmp_result(self.qmp.query_balloon().await)
    }

    /// Block I/O counters (`query-blockstats`).
    pub async fn blockstats(&self) -> Result<Vec<BlockStats>, VmError> {
        self.qmp_result(self.qmp.query_blockstats().await)
    }

    /// The vCPUs present (`query-cpus-fast`).
    pub async fn vcpus(&self) -> Result<Vec<CpuInfo>, VmError> {
        self.qmp_result(self.qmp.query_cpus_fast().await)
    }

    /// Plugs in one more vCPU and returns its device id.
    pub async fn hotplug_vcpu(&self) -> Result<String, VmError> {
        self.qmp_result(self.qmp.hotplug_vcpu().await)
    }

    /// Hot-plugs vCPUs until `count` are present; fewer than present is an error.
    pub async fn set_vcpus(&self, count: usize) -> Result<(), VmError> {
        self.qmp_result(self.qmp.set_vcpus(count).await)
    }

    fn qmp_result<T>(&self, result: Result<T, QmpError>) -> Result<T, VmError> {
        result.map_err(|source| VmError::Qmp {
            name: self.name.clone(),
            source,
        })
    }
}

enum StartError {
    Exited(Exit),
    Qmp(QmpError),
}

/// Connects QMP, retrying while the socket is not there yet, until QEMU exits or
/// [`START_TIMEOUT`] passes.
async fn connect_while_alive(
    run: &RunDir,
    child: &mut tokio::process::Child,
) -> Result<QmpClient, StartError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let attempt = QmpClient::connect(&run.qmp_socket(), QMP_TIMEOUT).await;
        // An exit explains any QMP failure better than the failure itself.
        let exited = match attempt {
            Ok(_) => child.try_wait().ok().flatten(),
            Err(_) => tokio::time::timeout(Duration::from_millis(50), child.wait())
                .await
                .ok()
                .and_then(Result::ok),
        };
        if let Some(status) = exited {
            return Err(StartError::Exited(exit_of(status)));
        }
        match attempt {
            Ok(qmp) => return Ok(qmp),
            Err(e) if Instant::now() >= deadline => return Err(StartError::Qmp(e)),
            Err(_) => {}
        }
    }
}

/// The run directory as an absolute path: QEMU runs in it, so relative paths would
/// point elsewhere, and `attach` compares it with QEMU's arguments.
fn absolute(run_dir: &Path) -> Result<PathBuf, VmError> {
    std::path::absolute(run_dir).map_err(|source| VmError::RunDir {
        path: run_dir.to_path_buf(),
        source,
    })
}

fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    pidfd_open(pid, PidfdFlags::empty()).ok()
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    Exit {
        code: status.code(),
        signal: status.signal(),
        shutdown_reason: None,
    }
}

fn unknown_exit() -> Exit {
    Exit {
        code: None,
        signal: None,
        shutdown_reason: None,
    }
}

fn spawn_failed(name: &str, run: &RunDir, exit: Exit) -> VmError {
    VmError::SpawnFailed {
        name: name.to_string(),
        exit,
        stderr: run.qemu_log_tail(LOG_TAIL),
    }
}
