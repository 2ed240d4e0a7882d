//! Authorization of every GraphQL operation: each root field of a document maps to a
//! capability request (operation name, right, target unit) that the daemon's guard decides
//! and audits before anything runs; subscriptions are re-checked every second and closed
//! when their token expires or is revoked, and fully re-authorized every
//! `security.zeroTrust.continuous.interval`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextSubscribe,
};
use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{
    ErrorExtensionValues, Name, Positioned, Response, ServerError, ServerResult, Variables,
};
use async_graphql_value::Value;
use futures::StreamExt;
use futures::stream::BoxStream;
use hypernix_caps::{Access, Decision, Denial, Request};
use hypernix_daemon::Daemon;

/// The caller's token and, once a request is authorized, the decision (which scopes lists).
#[derive(Debug, Default)]
pub struct Credential {
    token: Option<String>,
    decision: Mutex<Option<Decision>>,
}

impl Credential {
    /// A credential carrying `token`.
    pub fn new(token: Option<String>) -> Credential {
        Credential {
            token,
            decision: Mutex::default(),
        }
    }

    /// The token from an `Authorization: Bearer TOKEN` header value.
    pub fn from_header(value: Option<&str>) -> Credential {
        Credential::new(
            value
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|t| t.trim().to_string()),
        )
    }

    /// The token, if one was sent.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The decision of the request's last authorized field.
    pub fn decision(&self) -> Option<Decision> {
        self.decision.lock().expect("credential lock").clone()
    }
}

/// The unit a field acts on.
#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    /// The unit named by this argument (if given).
    Unit(&'static str),
    /// A new unit: its name and the labels of its settings.
    NewUnit,
}

/// What a root field needs.
struct Rule {
    operation: &'static str,
    access: Access,
    target: Target,
}

const fn rule(
    operation: &'static str,
    kind: &'static str,
    action: &'static str,
    target: Target,
) -> Rule {
    Rule {
        operation,
        access: Access::new(kind, action),
        target,
    }
}

/// The rule of each root field; a field without one is refused.
fn rule_for(ty: OperationType, field: &str) -> Option<Rule> {
    use OperationType::*;
    use Target::{NewUnit, Unit};
    let none = Target::None;
    Some(match (ty, field) {
        (Query, "health") => rule("health", "any", "read", none),
        (Query, "computeUnits") => rule("unit.list", "compute", "read", none),
        (Query, "computeUnit") => rule("unit.get", "compute", "read", Unit("name")),
        (Query, "consoleLog") => rule("unit.console", "compute", "console", Unit("name")),
        (Query, "tags") => rule("tag.list", "compute", "read", none),
        (Query, "policies") => rule("policy.list", "compute", "read", none),
        (Query, "config") => rule("config.get", "cluster", "read", none),
        (Query, "plan") => rule("config.plan", "cluster", "read", none),
        (Query, "jobs") => rule("job.list", "any", "read", none),
        (Query, "events") => rule("event.list", "any", "read", none),
        (Query, "storageTiers") => rule("storage.tiers", "storage", "read", none),
        (Query, "volumes") => rule("volume.list", "storage", "read", none),
        (Query, "volume") => rule("volume.get", "storage", "read", none),
        (Query, "heatMap") => rule("volume.heatMap", "storage", "read", none),
        (Query, "backupSnapshots") => rule("backup.list", "storage", "read", none),
        (Mutation, "applyConfig") => rule("config.apply", "cluster", "configure", none),
        (Mutation, "createComputeUnit") => rule("unit.create", "compute", "create", NewUnit),
        (Mutation, "updateComputeUnit") => rule("unit.update", "compute", "modify", Unit("name")),
        (Mutation, "deleteComputeUnit") => rule("unit.delete", "compute", "delete", Unit("name")),
        (Mutation, "controlComputeUnit") => {
            rule("unit.control", "compute", "control", Unit("name"))
        }
        (Mutation, "shutdown") => rule("daemon.shutdown", "cluster", "configure", none),
        (Mutation, "issueToken") => rule("caps.issue", "cluster", "configure", none),
        (Mutation, "revokeToken") => rule("caps.revoke", "cluster", "configure", none),
        (Mutation, "rotateRootKey") => rule("caps.rotate", "cluster", "configure", none),
        (Mutation, "breakGlass") => rule("caps.breakGlass", "emergency", "request", none),
        (Mutation, "rebalanceStorage") => rule("storage.rebalance", "storage", "allocate", none),
        (Mutation, "deleteVolume") => rule("volume.delete", "storage", "allocate", none),
        (Subscription, "dataMovement") => rule("storage.watch", "storage", "read", none),
        (Mutation, "backupRun") => rule("backup.run", "storage", "snapshot", none),
        (Subscription, "backupProgress") => rule("backup.watch", "storage", "read", none),
        (Subscription, "backupCompleted") => rule("backup.watch", "storage", "read", none),
        (Subscription, "events") => rule("event.watch", "any", "read", none),
        (Query, "metrics") => rule("monitor.metrics", "any", "read", none),
        (Query, "alerts") => rule("monitor.alerts", "any", "read", none),
        (Query, "whyAlert") => rule("monitor.why", "any", "read", none),
        (Query, "capacity") => rule("monitor.capacity", "any", "read", none),
        (Subscription, "anomalies") => rule("monitor.watch", "any", "read", none),
        (Subscription, "alerts") => rule("monitor.watch", "any", "read", none),
        (Subscription, "computeUnitStateChanged") => {
            rule("unit.watch", "compute", "read", Unit("name"))
        }
        (Query, "meshStatus") => rule("mesh.status", "cluster", "read", none),
        (Query, "allowed") => rule("auth.allowed", "any", "read", none),
        (Query, "unitConfig") => rule("unit.config", "compute", "read", Unit("name")),
        (Query, "auditLog") => rule("audit.list", "cluster", "read", none),
        (Mutation, "meshJoinToken") => rule("mesh.token", "cluster", "join", none),
        (Mutation, "meshLeave") => rule("mesh.leave", "cluster", "configure", none),
        (Subscription, "migrationProgress") => rule("unit.watch", "compute", "read", none),
        (Mutation, "migrateUnit") => rule("unit.migrate", "cluster", "schedule", Unit("name")),
        (Mutation, "acceptMigration") => rule("unit.migrate", "cluster", "schedule", Unit("name")),
        (Mutation, "finishMigration") => rule("unit.migrate", "cluster", "schedule", Unit("name")),
        (Subscription, "meshTopologyChanged") => rule("mesh.watch", "cluster", "read", none),
        (Subscription, "consensusStateChanged") => rule("mesh.watch", "cluster", "read", none),
        (Subscription, "nodeStatusChanged") => rule("mesh.watch", "cluster", "read", none),
        (Subscription, "jobProgress") => rule("job.watch", "any", "read", none),
        (Subscription, "computeUnitUpdated") => rule("unit.watch", "compute", "read", Unit("name")),
        _ => return None,
    })
}

