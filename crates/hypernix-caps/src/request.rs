//! What a request asks to do, as the authorizer sees it.

use std::collections::BTreeMap;

/// A right on a kind of resource: `compute`/`create`, `storage`/`read`, … The action
/// `read` is held by any token with some right on the kind; the kind `any` with `read`
/// by any token with some right at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// `compute`, `storage`, `network`, `cluster`, `any`, or `emergency`.
    pub kind: &'static str,
    /// A right of that kind, as in `security.capabilities.*.resources`, or `read`.
    pub action: &'static str,
}

impl Access {
    /// The right `action` on `kind`.
    pub const fn new(kind: &'static str, action: &'static str) -> Access {
        Access { kind, action }
    }
}

/// One request to authorize.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The operation's name, such as `unit.start` (what `operations = [...]` lists).
    pub operation: String,
    /// The right it needs.
    pub access: Access,
    /// The resource acted on, when there is one: its name and labels.
    pub target: Option<(String, BTreeMap<String, String>)>,
    /// How many units the request acts on.
    pub units: u64,
}

impl Request {
    /// A request for `operation` needing `access`, on no particular resource.
    pub fn new(operation: impl Into<String>, access: Access) -> Request {
        Request {
            operation: operation.into(),
            access,
            target: None,
            units: 0,
        }
    }

    /// The same request, acting on `name` with `labels`.
    pub fn on(mut self, name: impl Into<String>, labels: BTreeMap<String, String>) -> Request {
        self.target = Some((name.into(), labels));
        self
    }

    /// The same request, acting on `n` units.
    pub fn units(mut self, n: u64) -> Request {
        self.units = n;
        self
    }
}
