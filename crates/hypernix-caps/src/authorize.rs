//! The authorizer: verifies a token against the key ring, refuses revoked and over-delegated
//! tokens, runs the token's checks and the daemon's policies in Datalog with the request's
//! facts (time, local times, operation, right, unit count), enforces the label scope and
//! counts usage server-side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use biscuit_auth::builder::{date, fact, int, string};
use biscuit_auth::error::{FailedCheck, Logic, Token as TokenError};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use hypernix_config::schema::security::Security;

use crate::error::{CapsError, Denial};
use crate::keys::KeyRing;
use crate::request::Request;
use crate::schedule;
use crate::token::revocation_ids;

/// The daemon's policies: which request facts the token's facts allow.
const POLICIES: &[&str] = &[
    "allow if root(true)",
    "allow if request($k, $a), right($k, $a)",
    "allow if request($k, \"read\"), right($k, $x)",
    "allow if request(\"any\", \"read\"), right($k, $x)",
    "allow if operation($o), operation_allowed($o), request($k, $a), $k != \"emergency\"",
    "allow if request(\"emergency\", \"request\"), break_glass(true)",
];

/// Most verified tokens remembered (their signatures are not checked again).
const CACHE: usize = 10_000;

/// An allowed request: who made it and under which limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The principal.
    pub principal: String,
    /// The capability used.
    pub capability: String,
    /// The token's id.
    pub token: String,
    /// The reason given for break-glass access, when the token is an emergency token.
    pub emergency: Option<String>,
    /// Labels every resource acted on must carry (empty: any).
    pub scope: BTreeMap<String, String>,
}

impl Decision {
    /// Whether a resource with `labels` is within the scope.
    pub fn covers(&self, labels: &BTreeMap<String, String>) -> bool {
        self.scope.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// A refused request, with whatever is known of who made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Denied {
    /// Why.
    pub reason: Denial,
    /// The principal, when the token could be read.
    pub principal: Option<String>,
    /// The token id, when the token could be read.
    pub token: Option<String>,
}

impl From<Denial> for Denied {
    fn from(reason: Denial) -> Denied {
        Denied {
            reason,
            principal: None,
            token: None,
        }
    }
}

/// A verified token and what its blocks say.
struct Parsed {
    biscuit: Biscuit,
    key: u32,
    principal: String,
    capability: String,
    token: String,
    max_depth: u32,
    delegable: bool,
    usage_key: Option<String>,
    max_uses: Option<u64>,
    rate: Option<(u64, i64)>,
    valid_after_first_use: Option<i64>,
    emergency: Option<String>,
    scope: BTreeMap<String, String>,
    revocation: Vec<String>,
}

/// Server-side use counts of one grant.
#[derive(Debug, Default)]
struct Usage {
    first: Option<DateTime<Utc>>,
    uses: u64,
    window: Option<DateTime<Utc>>,
    in_window: u64,
}

/// Authorizes requests against the key ring and the configured time zones.
pub struct Authorizer {
    keys: RwLock<KeyRing>,
    zones: RwLock<Vec<(String, Tz)>>,
    base: AuthorizerBuilder,
    revoked: RwLock<HashSet<String>>,
    usage: Mutex<HashMap<String, Usage>>,
    cache: Mutex<HashMap<blake3::Hash, Arc<Parsed>>>,
}

impl Authorizer {
    /// An authorizer over `keys`, for the time zones `security`'s schedules use.
    pub fn new(keys: KeyRing, security: &Security) -> Result<Authorizer, CapsError> {
        let zones = RwLock::new(zones(security)?);
        let mut base = AuthorizerBuilder::new().set_limits(limits());
        for p in POLICIES {
            base = base
                .policy(*p)
                .map_err(|e| CapsError::Token(e.to_string()))?;
        }
        Ok(Authorizer {
            keys: RwLock::new(keys),
            zones,
            base,
            revoked: RwLock::default(),
            usage: Mutex::default(),
            cache: Mutex::default(),
        })
    }

