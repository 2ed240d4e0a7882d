//! Resolution errors; each names the attribute path or unit and says what to do.

use thiserror::Error;

/// Something that stops a unit from resolving.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum ResolveError {
    /// A reference to a tag or policy that does not exist.
    #[error("{path}: unknown {kind} `{name}`{hint}; define it under hypervisor.compute.{kind}s")]
    UnknownRef {
        /// Where the reference is.
        path: String,
        /// `tag` or `policy`.
        kind: &'static str,
        /// The name referred to.
        name: String,
        /// A "did you mean" hint, or empty.
        hint: String,
    },
    /// Policies that include each other.
    #[error(
        "{path}: policies include each other in a cycle: {cycle}; remove one of these includes"
    )]
    PolicyCycle {
        /// Where the cycle was entered.
        path: String,
        /// The cycle, as `a -> b -> a`.
        cycle: String,
    },
    /// A field that a tag or policy may not set, or a value out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The attribute path.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A resolved unit that breaks a policy's constraint.
    #[error(
        "hypervisor.compute.units.{unit}: {field} resolved to {value}, which breaks `{constraint}` \
         of policy `{policy}` (hypervisor.compute.policies.{policy}.constraints)"
    )]
    Constraint {
        /// The unit.
        unit: String,
        /// The field path inside the unit.
        field: String,
        /// The resolved value.
        value: String,
        /// The constraint broken.
        constraint: String,
        /// The policy that set it.
        policy: String,
    },
}
