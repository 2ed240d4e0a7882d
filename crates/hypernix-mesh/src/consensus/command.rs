//! The replicated key-value state machine's commands and their results.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The longest key a table accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The largest command accepted, in bytes of its JSON; bounds the size of replication frames.
pub const MAX_COMMAND_LEN: usize = 64 << 10;

/// A replicated table of JSON documents, keyed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Table {
    /// Each unit's desired state, by unit name.
    Units,
    /// Which node runs each unit, by unit name.
    Placement,
    /// Revoked capability tokens, by revocation id.
    Revocations,
    /// Which nodes hold each volume, by volume name.
    VolumeLocations,
    /// Each node's registration (addresses, roles, capacity, location), by node id.
    Nodes,
    /// Cluster-wide settings, such as the configuration applied last, by name.
    Meta,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 6] = [
        Table::Units,
        Table::Placement,
        Table::Revocations,
        Table::VolumeLocations,
        Table::Nodes,
        Table::Meta,
    ];

    /// The table's name, as stored and as shown in errors.
    pub fn name(self) -> &'static str {
        match self {
            Table::Units => "units",
            Table::Placement => "placement",
            Table::Revocations => "revocations",
            Table::VolumeLocations => "volumeLocations",
            Table::Nodes => "nodes",
            Table::Meta => "meta",
        }
    }

    /// The table called `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One change to the replicated state, applied in log order on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Command {
    /// Sets `key` in `table` to `value`.
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
    /// Sets `key` to `new` (`None` removes it) only if it currently holds `expected` (`None`: absent).
    CompareAndSwap {
        /// The table written.
        table: Table,
        /// The key, 1 to [`MAX_KEY_LEN`] bytes.
        key: String,
        /// The document the key must hold, or `None` if it must be absent.
        expected: Option<Value>,
        /// The document to store, or `None` to remove the key.
        new: Option<Value>,
    },
}

impl Command {
    /// The table the command writes.
    pub fn table(&self) -> Table {
        match self {
            Command::Put { table, .. }
            | Command::Delete { table, .. }
            | Command::CompareAndSwap { table, .. } => *table,
        }
    }

    /// The key the command writes.
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. }
            | Command::Delete { key, .. }
            | Command::CompareAndSwap { key, .. } => key,
        }
    }
}

/// What applying a [`Command`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum Applied {
    /// A put or delete took effect.
    Written,
    /// A compare-and-swap found the expected document and replaced it.
    Swapped,
    /// A compare-and-swap found something else and changed nothing.
    Mismatch {
        /// The document the key held, or `None` if absent.
        current: Option<Value>,
    },
}

/// Whether `key` is an acceptable key: 1 to [`MAX_KEY_LEN`] bytes.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN
}

impl Command {
    /// The length of the command's JSON, as it is logged and replicated.
    pub fn encoded_len(&self) -> usize {
        serde_json::to_vec(self).map_or(usize::MAX, |json| json.len())
    }
}
