//! Tokens: issued from a principal's grant (the authority block carries principal,
//! capability, rights, operations, label scope, limits, delegation depth and temporal rules),
//! the daemon's root credential, emergency tokens, offline attenuation and inspection.

use std::collections::BTreeSet;
use std::time::SystemTime;

use biscuit_auth::builder::{BlockBuilder, Term, date, fact, int, string};
use biscuit_auth::{Biscuit, UnverifiedBiscuit};
use chrono::{DateTime, Utc};
use hypernix_config::schema::security::{Capability, Grant, Security};
use serde::Serialize;

use crate::error::CapsError;
use crate::keys::KeyRing;
use crate::schedule;

/// How long a break-glass token lasts.
pub const BREAK_GLASS_TTL: chrono::Duration = chrono::Duration::minutes(30);

/// A token as handed out.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// The token (base64url).
    pub token: String,
    /// Its id (the `token` fact).
    pub id: String,
    /// Its principal.
    pub principal: String,
    /// Revocation ids, one per block, hex.
    pub revocation_ids: Vec<String>,
}

fn tok(e: impl std::fmt::Display) -> CapsError {
    CapsError::Token(e.to_string())
}

fn new_id() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().r#gen();
    format!("{n:032x}")
}

fn sys(t: DateTime<Utc>) -> SystemTime {
    SystemTime::from(t)
}

