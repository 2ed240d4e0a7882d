//! The hypernix daemon: one task per compute unit supervising its QEMU process, `apply`
//! turning configurations into desired state, the local HTTP API, and the client the
//! command line uses.

#![warn(missing_docs)]

pub mod api;
pub mod build;
mod cgroup;
pub mod client;
pub mod daemon;
pub mod error;
pub mod layout;
pub mod model;
mod unit;

pub use daemon::{Daemon, Health};