/// Installs the guard on a schema.
pub struct Guarded;

impl ExtensionFactory for Guarded {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardExtension::default())
    }
}

/// One request's guard: remembers what it authorized, to re-check subscriptions.
#[derive(Default)]
struct GuardExtension {
    /// Shared with the subscription's watcher: the hook that wraps the stream runs before
    /// the document is parsed.
    granted: Arc<Mutex<Vec<Request>>>,
}

/// A refusal: code `FORBIDDEN`, and the denial's short `reason` (e.g. `expired`) when known.
fn forbidden(message: String, reason: Option<&Denial>) -> ServerError {
    let mut e = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", "FORBIDDEN");
    if let Some(r) = reason {
        ext.set("reason", r.code());
    }
    e.extensions = Some(ext);
    e
}

#[async_graphql::async_trait::async_trait]
impl Extension for GuardExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let Some(daemon) = ctx.data_opt::<Arc<Daemon>>() else {
            return Ok(doc);
        };
        let credential = ctx.data_opt::<Credential>();
        let token = credential.and_then(|c| c.token.as_deref());
        for (_, op) in doc.operations.iter() {
            let mut fields = Vec::new();
            root_fields(&op.node.selection_set.node, &doc.fragments, &mut fields);
            for (name, args) in fields {
                if name.starts_with("__") {
                    continue;
                }
                let Some(rule) = rule_for(op.node.ty, name) else {
                    return Err(forbidden(
                        format!("{name}: no capability rule covers this field; it is refused"),
                        None,
                    ));
                };
                let request = request(daemon, &rule, args, variables);
                match daemon.guard().authorize(token, &request) {
                    Ok(d) => {
                        if let Some(c) = credential {
                            *c.decision.lock().expect("credential lock") = Some(d);
                        }
                        self.granted.lock().expect("granted lock").push(request);
                    }
                    Err(denied) => {
                        return Err(forbidden(
                            format!("{name}: {}", denied.reason),
                            Some(&denied.reason),
                        ));
                    }
                }
            }
        }
        Ok(doc)
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let stream = next.run(ctx, stream);
        let Some(daemon) = ctx.data_opt::<Arc<Daemon>>().cloned() else {
            return stream;
        };
        let token = ctx.data_opt::<Credential>().and_then(|c| c.token.clone());
        let requests = self.granted.clone();
        let interval = daemon.guard().reverify_interval();
        let reason = Arc::new(Mutex::new(None::<Denial>));
        let watch = watch(daemon, token, requests, interval, reason.clone());
        let closing =
            futures::stream::once(async move { reason.lock().expect("reason lock").take() })
                .filter_map(|r| async move {
                    r.map(|r| {
                        let message = format!("subscription closed: {r}");
                        Response::from_errors(vec![forbidden(message, Some(&r))])
                    })
                });
        stream.take_until(watch).chain(closing).boxed()
    }
}

