//! The hypernix daemon: one task per compute unit supervising its QEMU process, `apply`
//! turning configurations into desired state, and the event log. The GraphQL API
//! (`hypernix-api`) turns requests into calls on [`Daemon`].

#![warn(missing_docs)]

pub mod backup;
pub mod build;
mod cgroup;
pub mod compose;
pub mod daemon;
pub mod error;
pub mod layout;
pub mod mesh;
pub mod model;
pub mod monitor;
pub mod security;
pub mod storage;
mod unit;

pub use daemon::{Daemon, Health};
