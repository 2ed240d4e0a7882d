//! The integration tests of hypernix-storage, one binary.

mod bad_input;
mod cache;
mod classify;
mod clients;
mod config;
mod delta;
mod durability;
mod kit;
mod movement;
mod placement;
mod replay;
mod store;
