//! The daemon's guard: the authorizer over its key ring, the audit log every decision goes
//! to, revocations kept in the state store, token issuance and break-glass access.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use hypernix_caps::authorize::Denied;
use hypernix_caps::token::{self, Issued};
use hypernix_caps::{AuditLog, AuditRecord, Authorizer, CapsError, Decision, KeyRing, Request};
use hypernix_config::schema::security::Security;
use hypernix_state::{Op, RedbStore, StateStore, Table};
use serde_json::Value;

use crate::layout::Layout;

const REVOKED_KEY: &str = "caps.revoked";

/// Authorizes and audits every request the daemon serves.
pub struct Guard {
    authorizer: Authorizer,
    audit: AuditLog,
    store: Arc<RedbStore>,
    /// The applied configuration's security section.
    security: RwLock<Security>,
}

impl Guard {
    /// Opens the key ring (made on first start), writes a fresh root credential, opens the
    /// audit log and loads the revocations.
    pub fn open(
        layout: &Layout,
        store: Arc<RedbStore>,
        security: &Security,
    ) -> Result<Guard, CapsError> {
        let keys = KeyRing::open_or_init(&layout.caps())?;
        let root = token::root(&keys, Utc::now())?;
        hypernix_caps::keys::write_private(&layout.root_token(), root.token.as_bytes())?;
        let audit = AuditLog::open(&layout.audit_log(), &keys)?;
        let authorizer = Authorizer::new(keys, security)?;
        let guard = Guard {
            authorizer,
            audit,
            store,
            security: RwLock::new(security.clone()),
        };
        for id in guard.revoked() {
            guard.authorizer.revoke(&id);
        }
        Ok(guard)
    }

    /// Takes a newly applied security section.
    pub fn configure(&self, security: &Security) -> Result<(), CapsError> {
        self.authorizer.configure(security)?;
        *self.security.write().expect("security lock") = security.clone();
        Ok(())
    }

    /// How often a long-lived session is fully re-authorized (`None`: continuous
    /// verification is off).
    pub fn reverify_interval(&self) -> Option<std::time::Duration> {
        let s = self.security.read().expect("security lock");
        let c = &s.zero_trust.continuous;
        c.verification.then(|| c.interval.std())
    }

    /// Who is told when `decision`'s grant breaks glass (`emergency.notificationList`).
    pub fn notification_list(&self, decision: &Decision) -> Vec<String> {
        let s = self.security.read().expect("security lock");
        s.principals
            .get(&decision.principal)
            .and_then(|p| {
                p.grants
                    .iter()
                    .find(|g| g.capability == decision.capability)
            })
            .map(|g| g.emergency.notification_list.clone())
            .unwrap_or_default()
    }

    /// Authorizes `request` made with `token` now, and audits the decision.
    pub fn authorize(&self, token: Option<&str>, request: &Request) -> Result<Decision, Denied> {
        let result = self.authorizer.authorize(token, request, Utc::now());
        let (principal, token_id, allowed, reason) = match &result {
            Ok(d) => (
                d.principal.clone(),
                Some(d.token.clone()),
                true,
                d.emergency.clone().map(|r| format!("break-glass: {r}")),
            ),
            Err(d) => (
                d.principal.clone().unwrap_or_else(|| "-".into()),
                d.token.clone(),
                false,
                Some(d.reason.to_string()),
            ),
        };
        self.audit.append(AuditRecord {
            time: Utc::now(),
            principal,
            token: token_id,
            operation: request.operation.clone(),
            resource: request.target.as_ref().map(|t| t.0.clone()),
            allowed,
            reason,
        });
        result
    }

    /// The decision `token` would get for `request` now, if allowed; nothing is counted or
    /// audited (for a client asking which actions to offer).
    pub fn would_allow(&self, token: Option<&str>, request: &Request) -> Option<Decision> {
        self.authorizer.recheck(token, request, Utc::now()).ok()
    }

    /// Whether `token` still authorizes `request` (a session already admitted); a refusal
    /// is audited, a pass is not.
    pub fn recheck(&self, token: Option<&str>, request: &Request) -> Result<(), Denied> {
        match self.authorizer.recheck(token, request, Utc::now()) {
            Ok(_) => Ok(()),
            Err(d) => {
                self.audit.append(AuditRecord {
                    time: Utc::now(),
                    principal: d.principal.clone().unwrap_or_else(|| "-".into()),
                    token: d.token.clone(),
                    operation: request.operation.clone(),
                    resource: request.target.as_ref().map(|t| t.0.clone()),
                    allowed: false,
                    reason: Some(format!("session closed: {}", d.reason)),
                });
                Err(d)
            }
        }
    }

