//! Composing guests from components.
//!
//! A blueprint ([`hypernix_config::schema::composition::Blueprint`]) names components;
//! [`compose`] turns it into a [`Composed`] guest configuration in four steps:
//! 1. [`resolve`] orders the members by `requires` (pulling in what they need from the
//!    library) and rejects conflicts, cycles and unmet requirements;
//! 2. [`contract`] gives every member its inputs (blueprint value, connection, default)
//!    and checks parameters and connections by type;
//! 3. [`merge`] folds the members, in dependency order, into one configuration, and
//!    rejects clashes naming both components;
//! 4. [`render`] writes the cloud-init NoCloud seed and its ISO volume; [`graph`] draws
//!    the composition.

#![warn(missing_docs)]

pub mod contract;
pub mod error;
pub mod graph;
pub mod merge;
pub mod render;
pub mod resolve;

use hypernix_config::schema::composition::Composition;

pub use contract::Values;
pub use error::ComposeError;
pub use merge::{Composed, ComposedPort, Phase};
pub use render::{Seed, seed};

/// Composes blueprint `name` with the given parameter values.
pub fn compose(
    composition: &Composition,
    name: &str,
    params: &Values,
) -> Result<Composed, ComposeError> {
    let blueprint = composition
        .blueprints
        .get(name)
        .ok_or_else(|| ComposeError::UnknownBlueprint(name.into()))?;
    let params = contract::parameters(blueprint, params)?;
    let resolution = resolve::resolve(&composition.components, name, &blueprint.components)?;
    let (inputs, outputs) = contract::bind(&resolution.members, blueprint, &params)?;
    let mut composed = merge::merge(name, &resolution.members, &inputs, &params)?;
    composed.edges = resolution.edges;
    composed.outputs = outputs;
    Ok(composed)
}

/// Composes every blueprint with its parameters' defaults; returns the failures by
/// blueprint name.
pub fn check_all(composition: &Composition) -> Vec<(String, ComposeError)> {
    composition
        .blueprints
        .keys()
        .filter_map(|name| {
            compose(composition, name, &Values::new())
                .err()
                .map(|e| (name.clone(), e))
        })
        .collect()
}
