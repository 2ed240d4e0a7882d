//! What can go wrong composing a blueprint; every message names the components involved.

use thiserror::Error;

/// A blueprint that cannot be composed.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// The blueprint does not exist.
    #[error("unknown blueprint `{0}`")]
    UnknownBlueprint(String),
    /// A blueprint entry names a component the library lacks.
    #[error("blueprint `{blueprint}` uses unknown component `{component}`")]
    UnknownComponent {
        /// The blueprint.
        blueprint: String,
        /// The missing component.
        component: String,
    },
    /// A requirement nothing in the blueprint or the library satisfies.
    #[error("unmet requirement: {} needs `{missing}`, which no component provides", chain.join(" → "))]
    Unmet {
        /// Aliases from a blueprint entry down to the one with the requirement.
        chain: Vec<String>,
        /// The missing component or feature.
        missing: String,
    },
    /// Components that require each other in a loop.
    #[error("dependency cycle: {}", chain.join(" → "))]
    Cycle {
        /// The loop, first alias repeated at the end.
        chain: Vec<String>,
    },
    /// A component conflicts with another.
    #[error("component `{a}` conflicts with `{b}` (over `{over}`)")]
    Conflict {
        /// The component declaring the conflict.
        a: String,
        /// The component it clashes with.
        b: String,
        /// The name or feature in conflict.
        over: String,
    },
    /// Two components give the same thing different values.
    #[error("components `{a}` and `{b}` clash: {what}")]
    Clash {
        /// The first component (earlier in dependency order).
        a: String,
        /// The second component.
        b: String,
        /// What they disagree on, such as `file /etc/x has different content`.
        what: String,
    },
    /// An interface contract is broken.
    #[error("component `{component}`: {message}")]
    Contract {
        /// The component (alias) whose contract is broken.
        component: String,
        /// What is wrong.
        message: String,
    },
    /// A connection joins an output and an input of different types.
    #[error(
        "connection {from} → {to}: output type `{from_type}` does not match input type `{to_type}`"
    )]
    ConnectionType {
        /// The output, `alias.output`.
        from: String,
        /// The input, `alias.input`.
        to: String,
        /// The output's type.
        from_type: String,
        /// The input's type.
        to_type: String,
    },
    /// A blueprint parameter has no value or a wrong one.
    #[error("parameter `{name}`: {message}")]
    Parameter {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },
}
