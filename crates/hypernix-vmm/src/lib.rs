//! QEMU virtual machines for hypernix: the command line for a [`VmSpec`], the QMP
//! client, process supervision that survives daemon restarts, accelerator detection,
//! and the busybox test guest.
//!
//! A VM's life:
//! 1. the daemon maps a resolved unit onto a [`VmSpec`] and picks a [`RunDir`];
//! 2. [`accel::probe`] says whether KVM really runs guests here, or TCG must;
//! 3. [`Vm::spawn`] starts QEMU in its own session and connects QMP;
//! 4. the [`Vm`] handle pauses, resumes, balloons and shuts the VM down, and
//!    [`Vm::wait_exit`] reports its end;
//! 5. after a daemon restart, [`Vm::attach`] finds the VM again from its run directory.

#![warn(missing_docs)]

pub mod accel;
pub mod command;
pub mod guest;
pub mod migrate;
pub mod process;
pub mod qmp;
pub mod rundir;
pub mod spec;

pub use accel::AccelProbe;
pub use guest::{GuestError, TestGuest, ensure_test_guest};
pub use process::{Exit, ShutdownStep, Vm, VmError};
pub use qmp::{QmpClient, QmpError};
pub use rundir::RunDir;
pub use spec::{
    Accel, Boot, Disk, DiskFormat, DiskSource, Nic, PortForward, Protocol, SpecError, VmSpec,
};
