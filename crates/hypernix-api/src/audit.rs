//! The audit log: every authorization decision the guard made, newest first.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::schema::daemon;

/// One decision of the guard.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuditEntry {
    /// Its sequence number in the log.
    pub seq: u64,
    /// When it was made.
    pub time: DateTime<Utc>,
    /// Who asked (`-` when the token could not be read).
    pub principal: String,
    /// The token id, when known.
    pub token: Option<String>,
    /// The operation, such as `unit.stop`.
    pub operation: String,
    /// The resource acted on, such as `unit/web`.
    pub resource: Option<String>,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Why it was denied, or the break-glass reason of an emergency token.
    pub reason: Option<String>,
}

/// Reading the audit log.
#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The latest `limit` records of the audit log (as written to disk so far), newest
    /// first.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 200)] limit: usize,
    ) -> async_graphql::Result<Vec<AuditEntry>> {
        let path = daemon(ctx)?.layout().audit_log();
        let records = tokio::task::spawn_blocking(move || hypernix_caps::audit::records(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .rev()
            .take(limit.min(10_000))
            .map(|(seq, r)| AuditEntry {
                seq,
                time: r.time,
                principal: r.principal,
                token: r.token,
                operation: r.operation,
                resource: r.resource,
                allowed: r.allowed,
                reason: r.reason,
            })
            .collect())
    }
}
