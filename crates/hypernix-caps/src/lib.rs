//! Capabilities for hypernix: biscuit tokens issued from `security.principals` grants,
//! narrowed offline by attenuation, checked per request against time windows, usage limits,
//! delegation depth, label scopes and revocations; break-glass access; and a hash-chained,
//! checkpoint-signed audit log of every decision.

#![warn(missing_docs)]

pub mod audit;
pub mod authorize;
pub mod error;
pub mod keys;
pub mod request;
pub mod schedule;
pub mod token;

pub use audit::{AuditLog, AuditRecord, VerifyReport};
pub use authorize::{Authorizer, Decision};
pub use error::{CapsError, Denial};
pub use keys::KeyRing;
pub use request::{Access, Request};
pub use token::{Attenuation, Issued, TokenInfo};
