//! Capability mutations: issue and revoke tokens, and break-glass access.

use async_graphql::{Context, Object, SimpleObject};
use hypernix_events::NewEvent;
use serde_json::json;

use crate::auth::Credential;
use crate::schema::{daemon, gql};

/// A token as issued.
#[derive(Debug, Clone, SimpleObject)]
pub struct IssuedToken {
    /// The token (base64url), to pass as `Authorization: Bearer TOKEN`.
    pub token: String,
    /// Its id.
    pub id: String,
    /// Its principal.
    pub principal: String,
    /// Revocation ids, one per block (hex).
    pub revocation_ids: Vec<String>,
}

impl From<hypernix_caps::Issued> for IssuedToken {
    fn from(i: hypernix_caps::Issued) -> Self {
        IssuedToken {
            token: i.token,
            id: i.id,
            principal: i.principal,
            revocation_ids: i.revocation_ids,
        }
    }
}

fn caps_error(e: hypernix_caps::CapsError) -> async_graphql::Error {
    async_graphql::Error::new(e.to_string())
}

/// Token issuance, revocation and emergency access.
#[derive(Default)]
pub struct CapsMutation;

#[Object]
impl CapsMutation {
    /// Issues a token for a principal's grant (of `capability`, when it has several).
    async fn issue_token(
        &self,
        ctx: &Context<'_>,
        principal: String,
        capability: Option<String>,
    ) -> async_graphql::Result<IssuedToken> {
        daemon(ctx)?
            .guard()
            .issue(&principal, capability.as_deref())
            .map(Into::into)
            .map_err(caps_error)
    }

    /// Revokes every token carrying `revocationId` (a block's id, hex; revoking the first
    /// block's id revokes the token and all its attenuations).
    async fn revoke_token(
        &self,
        ctx: &Context<'_>,
        revocation_id: String,
    ) -> async_graphql::Result<bool> {
        if revocation_id.is_empty() || !revocation_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "revocationId: expected a hex revocation id, as `hypernix caps inspect` prints"
                    .into(),
            );
        }
        daemon(ctx)?
            .revoke_token(&revocation_id)
            .await
            .map_err(gql)?;
        Ok(true)
    }

    /// Makes a new root key; tokens signed by the old one stay valid for `graceSeconds`.
    /// Returns the new key's id. The daemon's root credential is reissued with it.
    async fn rotate_root_key(
        &self,
        ctx: &Context<'_>,
        grace_seconds: u32,
    ) -> async_graphql::Result<u32> {
        let d = daemon(ctx)?;
        d.rotate_root_key(chrono::Duration::seconds(i64::from(grace_seconds)))
            .await
            .map_err(gql)
    }

    /// Grants emergency access to the holder of a break-glass grant, for a short fixed
    /// time; raises a `security.alert` event naming the reason.
    async fn break_glass(
        &self,
        ctx: &Context<'_>,
        reason: String,
    ) -> async_graphql::Result<IssuedToken> {
        if reason.trim().is_empty() {
            return Err("reason: say why emergency access is needed".into());
        }
        let d = daemon(ctx)?;
        let decision = ctx
            .data::<Credential>()?
            .decision()
            .ok_or("breakGlass: the request was not authorized")?;
        let issued = d
            .guard()
            .break_glass(&decision, &reason)
            .map_err(caps_error)?;
        let notify = d.guard().notification_list(&decision);
        let mut event = NewEvent::new(
            "security.alert",
            format!("principal/{}", decision.principal),
        );
        event.payload = json!({
            "alert": "break-glass",
            "principal": decision.principal,
            "capability": decision.capability,
            "reason": reason,
            "token": issued.id,
            "notify": notify,
        });
        d.publish(event).await.map_err(crate::schema::gql)?;
        Ok(issued.into())
    }
}
