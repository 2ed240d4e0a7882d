//! Compute units: resolution of tags and policies into concrete VM settings with the
//! provenance of every field, and plans between two configurations.
//!
//! [`resolve_all`] turns a [`hypernix_config::Config`] into [`ResolvedUnit`]s;
//! [`plan::plan`] compares two sets of resolved units and says, per field, whether the
//! change can be applied to a running unit or needs a restart.

#![warn(missing_docs)]

pub mod constraints;
pub mod error;
pub mod merge;
pub mod plan;
pub mod provenance;
pub mod resolve;
pub mod resources;

pub use error::ResolveError;
pub use merge::Override;
pub use plan::{Action, FieldChange, Plan, UnitChange, plan};
pub use provenance::{Source, TagVia};
pub use resolve::{
    AppliedTag, ResolvedUnit, blueprint_of, check_layers, resolve_all, resolve_unit,
};
pub use resources::Cpu;
