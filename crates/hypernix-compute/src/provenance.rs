//! Where a resolved value came from.

use std::fmt;

use serde::Serialize;

/// The source that set a resolved field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Source {
    /// The schema's default; nothing set it.
    Default,
    /// `compute.defaults`.
    ComputeDefaults,
    /// A policy's `defaults`; `via` names the policy that included it, if any.
    Policy {
        /// The policy.
        name: String,
        /// The including policy chain, outermost first.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        via: Vec<String>,
    },
    /// A tag's `values`.
    Tag {
        /// The tag.
        name: String,
        /// Its priority.
        priority: i64,
        /// How the unit got it, when not listed by the unit itself.
        #[serde(skip_serializing_if = "Option::is_none")]
        via: Option<TagVia>,
    },
    /// The unit's own settings.
    Unit,
    /// A component of the unit's blueprint, which adjusted the value last.
    Component {
        /// The component (its alias in the blueprint).
        name: String,
        /// The blueprint.
        blueprint: String,
    },
}

/// How a unit got a tag it does not list itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum TagVia {
    /// Through a policy's `tags`.
    Policy(String),
    /// Through `compute.defaults.defaultTags`.
    DefaultTags,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::ComputeDefaults => f.write_str("compute.defaults"),
            Source::Policy { name, via } => {
                write!(f, "policy {name}")?;
                for v in via.iter().rev() {
                    write!(f, " (via policy {v})")?;
                }
                Ok(())
            }
            Source::Tag {
                name,
                priority,
                via,
            } => {
                write!(f, "tag {name} (priority {priority}")?;
                match via {
                    Some(TagVia::Policy(p)) => write!(f, ", via policy {p})"),
                    Some(TagVia::DefaultTags) => write!(f, ", via compute.defaults.defaultTags)"),
                    None => f.write_str(")"),
                }
            }
            Source::Unit => f.write_str("unit"),
            Source::Component { name, blueprint } => {
                write!(f, "component {name} (blueprint {blueprint})")
            }
        }
    }
}
