//! The state store interface: tables of JSON documents, written in atomic transactions.

use crate::error::StateError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::any::type_name;
use std::fmt;

/// The longest key a table accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A table of JSON documents, keyed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Table {
    /// What each unit should be, by unit name, as resolved from the configuration.
    Desired,
    /// What each unit was last seen to be, by unit name, as the reconcile loop found it.
    Observed,
    /// The daemon's own bookkeeping, by key.
    Meta,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 3] = [Table::Desired, Table::Observed, Table::Meta];

    /// The table's name, as stored and as shown in errors.
    pub fn name(self) -> &'static str {
        match self {
            Table::Desired => "desired",
            Table::Observed => "observed",
            Table::Meta => "meta",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One change inside a transaction; a replicated log carries these as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Sets `key` in `table` to `value`, replacing what was there.
    Put {
        /// The table written.
        table: Table,
        /// The key, 1 to [`MAX_KEY_LEN`] bytes.
        key: String,
        /// The document stored.
        value: Value,
    },
    /// Removes `key` from `table`; removing a missing key is not an error.
    Delete {
        /// The table written.
        table: Table,
        /// The key, 1 to [`MAX_KEY_LEN`] bytes.
        key: String,
    },
}

impl Op {
    /// A put of `value` under `key` in `table`.
    pub fn put(table: Table, key: impl Into<String>, value: Value) -> Self {
        Op::Put {
            table,
            key: key.into(),
            value,
        }
    }

    /// A delete of `key` from `table`.
    pub fn delete(table: Table, key: impl Into<String>) -> Self {
        Op::Delete {
            table,
            key: key.into(),
        }
    }
}

/// The daemon's state: tables of JSON documents, changed only by atomic transactions.
pub trait StateStore: Send + Sync {
    /// Applies `ops` in order, all or none, and returns the revision they made.
    ///
    /// Every transaction with at least one op bumps the revision by one; an empty list
    /// changes nothing and returns the current revision.
    fn transact(&self, ops: Vec<Op>) -> Result<u64, StateError>;

    /// The document under `key` in `table`, if there is one.
    fn get(&self, table: Table, key: &str) -> Result<Option<Value>, StateError>;

    /// Every document in `table`, in key order.
    fn list(&self, table: Table) -> Result<Vec<(String, Value)>, StateError>;

    /// The revision of the last transaction; 0 for a new store.
    fn revision(&self) -> Result<u64, StateError>;
}

/// Typed access on top of any [`StateStore`].
pub trait StateStoreExt: StateStore {
    /// The document under `key` in `table`, decoded as a `T`.
    fn get_as<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, StateError> {
        let Some(value) = self.get(table, key)? else {
            return Ok(None);
        };
        serde_json::from_value(value)
            .map(Some)
            .map_err(|source| StateError::Decode {
                table: table.name(),
                key: key.to_owned(),
                type_name: type_name::<T>(),
                source,
            })
    }

    /// Stores `value`, encoded as JSON, under `key` in `table`, in a transaction of its own.
    fn put_as<T: Serialize + ?Sized>(
        &self,
        table: Table,
        key: &str,
        value: &T,
    ) -> Result<u64, StateError> {
        let value = serde_json::to_value(value).map_err(|source| StateError::Encode {
            table: table.name(),
            key: key.to_owned(),
            source,
        })?;
        self.transact(vec![Op::put(table, key, value)])
    }
}

impl<S: StateStore + ?Sized> StateStoreExt for S {}

/// Checks that `key` may be stored in `table`.
pub(crate) fn check_key(table: Table, key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(StateError::BadKey {
            table: table.name(),
            key: key.chars().take(64).collect(),
            len: key.len(),
        });
    }
    Ok(())
}
