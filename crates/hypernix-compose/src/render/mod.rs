//! Turning a composition into what a guest reads: a cloud-init seed on an ISO volume.

pub mod cloud_init;
pub mod iso;

pub use cloud_init::{QEMU_FIRST_MAC, Seed, seed, user_data, volume_serial};