    /// Issues a token for `principal`'s grant (of `capability`, when it has several).
    pub fn issue(&self, principal: &str, capability: Option<&str>) -> Result<Issued, CapsError> {
        let security = self.security.read().expect("security lock");
        token::issue(
            &self.authorizer.keys(),
            &security,
            principal,
            capability,
            Utc::now(),
        )
    }

    /// Issues the emergency token for a break-glass grant holder.
    pub fn break_glass(&self, decision: &Decision, reason: &str) -> Result<Issued, CapsError> {
        let security = self.security.read().expect("security lock");
        token::emergency(
            &self.authorizer.keys(),
            &security,
            &decision.principal,
            &decision.capability,
            reason,
            Utc::now(),
        )
    }

    /// Makes a new root key (tokens of the old one stay valid for `grace`) and rewrites
    /// the root credential with it; returns the new key id.
    pub fn rotate(&self, layout: &Layout, grace: chrono::Duration) -> Result<u32, CapsError> {
        let mut keys = self.authorizer.keys();
        let id = keys.rotate(grace)?;
        let root = token::root(&keys, Utc::now())?;
        hypernix_caps::keys::write_private(&layout.root_token(), root.token.as_bytes())?;
        self.authorizer.set_keys(keys);
        Ok(id)
    }

    /// The key ring's files (`keyring.json`, `root-N.key`) by name, as a cluster replicates them.
    pub fn key_files(&self, layout: &Layout) -> Result<BTreeMap<String, String>, CapsError> {
        let dir = layout.caps();
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(CapsError::io(&dir))? {
            let entry = entry.map_err(CapsError::io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "keyring.json" || (name.starts_with("root-") && name.ends_with(".key")) {
                let path = entry.path();
                let text = std::fs::read_to_string(&path).map_err(CapsError::io(&path))?;
                files.insert(name, text);
            }
        }
        Ok(files)
    }

    /// Takes a cluster's key ring: writes its files, signs with it from now on and
    /// reissues the root credential.
    pub fn adopt_keys(
        &self,
        layout: &Layout,
        files: &BTreeMap<String, String>,
    ) -> Result<(), CapsError> {
        write_key_files(layout, files)?;
        let dir = layout.caps();
        let keys = KeyRing::open(&dir)?;
        let root = token::root(&keys, Utc::now())?;
        hypernix_caps::keys::write_private(&layout.root_token(), root.token.as_bytes())?;
        self.authorizer.set_keys(keys);
        Ok(())
    }

    /// Whether revocation id `id` is revoked here.
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked().contains(&id.to_ascii_lowercase())
    }

    /// Revokes a revocation id (hex), durably.
    pub fn revoke(&self, id: &str) -> Result<(), hypernix_state::StateError> {
        let mut ids = self.revoked();
        let id = id.to_ascii_lowercase();
        if !ids.contains(&id) {
            ids.push(id.clone());
        }
        self.store
            .transact(vec![Op::put(Table::Meta, REVOKED_KEY, Value::from(ids))])?;
        self.authorizer.revoke(&id);
        Ok(())
    }

    fn revoked(&self) -> Vec<String> {
        match self.store.get(Table::Meta, REVOKED_KEY) {
            Ok(Some(Value::Array(ids))) => ids
                .into_iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Writes a cluster's key ring files into `STATE/caps` (0600), refusing any name that is
/// not `keyring.json` or `root-N.key`.
pub fn write_key_files(layout: &Layout, files: &BTreeMap<String, String>) -> Result<(), CapsError> {
    let dir = layout.caps();
    std::fs::create_dir_all(&dir).map_err(CapsError::io(&dir))?;
    for (name, text) in files {
        let valid = name == "keyring.json"
            || (name.starts_with("root-")
                && name.ends_with(".key")
                && !name.contains('/')
                && name.len() < 32);
        if !valid {
            return Err(CapsError::KeyRing {
                path: dir.join(name),
                message: "not a key ring file name".into(),
            });
        }
        hypernix_caps::keys::write_private(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}
