//! The GraphQL schema: each resolver translates its arguments into one call on the
//! [`Daemon`] and its answer into API types; resolvers keep no state of their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_graphql::{Context, ErrorExtensions, Json, MergedObject, MergedSubscription, Schema};
use futures::{Stream, StreamExt};
use hypernix_daemon::Daemon;
use hypernix_daemon::error::DaemonError;
use serde_json::{Map, Value};

use crate::allowed::AllowedQuery;
use crate::audit::AuditQuery;
use crate::backup::{BackupMutation, BackupQuery, BackupSubscription};
use crate::caps::CapsMutation;
use crate::mesh::{MeshMutation, MeshQuery, MeshSubscription};
use crate::monitor::{MonitorQuery, MonitorSubscription};
use crate::storage::{StorageMutation, StorageQuery, StorageSubscription};
use crate::types::EventFilter;
use crate::units::{UnitMutation, UnitQuery, UnitSubscription};

/// The hypernix schema.
pub type HypernixSchema = Schema<Query, Mutation, Subscription>;

/// Bounds on what clients may ask, from `hypervisor.api.limits`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest query nesting.
    pub depth: usize,
    /// Highest query complexity.
    pub complexity: usize,
    /// Largest request body in bytes.
    pub body_size: usize,
    /// Most subscriptions open at once on one connection.
    pub subscriptions_per_connection: u32,
    /// Most mutations per second, over all clients.
    pub mutations_per_second: u32,
}

impl From<&hypernix_config::schema::services::ApiLimits> for Limits {
    fn from(l: &hypernix_config::schema::services::ApiLimits) -> Self {
        Limits {
            depth: l.depth as usize,
            complexity: l.complexity as usize,
            body_size: usize::try_from(l.body_size.bytes()).unwrap_or(usize::MAX),
            subscriptions_per_connection: l.subscriptions_per_connection,
            mutations_per_second: l.mutations_per_second,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from(&hypernix_config::schema::services::ApiLimits::default())
    }
}

/// Builds the schema over a daemon (or without one, to print the SDL).
pub fn build(daemon: Option<Arc<Daemon>>, limits: Limits) -> HypernixSchema {
    let mut b = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .limit_depth(limits.depth)
    .limit_complexity(limits.complexity)
    .data(MutationRate::new(limits.mutations_per_second))
    .data(limits);
    if let Some(d) = daemon {
        b = b.data(d).extension(crate::auth::Guarded);
    }
    b.finish()
}

/// The schema's SDL, as checked in at `crates/hypernix-api/schema.graphql`.
pub fn sdl() -> String {
    build(None, Limits::default()).sdl()
}

pub(crate) fn daemon<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<Daemon>> {
    ctx.data::<Arc<Daemon>>()
}

/// A daemon error as a GraphQL error with a machine-readable code.
pub(crate) fn gql(e: DaemonError) -> async_graphql::Error {
    let code = match &e {
        DaemonError::Config(_) => "BAD_CONFIG",
        DaemonError::UnknownUnit(_) => "NOT_FOUND",
        DaemonError::Unit { .. } => "CONFLICT",
        DaemonError::Backup { .. } => "BACKUP_FAILED",
        DaemonError::Store(_) => "INTERNAL",
        DaemonError::Storage(_) => "STORAGE",
        DaemonError::Monitor(_) => "MONITOR",
        DaemonError::Mesh(_) => "CLUSTER",
    };
    let details = match &e {
        DaemonError::Config(errors) => errors.clone(),
        _ => Vec::new(),
    };
    e.to_string().extend_with(|_, ext| {
        ext.set("code", code);
        if !details.is_empty() {
            ext.set("details", details.clone());
        }
    })
}

/// Mutations allowed per second, over all clients (a one-second window).
struct MutationRate {
    limit: u32,
    window: std::sync::Mutex<(Instant, u32)>,
}

impl MutationRate {
    fn new(limit: u32) -> Self {
        MutationRate {
            limit,
            window: std::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    fn admit(&self) -> async_graphql::Result<()> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0);
        }
        if w.1 >= self.limit {
            return Err(format!(
                "more than {} mutations in one second; slow down (hypervisor.api.limits.mutationsPerSecond)",
                self.limit
            )
            .extend_with(|_, ext| ext.set("code", "RATE_LIMITED")));
        }
        w.1 += 1;
        Ok(())
    }
}

pub(crate) fn admit(ctx: &Context<'_>) -> async_graphql::Result<()> {
    ctx.data::<MutationRate>()?.admit()
}

pub(crate) fn object(v: Json<Value>, what: &str) -> async_graphql::Result<Map<String, Value>> {
    match v.0 {
        Value::Object(m) => Ok(m),
        other => Err(format!("{what}: expected an object, got {other}").into()),
    }
}

/// Read-only queries.
#[derive(MergedObject, Default)]
pub struct Query(
    UnitQuery,
    StorageQuery,
    BackupQuery,
    MonitorQuery,
    MeshQuery,
    AllowedQuery,
    AuditQuery,
);

/// Changes.
#[derive(MergedObject, Default)]
pub struct Mutation(
    UnitMutation,
    CapsMutation,
    StorageMutation,
    BackupMutation,
    MeshMutation,
);

/// Live updates over WebSocket (graphql-transport-ws).
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    UnitSubscription,
    StorageSubscription,
    BackupSubscription,
    MonitorSubscription,
    MeshSubscription,
);

/// Counts the subscriptions open on one connection.
#[derive(Default)]
pub struct ConnectionSubscriptions(pub Arc<AtomicU32>);

/// Holds one subscription's place in its connection's count.
pub(crate) struct Slot(Arc<AtomicU32>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn take_slot(ctx: &Context<'_>) -> async_graphql::Result<Option<Slot>> {
    let Ok(counter) = ctx.data::<ConnectionSubscriptions>() else {
        return Ok(None);
    };
    let limit = ctx.data::<Limits>()?.subscriptions_per_connection;
    let n = counter.0.fetch_add(1, Ordering::SeqCst);
    if n >= limit {
        counter.0.fetch_sub(1, Ordering::SeqCst);
        return Err(format!(
            "this connection has {limit} subscriptions open already \
             (hypervisor.api.limits.subscriptionsPerConnection); close one or open another connection"
        )
        .extend_with(|_, ext| ext.set("code", "TOO_MANY_SUBSCRIPTIONS")));
    }
    Ok(Some(Slot(counter.0.clone())))
}

/// The daemon's events after `after` (from now when `None`), then live, through `filter`.
pub(crate) async fn event_stream(
    ctx: &Context<'_>,
    after: Option<u64>,
    filter: EventFilter,
) -> async_graphql::Result<
    impl Stream<Item = async_graphql::Result<Arc<hypernix_events::Event>>> + use<>,
> {
    let slot = take_slot(ctx)?;
    let d = daemon(ctx)?;
    let after = match after {
        Some(id) => Some(id),
        None => d.last_event_id().await.map_err(gql)?,
    };
    let stream = d.subscribe(after);
    Ok(stream.filter_map(move |e| {
        let _held = &slot;
        let out = match e {
            Ok(e) if filter.matches(&e) => Some(Ok(e)),
            Ok(_) => None,
            Err(err) => Some(Err(async_graphql::Error::new(err.to_string()))),
        };
        futures::future::ready(out)
    }))
}
