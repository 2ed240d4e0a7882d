//! The GraphQL API of hypernix: compute units, tags, policies, configuration apply and
//! plan, storage tiers, volumes and heat maps, backups, capabilities, metrics and alerts, and
//! the event log, with live subscriptions; `/metrics` in the Prometheus text format; the web
//! console at `/ui` and units' serial consoles over WebSockets; the server that serves it,
//! and the client the command line uses. The schema is checked in at `schema.graphql`.

#![warn(missing_docs)]

pub mod allowed;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod caps;
pub mod client;
pub mod mesh;
pub mod monitor;
pub mod schema;
pub mod server;
pub mod storage;
pub mod terminal;
pub mod types;
pub mod ui;
pub mod units;

pub use schema::{HypernixSchema, Limits, build, sdl};
