//! The cluster: its status, join tokens, leaving, and live topology, consensus and node
//! health changes.

use async_graphql::{Context, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use hypernix_daemon::Daemon;
use hypernix_daemon::mesh::{Mesh, MeshStatus as DaemonStatus};
use std::sync::Arc;

use crate::schema::{daemon, event_stream, gql};
use crate::types::EventFilter;

/// One node of the cluster.
#[derive(SimpleObject, Clone, Debug)]
pub struct MeshNode {
    /// The node's id.
    pub id: u64,
    /// Where it serves Raft (TCP) and gossip (UDP).
    pub addr: String,
    /// Its API address.
    pub api: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Whether its roles let it run units.
    pub runs_units: bool,
    /// `voter`, `learner` or `none`.
    pub consensus: String,
    /// `alive` or `dead`, as the answering node sees it.
    pub health: String,
    /// Seconds since the answering node last saw it alive.
    pub last_seen_secs: Option<f64>,
    /// Compute units it offers (100 = one vCPU).
    pub compute: u64,
    /// Memory it offers, in bytes.
    pub memory: u64,
    /// Its zone.
    pub zone: String,
    /// The units placed on it.
    pub units: Vec<String>,
}

/// The cluster as the answering node sees it.
#[derive(SimpleObject, Clone, Debug)]
pub struct MeshStatus {
    /// The cluster's name.
    pub cluster: String,
    /// The answering node.
    pub node: u64,
    /// The leader, if one is known.
    pub leader: Option<u64>,
    /// The current term.
    pub term: u64,
    /// Whether the answering node stopped its units for want of a quorum.
    pub fenced: bool,
    /// Other nodes the answering node sees alive.
    pub peers: u32,
    /// Its `mesh.topology.connections.minPeers`.
    pub min_peers: u32,
    /// Whether it sees fewer peers than minPeers (or than the other registered nodes).
    pub degraded: bool,
    /// Every registered node.
    pub nodes: Vec<MeshNode>,
    /// Units placed on no node.
    pub unplaced: Vec<String>,
}

impl From<DaemonStatus> for MeshStatus {
    fn from(s: DaemonStatus) -> Self {
        MeshStatus {
            cluster: s.cluster,
            node: s.node,
            leader: s.leader,
            term: s.term,
            fenced: s.fenced,
            peers: u32::try_from(s.peers).unwrap_or(u32::MAX),
            min_peers: s.min_peers,
            degraded: s.degraded,
            nodes: s
                .nodes
                .into_iter()
                .map(|n| MeshNode {
                    id: n.record.id,
                    addr: n.record.addr,
                    api: n.record.api,
                    roles: n.record.roles,
                    runs_units: n.record.runs_units,
                    consensus: n.consensus,
                    health: n.health,
                    last_seen_secs: n.last_seen_secs,
                    compute: n.record.compute,
                    memory: n.record.memory,
                    zone: n.record.location.zone,
                    units: n.units,
                })
                .collect(),
            unplaced: s.unplaced,
        }
    }
}

/// A change the cluster reports: membership, leadership or a node's health.
#[derive(SimpleObject, Clone, Debug)]
pub struct MeshChange {
    /// The event's id.
    pub id: u64,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// `mesh.topology`, `mesh.consensus`, `mesh.node`, `mesh.fenced` or `mesh.unfenced`.
    pub kind: String,
    /// What it is about (`node/2`).
    pub subject: String,
    /// The details: members, leader and term, or a node's status.
    pub payload: async_graphql::Json<serde_json::Value>,
}

fn mesh<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<Mesh>> {
    let d: &Arc<Daemon> = daemon(ctx)?;
    d.mesh().ok_or_else(|| {
        async_graphql::Error::new(
            "this daemon is not clustered; start it with `hypernix serve --node FILE \
             --mesh-listen ADDR`",
        )
    })
}

/// Cluster queries.
#[derive(Default)]
pub struct MeshQuery;

#[Object]
impl MeshQuery {
    /// The cluster's nodes, roles, leader, term, health and placement.
    async fn mesh_status(&self, ctx: &Context<'_>) -> async_graphql::Result<MeshStatus> {
        Ok(mesh(ctx)?.status().into())
    }
}

/// Cluster changes.
#[derive(Default)]
pub struct MeshMutation;

#[Object]
impl MeshMutation {
    /// A single-use token for one node to join, valid for `ttlSecs`; only the node
    /// holding the cluster CA (the one that bootstrapped it) issues them.
    async fn mesh_join_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3600)] ttl_secs: u64,
    ) -> async_graphql::Result<String> {
        let ttl = std::time::Duration::from_secs(ttl_secs.clamp(1, 7 * 86_400));
        mesh(ctx)?
            .join_token(ttl)
            .map_err(async_graphql::Error::new)
    }

    /// Moves unit `name`, running on the answering node, to node `to` while it runs.
    async fn migrate_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
        to: u64,
    ) -> async_graphql::Result<MigrationReport> {
        let r = daemon(ctx)?.migrate_unit(&name, to).await.map_err(gql)?;
        Ok(MigrationReport {
            unit: r.unit,
            from: r.from,
            to: r.to,
            total_ms: r.total_ms,
            mirrored_ms: r.mirrored_ms,
            downtime_ms: r.downtime_ms,
            ram_bytes: r.ram_bytes,
            disk_bytes: r.disk_bytes,
            disk_sent_bytes: r.disk_sent_bytes,
            disk_skipped_bytes: r.disk_skipped_bytes,
        })
    }

    /// Node to node: starts unit `name` here waiting for its live migration; answers where
    /// to send its disks and memory (`{ host, nbdPort, migrationPort }`).
    async fn accept_migration(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<async_graphql::Json<serde_json::Value>> {
        let ports = daemon(ctx)?.accept_migration(&name).await.map_err(gql)?;
        Ok(async_graphql::Json(serde_json::to_value(ports)?))
    }

    /// Node to node: resumes unit `name` after its live migration, or drops it.
    async fn finish_migration(
        &self,
        ctx: &Context<'_>,
        name: String,
        resume: bool,
        ready: bool,
    ) -> async_graphql::Result<bool> {
        daemon(ctx)?
            .finish_migration(&name, resume, ready)
            .await
            .map_err(gql)?;
        Ok(true)
    }

    /// Takes the answering node out of the cluster: its registration and its vote go,
    /// and its units are placed elsewhere.
    async fn mesh_leave(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        mesh(ctx)?;
        daemon(ctx)?.leave_cluster().await.map_err(gql)?;
        Ok(true)
    }
}