/// Resolves when the session's token no longer authorizes its requests: checked every
/// second (expiry, revocation), fully re-authorized and audited every `interval`.
async fn watch(
    daemon: Arc<Daemon>,
    token: Option<String>,
    requests: Arc<Mutex<Vec<Request>>>,
    interval: Option<Duration>,
    reason: Arc<Mutex<Option<Denial>>>,
) {
    let started = tokio::time::Instant::now();
    let mut last_full = started;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let full = interval.is_some_and(|i| last_full.elapsed() >= i);
        if full {
            last_full = tokio::time::Instant::now();
        }
        let requests = requests.lock().expect("granted lock").clone();
        for r in &requests {
            let result = if full {
                daemon.guard().authorize(token.as_deref(), r).map(|_| ())
            } else {
                daemon.guard().recheck(token.as_deref(), r)
            };
            if let Err(denied) = result {
                *reason.lock().expect("reason lock") = Some(denied.reason);
                return;
            }
        }
    }
}

/// A field's argument: its name and value.
type Arg = (Positioned<Name>, Positioned<Value>);

/// The root fields of a selection set, through fragments, with their arguments.
fn root_fields<'a>(
    set: &'a SelectionSet,
    fragments: &'a std::collections::HashMap<Name, Positioned<FragmentDefinition>>,
    out: &mut Vec<(&'a str, &'a [Arg])>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                out.push((f.node.name.node.as_str(), f.node.arguments.as_slice()))
            }
            Selection::InlineFragment(i) => root_fields(&i.node.selection_set.node, fragments, out),
            Selection::FragmentSpread(s) => {
                if let Some(f) = fragments.get(&s.node.fragment_name.node) {
                    root_fields(&f.node.selection_set.node, fragments, out);
                }
            }
        }
    }
}

/// An argument's value as JSON, with variables substituted.
fn arg(args: &[Arg], name: &str, variables: &Variables) -> Option<serde_json::Value> {
    let v = args.iter().find(|(n, _)| n.node.as_str() == name)?;
    v.1.node
        .clone()
        .into_const_with(|var| variables.get(&var).cloned().ok_or(()))
        .ok()?
        .into_json()
        .ok()
}

/// The capability request of a root field.
fn request(daemon: &Daemon, rule: &Rule, args: &[Arg], variables: &Variables) -> Request {
    request_with(daemon, rule, |name| arg(args, name, variables))
}

/// The capability request of root field `field` of an operation of type `ty` called with
/// `args`, as the guard would make it; `None` for a field without a rule.
pub(crate) fn request_for(
    daemon: &Daemon,
    ty: OperationType,
    field: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Option<Request> {
    let rule = rule_for(ty, field)?;
    Some(request_with(daemon, &rule, |name| args.get(name).cloned()))
}

/// The capability request of `rule`, its arguments read through `arg`.
fn request_with(
    daemon: &Daemon,
    rule: &Rule,
    arg: impl Fn(&str) -> Option<serde_json::Value>,
) -> Request {
    let mut operation = rule.operation.to_string();
    if rule.operation == "unit.control"
        && let Some(serde_json::Value::String(action)) = arg("action")
    {
        operation = format!("unit.{}", action.to_ascii_lowercase());
    }
    let r = Request::new(operation, rule.access);
    match rule.target {
        Target::None => r,
        Target::Unit(name) => match arg(name) {
            Some(serde_json::Value::String(unit)) => {
                // The unit's resolved labels, from the daemon's memory (no store read).
                let labels = daemon.unit(&unit).map(|u| u.labels).unwrap_or_default();
                r.on(format!("unit/{unit}"), labels).units(1)
            }
            _ => r,
        },
        Target::NewUnit => {
            let unit = arg("name");
            let labels = arg("settings").map(|s| labels_of(&s)).unwrap_or_default();
            let name = unit.as_ref().and_then(|u| u.as_str()).unwrap_or("?");
            r.on(format!("unit/{name}"), labels).units(1)
        }
    }
}

/// The `labels` of a new unit's settings.
fn labels_of(settings: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    settings
        .get("labels")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}
