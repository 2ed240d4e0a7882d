//! The `hypervisor.*` configuration: loading from Nix or JSON, merging several files,
//! and the typed, validated option tree.
//!
//! Loading goes in three steps:
//! 1. each file becomes JSON (`nix-instantiate --eval --strict --json` for `.nix`);
//! 2. the files merge deeply, and two different values for one attribute are an error;
//! 3. the merged tree is typed ([`schema::Hypervisor`]) and validated, every error
//!    collected with its attribute path.

#![warn(missing_docs)]

pub mod error;
pub mod load;
pub mod merge;
pub mod path;
pub mod schema;
pub mod typed;
pub mod values;

pub use error::{ConfigError, ConfigErrors, Problems};
pub use load::{Config, load_paths};
pub use path::AttrPath;
pub use schema::Hypervisor;
pub use values::{Cron, Duration, Instant, Size, TimeOfDay};
