//! Metric monitoring: streaming per-series anomaly detection and its NAB evaluation, an
//! embedded time-series store, forecasts and capacity crossings.
//!
//! - [`Detector`] scores one series point by point: [`Detector::step`] takes a value and
//!   returns an anomaly score in `[0, 1]`. Memory per series is fixed at construction
//!   ([`Detector::memory_bytes`]) and each step does a constant amount of work.
//! - [`alert::Gate`] turns anomalous points into alerts (persistence, cooldown);
//!   [`cause::rank`] ranks the units and events that may have caused one;
//!   [`exposition`] writes metrics in the Prometheus text format.
//! - [`nab`] reads the NAB corpus, runs a detector over it, writes results in NAB's layout
//!   and scores them exactly as NAB's sweeper does (see `docs/monitoring.md`).
//! - [`tsdb::Tsdb`] stores samples in one redb file, rolls them up to 1-minute, 5-minute
//!   and 1-hour buckets and applies a [`tsdb::Retention`] per resolution.
//! - [`forecast::forecast`] forecasts a series with augurs (MSTL with an AutoETS trend, or
//!   AutoETS), [`forecast::backtest`] scores it by MASE against the naive forecast, and
//!   [`capacity::crossing`] finds when a forecast first reaches a limit.
#![deny(missing_docs)]

pub mod alert;
pub mod capacity;
pub mod cause;
mod context;
mod detector;
pub mod exposition;
pub mod forecast;
pub mod nab;
pub mod tsdb;

pub use detector::{Config, Detector};
