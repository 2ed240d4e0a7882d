//! The daemon's state store: desired and observed unit state, metadata, and the event log.
//!
//! [`StateStore`] is the interface the daemon writes through; [`RedbStore`] is the embedded
//! implementation, one redb file per daemon, which is also the daemon's
//! [`hypernix_events::EventLog`]. A clustered daemon will put a Raft log in front of the
//! same interface: a write is a list of [`Op`]s, so a replicated log can carry it unchanged.
//!
//! A write goes in four steps:
//! 1. the caller builds the [`Op`]s of one logical change (say, the desired state of three
//!    units) and calls [`StateStore::transact`];
//! 2. the store opens one write transaction and applies the ops in order, checking each key;
//! 3. it bumps the store's revision in the same transaction;
//! 4. it commits durably (fsync) and returns the new revision. If any step fails, nothing
//!    of the transaction is visible, and the revision is unchanged.
//!
//! Event appends ([`hypernix_events::EventLog::append`]) are separate write transactions,
//! each durable before it returns.

#![warn(missing_docs)]

pub mod error;
pub mod redb_store;
pub mod store;

pub use error::StateError;
pub use redb_store::RedbStore;
pub use store::{MAX_KEY_LEN, Op, StateStore, StateStoreExt, Table};
