//! Join tokens: `hnxjoin1.<CA fingerprint>.<secret>.<expiry>`, single-use, issued by the bootstrap node.

use super::ca::{fingerprint, hex};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::CertificateDer;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

const PREFIX: &str = "hnxjoin1";
const HEX_LEN: usize = 64;

/// A join that was refused.
#[derive(Debug, Error)]
pub enum JoinError {
    /// The token is not of the form `hnxjoin1.<fingerprint>.<secret>.<expiry>`.
    #[error("malformed join token: {reason}; copy the whole token the bootstrap node printed")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The token's expiry has passed.
    #[error("the join token expired at {expires} (Unix seconds); ask the cluster for a new one")]
    Expired {
        /// The expiry, Unix seconds.
        expires: u64,
    },
    /// The token was already used to join.
    #[error(
        "the join token was already used; tokens are single-use: ask the cluster for a new one"
    )]
    Used,
    /// The CA never issued this token (or it was altered).
    #[error("the cluster CA did not issue this join token; ask the cluster for a new one")]
    Unknown,
    /// The CA is not the one the token names.
    #[error(
        "the cluster CA's fingerprint is {found}, the join token expects {expected}; check that you are joining the right cluster"
    )]
    WrongCa {
        /// The fingerprint in the token.
        expected: String,
        /// The CA's fingerprint.
        found: String,
    },
    /// The public key presented is not a raw Ed25519 key.
    #[error("the joining node's public key is {len} bytes, not a 32-byte Ed25519 key")]
    PublicKey {
        /// Its length.
        len: usize,
    },
    /// The node holding the CA could not be reached, or did not prove it holds the pinned CA.
    #[error(
        "cannot join through {addr}: {reason}; check the address and that the token is this cluster's"
    )]
    Connect {
        /// The address dialled.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The node holding the CA refused the join.
    #[error("{addr} refused the join: {reason}")]
    Refused {
        /// The address dialled.
        addr: String,
        /// Its reason.
        reason: String,
    },
    /// The system's random generator failed.
    #[error("cannot draw a random join secret from the system; check /dev/urandom")]
    Random,
    /// The CA could not sign the certificate.
    #[error("the cluster CA could not sign the node certificate: {0}")]
    Sign(String),
    /// The certificate received is not a valid node certificate.
    #[error("the certificate received on joining is invalid: {0}; ask the cluster for a new one")]
    Certificate(String),
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    fingerprint: String,
    secret: String,
    expires: u64,
}

impl JoinToken {
    /// A new token with a random 256-bit secret for the CA with fingerprint `ca_fingerprint`,
    /// valid for `ttl` from `now`; [`ClusterCa::issue_token`](super::ClusterCa::issue_token)
    /// calls it and records the token.
    pub(crate) fn issue(
        ca_fingerprint: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<Self, JoinError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| JoinError::Random)?;
        Ok(JoinToken {
            fingerprint: ca_fingerprint.to_owned(),
            secret: hex(&secret),
            expires: unix_seconds(now).saturating_add(ttl.as_secs()),
        })
    }

    /// Parses `hnxjoin1.<fingerprint>.<secret>.<expiry>`.
    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let malformed = |reason| JoinError::Malformed { reason };
        let mut parts = text.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(malformed("it does not start with hnxjoin1."));
        }
        let (Some(fingerprint), Some(secret), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("it does not have four dot-separated parts"));
        };
        let is_hex = |s: &str| {
            s.len() == HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !is_hex(fingerprint) {
            return Err(malformed("the fingerprint is not 64 lowercase hex digits"));
        }
        if !is_hex(secret) {
            return Err(malformed("the secret is not 64 lowercase hex digits"));
        }
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed("the expiry is not a number of seconds"));
        }
        let expires = expires
            .parse()
            .map_err(|_| malformed("the expiry is out of range"))?;
        Ok(JoinToken {
            fingerprint: fingerprint.to_owned(),
            secret: secret.to_owned(),
            expires,
        })
    }

    /// The SHA-256 fingerprint of the CA certificate the joiner must see, lowercase hex.
    pub fn ca_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The secret, lowercase hex.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The expiry, Unix seconds.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        unix_seconds(now) >= self.expires
    }

    /// Checks, on the joiner's side, that `ca` is the CA this token pins.
    pub fn check_ca(&self, ca: &CertificateDer<'_>) -> Result<(), JoinError> {
        let found = fingerprint(ca);
        if found == self.fingerprint {
            Ok(())
        } else {
            Err(JoinError::WrongCa {
                expected: self.fingerprint.clone(),
                found,
            })
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.fingerprint, self.secret, self.expires
        )
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