/// Issues a token for `principal`'s grant of `capability` (its only grant when `None`).
pub fn issue(
    keys: &KeyRing,
    security: &Security,
    principal: &str,
    capability: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Issued, CapsError> {
    let p = security.principals.get(principal).ok_or_else(|| {
        CapsError::Config(format!(
            "no principal {principal:?} in security.principals; add it to the configuration"
        ))
    })?;
    let grants: Vec<(usize, &Grant)> = p
        .grants
        .iter()
        .enumerate()
        .filter(|(_, g)| capability.is_none_or(|c| g.capability == c))
        .collect();
    let (index, grant) = match grants.as_slice() {
        [one] => *one,
        [] => {
            return Err(CapsError::Config(format!(
                "principal {principal:?} has no grant{}; add one under security.principals.{principal}.grants",
                capability
                    .map(|c| format!(" of capability {c:?}"))
                    .unwrap_or_default()
            )));
        }
        _ => {
            return Err(CapsError::Config(format!(
                "principal {principal:?} has several grants; choose one with --capability"
            )));
        }
    };
    let cap = security.capabilities.get(&grant.capability).ok_or_else(|| {
        CapsError::Config(format!(
            "grant of principal {principal:?} names capability {:?}, which security.capabilities does not define",
            grant.capability
        ))
    })?;
    let id = new_id();
    let mut b = authority(principal, &grant.capability, &id, now)?;
    if grant.emergency.break_glass {
        // The grant is usable only to ask for emergency access, never directly.
        b = b
            .fact(fact("break_glass", &[Term::Bool(true)]))
            .map_err(tok)?;
    } else {
        b = rights(b, cap)?;
    }
    b = scope(b, cap, grant)?;
    b = b
        .fact(fact(
            "usage_key",
            &[string(&format!("{principal}#{index}"))],
        ))
        .map_err(tok)?;
    b = temporal(b, grant)?;
    sign(keys, b, principal, id)
}

/// Issues the emergency token of a break-glass grant: its rights, for [`BREAK_GLASS_TTL`],
/// carrying `reason`.
pub fn emergency(
    keys: &KeyRing,
    security: &Security,
    principal: &str,
    capability: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Issued, CapsError> {
    let cap = security.capabilities.get(capability).ok_or_else(|| {
        CapsError::Config(format!(
            "no capability {capability:?} in security.capabilities"
        ))
    })?;
    let grant = security
        .principals
        .get(principal)
        .and_then(|p| p.grants.iter().find(|g| g.capability == capability))
        .ok_or_else(|| {
            CapsError::Config(format!(
                "principal {principal:?} has no grant of {capability:?}"
            ))
        })?;
    let id = new_id();
    let mut b = authority(principal, capability, &id, now)?;
    b = rights(b, cap)?;
    b = scope(b, cap, grant)?;
    b = b.fact(fact("emergency", &[string(reason)])).map_err(tok)?;
    b = b
        .check(
            format!(
                "check if time($t), $t < {}",
                date(&sys(now + BREAK_GLASS_TTL))
            )
            .as_str(),
        )
        .map_err(tok)?;
    sign(keys, b, principal, id)
}

/// How many times the root credential may be attenuated.
const ROOT_MAX_DEPTH: i64 = 4;

/// Issues the daemon's root credential: every right, no limits.
pub fn root(keys: &KeyRing, now: DateTime<Utc>) -> Result<Issued, CapsError> {
    let id = new_id();
    let b = authority("root", "root", &id, now)?
        .fact(fact("root", &[Term::Bool(true)]))
        .and_then(|b| b.fact(fact("delegable", &[Term::Bool(true)])))
        .and_then(|b| b.fact(fact("max_depth", &[int(ROOT_MAX_DEPTH)])))
        .map_err(tok)?;
    sign(keys, b, "root", id)
}

fn authority(
    principal: &str,
    capability: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<BlockBuilder, CapsError> {
    BlockBuilder::new()
        .fact(fact("principal", &[string(principal)]))
        .and_then(|b| b.fact(fact("capability", &[string(capability)])))
        .and_then(|b| b.fact(fact("token", &[string(id)])))
        .and_then(|b| b.fact(fact("issued", &[date(&sys(now))])))
        .map_err(tok)
}

fn rights(mut b: BlockBuilder, cap: &Capability) -> Result<BlockBuilder, CapsError> {
    let r = &cap.resources;
    let all = [
        ("compute", "create", r.compute.create),
        ("compute", "modify", r.compute.modify),
        ("compute", "delete", r.compute.delete),
        ("compute", "control", r.compute.control),
        ("compute", "console", r.compute.console),
        ("storage", "read", r.storage.read),
        ("storage", "write", r.storage.write),
        ("storage", "allocate", r.storage.allocate),
        ("storage", "snapshot", r.storage.snapshot),
        ("network", "configure", r.network.configure),
        ("network", "attach", r.network.attach),
        ("network", "create", r.network.create),
        ("cluster", "join", r.cluster.join),
        ("cluster", "configure", r.cluster.configure),
        ("cluster", "schedule", r.cluster.schedule),
    ];
    for (kind, action, held) in all {
        if held {
            b = b
                .fact(fact("right", &[string(kind), string(action)]))
                .map_err(tok)?;
        }
    }
    for op in &cap.operations {
        b = b
            .fact(fact("operation_allowed", &[string(op)]))
            .map_err(tok)?;
    }
    if let Some(max) = r.compute.limits.max_units {
        b = b
            .check(format!("check if units($n), $n <= {}", int(i64::from(max))).as_str())
            .map_err(tok)?;
    }
    let depth = if cap.delegation.allowed {
        cap.delegation.max_depth
    } else {
        0
    };
    b.fact(fact("max_depth", &[int(i64::from(depth))]))
        .and_then(|b| b.fact(fact("delegable", &[Term::Bool(cap.delegation.allowed)])))
        .map_err(tok)
}

fn scope(mut b: BlockBuilder, cap: &Capability, grant: &Grant) -> Result<BlockBuilder, CapsError> {
    let labels = cap
        .scope
        .iter()
        .chain(grant.scope.iter())
        .flat_map(|s| s.labels.iter());
    for (k, v) in labels {
        b = b
            .fact(fact("scope", &[string(k), string(v)]))
            .map_err(tok)?;
    }
    Ok(b)
}

fn temporal(mut b: BlockBuilder, grant: &Grant) -> Result<BlockBuilder, CapsError> {
    let t = &grant.temporal;
    if let Some(start) = t.validity.start {
        let start = sys(start.0.with_timezone(&Utc));
        b = b
            .check(format!("check if time($t), $t >= {}", date(&start)).as_str())
            .map_err(tok)?;
    }
    if let Some(end) = t.validity.end {
        let end = sys(end.0.with_timezone(&Utc));
        b = b
            .check(format!("check if time($t), $t < {}", date(&end)).as_str())
            .map_err(tok)?;
    }
    if let Some(d) = t.validity.duration {
        b = b
            .fact(fact(
                "valid_after_first_use",
                &[int(d.std().as_secs() as i64)],
            ))
            .map_err(tok)?;
    }
    if let Some(max) = t.usage.max_uses {
        b = b.fact(fact("max_uses", &[int(max as i64)])).map_err(tok)?;
    }
    if let Some(rate) = &t.usage.rate_limit {
        b = b
            .fact(fact(
                "rate_limit",
                &[
                    int(rate.requests as i64),
                    int(rate.window.std().as_millis() as i64),
                ],
            ))
            .map_err(tok)?;
    }
    if let Some(s) = &t.schedule
        && let Some(check) = schedule::check(s)?
    {
        b = b.check(check.as_str()).map_err(tok)?;
    }
    Ok(b)
}

fn sign(keys: &KeyRing, b: BlockBuilder, principal: &str, id: String) -> Result<Issued, CapsError> {
    let token = Biscuit::builder()
        .merge(b)
        .root_key_id(keys.current_id())
        .build(keys.signing_key())
        .map_err(tok)?;
    Ok(Issued {
        token: token.to_base64().map_err(tok)?,
        id,
        principal: principal.to_string(),
        revocation_ids: revocation_ids(&token.revocation_identifiers()),
    })
}

pub(crate) fn revocation_ids(ids: &[Vec<u8>]) -> Vec<String> {
    ids.iter()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect())
        .collect()
}

/// How `attenuate` narrows a token.
#[derive(Debug, Clone, Default)]
pub struct Attenuation {
    /// Only these operation names (empty: unchanged).
    pub operations: Vec<String>,
    /// Only resources carrying these labels.
    pub labels: Vec<(String, String)>,
    /// Not after this instant.
    pub expires: Option<DateTime<Utc>>,
}

/// Narrows `token` offline: appends a block, needs no key.
pub fn attenuate(token: &str, with: &Attenuation) -> Result<String, CapsError> {
    let t = UnverifiedBiscuit::from_base64(token.trim()).map_err(tok)?;
    let mut b = BlockBuilder::new();
    if !with.operations.is_empty() {
        let ops = Term::Set(
            with.operations
                .iter()
                .map(|o| string(o))
                .collect::<BTreeSet<_>>(),
        );
        b = b
            .check(format!("check if operation($o), {ops}.contains($o)").as_str())
            .map_err(tok)?;
    }
    for (k, v) in &with.labels {
        b = b
            .fact(fact("scope", &[string(k), string(v)]))
            .map_err(tok)?;
    }
    if let Some(e) = with.expires {
        b = b
            .check(format!("check if time($t), $t < {}", date(&sys(e))).as_str())
            .map_err(tok)?;
    }
    t.append(b).and_then(|t| t.to_base64()).map_err(tok)
}

/// What a token says, read without verifying its signature.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    /// The root key id it claims.
    pub root_key_id: Option<u32>,
    /// Number of blocks (1 + attenuations).
    pub blocks: usize,
    /// Revocation ids, one per block, hex.
    pub revocation_ids: Vec<String>,
    /// Each block's Datalog source.
    pub sources: Vec<String>,
}

/// Reads `token` without verifying it.
pub fn inspect(token: &str) -> Result<TokenInfo, CapsError> {
    let t = UnverifiedBiscuit::from_base64(token.trim()).map_err(tok)?;
    let sources = (0..t.block_count())
        .map(|i| t.print_block_source(i).map_err(tok))
        .collect::<Result<_, _>>()?;
    Ok(TokenInfo {
        root_key_id: t.root_key_id(),
        blocks: t.block_count(),
        revocation_ids: revocation_ids(&t.revocation_identifiers()),
        sources,
    })
}