/// What a completed live migration measured.
#[derive(SimpleObject, Clone, Debug)]
pub struct MigrationReport {
    /// The unit.
    pub unit: String,
    /// The node it left.
    pub from: u64,
    /// The node it runs on now.
    pub to: u64,
    /// From the request to the destination's resume, in milliseconds.
    pub total_ms: u64,
    /// Until the disks were in step, in milliseconds.
    pub mirrored_ms: u64,
    /// The guest's pause at switch-over, in milliseconds.
    pub downtime_ms: u64,
    /// Memory bytes sent.
    pub ram_bytes: u64,
    /// Disk bytes the mirrors copied.
    pub disk_bytes: u64,
    /// Disk data bytes sent to the destination (blocks it did not hold).
    pub disk_sent_bytes: u64,
    /// Disk bytes not sent: the destination held them already.
    pub disk_skipped_bytes: u64,
}

/// Live cluster changes, from the answering node's point of view.
#[derive(Default)]
pub struct MeshSubscription;

impl MeshSubscription {
    async fn changes(
        ctx: &Context<'_>,
        kinds: &[&str],
        subject: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<MeshChange>> + use<>> {
        let filter = EventFilter {
            kinds: Some(kinds.iter().map(|k| k.to_string()).collect()),
            subject,
        };
        Ok(event_stream(ctx, after, filter).await?.map(|e| {
            e.map(|e| MeshChange {
                id: e.id,
                time: e.time,
                kind: e.kind.clone(),
                subject: e.subject.clone(),
                payload: async_graphql::Json(e.payload.clone()),
            })
        }))
    }
}

#[Subscription]
impl MeshSubscription {
    /// The members the answering node sees, each time they change.
    async fn mesh_topology_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<MeshChange>>> {
        Self::changes(ctx, &["mesh.topology"], None, after).await
    }

    /// The leader or term, each time either changes.
    async fn consensus_state_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<MeshChange>>> {
        Self::changes(ctx, &["mesh.consensus"], None, after).await
    }

    /// Live migrations of units on the answering node (of `unit` only, when given):
    /// `migration.started`, `migration.progress` (each step), `migration.completed` (with
    /// its measurements) and `migration.failed` (with the reason).
    async fn migration_progress(
        &self,
        ctx: &Context<'_>,
        unit: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<MeshChange>>> {
        Self::changes(
            ctx,
            &["migration.*"],
            unit.map(|u| format!("unit/{u}")),
            after,
        )
        .await
    }

    /// A node seen alive or dead, and fencing of the answering node.
    async fn node_status_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<MeshChange>>> {
        Self::changes(
            ctx,
            &["mesh.node", "mesh.fenced", "mesh.unfenced"],
            None,
            after,
        )
        .await
    }
}