    /// Takes the time zones of a new security section.
    pub fn configure(&self, security: &Security) -> Result<(), CapsError> {
        *self.zones.write().expect("zones lock") = zones(security)?;
        Ok(())
    }

    /// The key ring.
    pub fn keys(&self) -> KeyRing {
        self.keys.read().expect("key ring lock").clone()
    }

    /// Replaces the key ring (after a rotation).
    pub fn set_keys(&self, keys: KeyRing) {
        *self.keys.write().expect("key ring lock") = keys;
    }

    /// Refuses every token carrying revocation id `id` (hex) from now on.
    pub fn revoke(&self, id: &str) {
        self.revoked
            .write()
            .expect("revocation lock")
            .insert(id.to_ascii_lowercase());
    }

    /// Authorizes `request` made with `token` at `now`; allowed uses are counted.
    pub fn authorize(
        &self,
        token: Option<&str>,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<Decision, Denied> {
        self.decide(token, request, now, true)
    }

    /// Whether `token` still authorizes `request` at `now` (for sessions already admitted);
    /// nothing is counted.
    pub fn recheck(
        &self,
        token: Option<&str>,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Result<Decision, Denied> {
        self.decide(token, request, now, false)
    }

    fn decide(
        &self,
        token: Option<&str>,
        request: &Request,
        now: DateTime<Utc>,
        count: bool,
    ) -> Result<Decision, Denied> {
        let token = token.ok_or(Denial::Missing)?;
        let parsed = self.parse(token, now)?;
        let who = |reason: Denial| Denied {
            reason,
            principal: Some(parsed.principal.clone()),
            token: Some(parsed.token.clone()),
        };
        let revoked = self.revoked.read().expect("revocation lock");
        if let Some(id) = parsed.revocation.iter().find(|id| revoked.contains(*id)) {
            return Err(who(Denial::Revoked(id.clone())));
        }
        drop(revoked);
        let depth = parsed.biscuit.block_count() - 1;
        if depth > 0 && !parsed.delegable {
            return Err(who(Denial::DelegationNotAllowed(parsed.capability.clone())));
        }
        if depth > parsed.max_depth as usize {
            return Err(who(Denial::DelegationDepth {
                capability: parsed.capability.clone(),
                depth,
                max: parsed.max_depth,
            }));
        }
        self.run(&parsed, request, now).map_err(who)?;
        if let Some((name, labels)) = &request.target {
            let d = self.decision(&parsed);
            if !d.covers(labels) {
                return Err(who(Denial::Scope {
                    resource: name.clone(),
                    scope: labels_text(&d.scope),
                }));
            }
        }
        if count {
            self.count(&parsed, now).map_err(who)?;
        }
        Ok(self.decision(&parsed))
    }

    fn decision(&self, p: &Parsed) -> Decision {
        Decision {
            principal: p.principal.clone(),
            capability: p.capability.clone(),
            token: p.token.clone(),
            emergency: p.emergency.clone(),
            scope: p.scope.clone(),
        }
    }

    /// Verifies and reads `token`, from the cache when it was seen before.
    fn parse(&self, token: &str, now: DateTime<Utc>) -> Result<Arc<Parsed>, Denied> {
        let token = token.trim();
        let hash = blake3::hash(token.as_bytes());
        let keys = self.keys.read().expect("key ring lock");
        if let Some(p) = self.cache.lock().expect("token cache lock").get(&hash)
            && keys.public(p.key, now).is_some()
        {
            return Ok(p.clone());
        }
        let biscuit = Biscuit::from_base64(token, keys.provider(now)).map_err(|e| match e {
            TokenError::Format(biscuit_auth::error::Format::UnknownPublicKey) => {
                let id = biscuit_auth::UnverifiedBiscuit::from_base64(token)
                    .ok()
                    .and_then(|t| t.root_key_id())
                    .map_or("(none)".to_string(), |id| id.to_string());
                Denial::UnknownKey(id)
            }
            other => Denial::Malformed(other.to_string()),
        })?;
        let key = biscuit.root_key_id().unwrap_or(0);
        drop(keys);
        let parsed = Arc::new(read_facts(biscuit, key).map_err(Denial::Malformed)?);
        let mut cache = self.cache.lock().expect("token cache lock");
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.insert(hash, parsed.clone());
        Ok(parsed)
    }

    /// Runs the token's checks and the policies with the request's facts.
    fn run(&self, p: &Parsed, request: &Request, now: DateTime<Utc>) -> Result<(), Denial> {
        let t = std::time::SystemTime::from(now);
        let mut b = self
            .base
            .clone()
            .fact(fact("time", &[date(&t)]))
            .and_then(|b| b.fact(fact("operation", &[string(&request.operation)])))
            .and_then(|b| {
                b.fact(fact(
                    "request",
                    &[string(request.access.kind), string(request.access.action)],
                ))
            })
            .and_then(|b| b.fact(fact("units", &[int(request.units as i64)])))
            .map_err(|e| Denial::Malformed(e.to_string()))?;
        for (name, tz) in self.zones.read().expect("zones lock").iter() {
            let (day, minute) = schedule::local_time(*tz, now);
            b = b
                .fact(fact(
                    "local_time",
                    &[string(name), string(day), int(minute)],
                ))
                .map_err(|e| Denial::Malformed(e.to_string()))?;
        }
        let mut a = b
            .build(&p.biscuit)
            .map_err(|e| Denial::Malformed(e.to_string()))?;
        match a.authorize() {
            Ok(_) => Ok(()),
            Err(TokenError::FailedLogic(Logic::Unauthorized { checks, .. }))
            | Err(TokenError::FailedLogic(Logic::NoMatchingPolicy { checks })) => {
                Err(classify(&checks, request))
            }
            Err(e) => Err(Denial::Malformed(e.to_string())),
        }
    }

    /// Counts one use of the token's grant, refusing it past `maxUses`, the rate limit, or
    /// the validity after first use.
    fn count(&self, p: &Parsed, now: DateTime<Utc>) -> Result<(), Denial> {
        let Some(key) = &p.usage_key else {
            return Ok(());
        };
        let mut all = self.usage.lock().expect("usage lock");
        let u = all.entry(key.clone()).or_default();
        let first = *u.first.get_or_insert(now);
        if let Some(secs) = p.valid_after_first_use
            && now >= first + chrono::Duration::seconds(secs)
        {
            return Err(Denial::Expired);
        }
        if let Some(max) = p.max_uses
            && u.uses >= max
        {
            return Err(Denial::Usage(format!("all {max} uses (maxUses) are spent")));
        }
        if let Some((requests, window_ms)) = p.rate {
            let window = chrono::Duration::milliseconds(window_ms);
            match u.window {
                Some(start) if now < start + window => {}
                _ => {
                    u.window = Some(now);
                    u.in_window = 0;
                }
            }
            if u.in_window >= requests {
                return Err(Denial::Usage(format!(
                    "{requests} requests per {}s (rateLimit); try again later",
                    window.num_seconds()
                )));
            }
            u.in_window += 1;
        }
        u.uses += 1;
        Ok(())
    }
}

/// Datalog limits: biscuit's default of 1 ms is shorter than a scheduling hiccup on a busy
/// host, which would refuse good tokens; facts and iterations stay at the defaults.
fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_time: std::time::Duration::from_millis(100),
        ..AuthorizerLimits::default()
    }
}

/// UTC and every time zone the schedules of `security` use.
fn zones(security: &Security) -> Result<Vec<(String, Tz)>, CapsError> {
    let mut zones: Vec<(String, Tz)> = vec![("UTC".into(), Tz::UTC)];
    for p in security.principals.values() {
        for g in &p.grants {
            if let Some(s) = &g.temporal.schedule
                && !zones.iter().any(|z| z.0 == s.timezone)
            {
                zones.push((s.timezone.clone(), schedule::zone(&s.timezone)?));
            }
        }
    }
    Ok(zones)
}

/// Names the reason of the first failed check, else the missing right.
fn classify(checks: &[FailedCheck], request: &Request) -> Denial {
    let rule = checks.first().map(|c| match c {
        FailedCheck::Block(b) => b.rule.as_str(),
        FailedCheck::Authorizer(a) => a.rule.as_str(),
    });
    match rule {
        Some(r) if r.contains("local_time(") => outside_schedule(r),
        Some(r) if r.contains("$t >=") => Denial::NotYetValid,
        Some(r) if r.contains("$t <") => Denial::Expired,
        Some(r) if r.contains("units(") => Denial::MaxUnits {
            units: request.units,
        },
        Some(r) if r.contains("operation(") => Denial::NotAllowed(format!(
            "{} (the token was narrowed to other operations)",
            request.operation
        )),
        Some(r) => Denial::NotAllowed(format!("{} (check failed: {r})", request.operation)),
        None => Denial::NotAllowed(format!(
            "{} (needs {} {} rights)",
            request.operation, request.access.kind, request.access.action
        )),
    }
}

fn outside_schedule(rule: &str) -> Denial {
    let zone = rule
        .split("local_time(\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or("UTC");
    Denial::OutsideSchedule(format!("time zone {zone}"))
}

fn labels_text(l: &BTreeMap<String, String>) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the authority facts (trusted) and the scope labels of every block.
fn read_facts(biscuit: Biscuit, key: u32) -> Result<Parsed, String> {
    let e = |e: TokenError| e.to_string();
    let mut a = AuthorizerBuilder::new()
        .set_limits(limits())
        .build(&biscuit)
        .map_err(e)?;
    let one = |a: &mut biscuit_auth::Authorizer, rule: &str| -> Result<Option<String>, String> {
        let v: Vec<(String,)> = a.query(rule).map_err(e)?;
        Ok(v.into_iter().next().map(|t| t.0))
    };
    let int1 = |a: &mut biscuit_auth::Authorizer, rule: &str| -> Result<Option<i64>, String> {
        let v: Vec<(i64,)> = a.query(rule).map_err(e)?;
        Ok(v.into_iter().next().map(|t| t.0))
    };
    let principal = one(&mut a, "data($p) <- principal($p)")?.ok_or("no principal fact")?;
    let capability = one(&mut a, "data($c) <- capability($c)")?.unwrap_or_default();
    let token = one(&mut a, "data($t) <- token($t)")?.ok_or("no token fact")?;
    let usage_key = one(&mut a, "data($k) <- usage_key($k)")?;
    let emergency = one(&mut a, "data($r) <- emergency($r)")?;
    let max_depth = int1(&mut a, "data($n) <- max_depth($n)")?.unwrap_or(0);
    let delegable: Vec<(bool,)> = a.query("data($d) <- delegable($d)").map_err(e)?;
    let max_uses = int1(&mut a, "data($n) <- max_uses($n)")?;
    let valid_after_first_use = int1(&mut a, "data($n) <- valid_after_first_use($n)")?;
    let rate: Vec<(i64, i64)> = a.query("data($r, $w) <- rate_limit($r, $w)").map_err(e)?;
    let scope: Vec<(String, String)> = a.query_all("data($k, $v) <- scope($k, $v)").map_err(e)?;
    Ok(Parsed {
        key,
        principal,
        capability,
        token,
        max_depth: u32::try_from(max_depth).unwrap_or(0),
        delegable: delegable.first().is_some_and(|d| d.0),
        usage_key,
        max_uses: max_uses.map(|n| n.max(0) as u64),
        rate: rate.first().map(|r| (r.0.max(0) as u64, r.1)),
        valid_after_first_use,
        emergency,
        scope: scope.into_iter().collect(),
        revocation: revocation_ids(&biscuit.revocation_identifiers()),
        biscuit,
    })
}
