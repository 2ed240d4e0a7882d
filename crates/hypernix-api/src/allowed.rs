//! What a token may do: `allowed` answers, for each operation a client might offer, whether
//! the caller's token would be allowed it now, without performing it (the web console
//! offers only those actions), and `unitConfig` gives a unit's resolved settings with the
//! layer each value came from.

use std::collections::HashMap;

use async_graphql::parser::types::OperationType;
use async_graphql::{Context, Enum, InputObject, Json, Object, SimpleObject};
use hypernix_caps::Decision;
use hypernix_compute::provenance::Source;
use serde_json::{Map, Value};

use crate::auth::{Credential, request_for};
use crate::schema::{daemon, gql};

/// The type of an operation's root field.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum FieldType {
    /// A query field.
    Query,
    /// A mutation field.
    Mutation,
    /// A subscription field.
    Subscription,
}

/// A root field and its arguments, as a client would send them.
#[derive(InputObject, Clone, Debug)]
pub struct OperationCheck {
    /// Whether the field is a query, mutation or subscription field.
    #[graphql(name = "type")]
    pub ty: FieldType,
    /// The root field, such as `controlComputeUnit`.
    pub field: String,
    /// Its arguments (those naming a unit or an action decide), such as
    /// `{"name": "web", "action": "STOP"}`.
    pub args: Option<Json<Value>>,
}

/// One resolved setting of a unit and the layer that set it.
#[derive(SimpleObject, Clone, Debug)]
pub struct ConfigField {
    /// The field's path inside the unit, such as `resources.memory.size`.
    pub path: String,
    /// Its resolved value.
    pub value: Json<Value>,
    /// Where it came from: `default`, `unit`, `policy NAME`, `tag NAME (priority N)`, ...
    pub source: String,
}

/// What a token may do, and units' resolved settings.
#[derive(Default)]
pub struct AllowedQuery;

#[Object]
impl AllowedQuery {
    /// For each check, whether the caller's token would be allowed that root field with
    /// those arguments now; nothing is performed, counted or audited (only this query is).
    /// A field without a capability rule is never allowed.
    async fn allowed(
        &self,
        ctx: &Context<'_>,
        checks: Vec<OperationCheck>,
    ) -> async_graphql::Result<Vec<bool>> {
        let d = daemon(ctx)?;
        let token = ctx.data_opt::<Credential>().and_then(Credential::token);
        // The guard runs the token's checks on the operation, right and unit count (not the
        // target), then tests the target's labels against the token's scope: one run per
        // operation serves every unit, and each unit costs only the scope test.
        let mut runs: HashMap<(String, &str, &str, u64), Option<Decision>> = HashMap::new();
        Ok(checks
            .into_iter()
            .map(|c| {
                let args = match c.args.map(|a| a.0) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                let ty = match c.ty {
                    FieldType::Query => OperationType::Query,
                    FieldType::Mutation => OperationType::Mutation,
                    FieldType::Subscription => OperationType::Subscription,
                };
                let Some(mut request) = request_for(d, ty, &c.field, &args) else {
                    return false;
                };
                let target = request.target.take();
                let a = request.access;
                let key = (request.operation.clone(), a.kind, a.action, request.units);
                let decision = runs
                    .entry(key)
                    .or_insert_with(|| d.guard().would_allow(token, &request));
                match (decision, target) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(decision), Some((_, labels))) => decision.covers(&labels),
                }
            })
            .collect())
    }

    /// A unit's resolved settings as the applied configuration gives them, each with the
    /// layer that set it (as `hypernix config explain` shows).
    async fn unit_config(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Vec<ConfigField>> {
        let config = daemon(ctx)?.applied_config().map_err(gql)?;
        let unit = hypernix_compute::resolve::resolve_unit(&config, &name)
            .map_err(|errors| format!("unit {name}: {}", list(&errors)))?;
        let mut leaves = std::collections::BTreeMap::new();
        let settings = serde_json::to_value(&unit.settings)?;
        hypernix_compute::plan::flatten("", &settings, &mut leaves);
        Ok(leaves
            .into_iter()
            .map(|(path, value)| {
                let source: Source = unit.source_of(&path);
                ConfigField {
                    source: source.to_string(),
                    path,
                    value: Json(value),
                }
            })
            .collect())
    }
}

fn list(errors: &[impl ToString]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
