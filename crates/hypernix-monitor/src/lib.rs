//! Streaming, per-series, unsupervised anomaly detection, and the Numenta Anomaly
//! Benchmark (NAB) scorer used to evaluate it.
//!
//! - [`Detector`] scores one series point by point: [`Detector::step`] takes a value and
//!   returns an anomaly score in `[0, 1]`. Memory per series is fixed at construction
//!   ([`Detector::memory_bytes`]) and each step does a constant amount of work.
//! - [`nab`] reads the NAB corpus, runs a detector over it, writes results in NAB's layout
//!   and scores them exactly as NAB's sweeper does (see `docs/monitoring.md`).
#![deny(missing_docs)]

mod context;
mod detector;
pub mod nab;
pub mod tsdb;

pub use detector::{Config, Detector};
