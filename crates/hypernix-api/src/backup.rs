//! Backups: snapshots of a repository, running a source now, and the progress and
//! completion of backups as they happen.

use async_graphql::{Context, Object, SimpleObject, Subscription};
use futures::{Stream, StreamExt};
use hypernix_daemon::backup::SnapshotInfo;
use serde::Deserialize;
use serde_json::Value;

use crate::schema::{admit, daemon, event_stream, gql};
use crate::types::EventFilter;

/// A snapshot in a backup repository.
#[derive(SimpleObject, Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSnapshot {
    /// The snapshot id.
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// `SOURCE/UNIT/DISK` for unit disks, the source's name for paths.
    pub source: String,
    /// What was backed up.
    pub paths: Vec<String>,
    /// Bytes of the image or files.
    pub size: u64,
    /// The snapshot an incremental image was built from.
    pub parent: Option<String>,
    /// Bytes read from the disk or files.
    pub bytes_read: u64,
    /// Bytes taken from the parent without reading them.
    pub bytes_reused: u64,
    /// Chunks newly stored.
    pub new_chunks: u64,
}

impl From<SnapshotInfo> for BackupSnapshot {
    fn from(s: SnapshotInfo) -> Self {
        BackupSnapshot {
            id: s.id,
            time: s.time,
            source: s.source,
            paths: s.paths,
            size: s.size,
            parent: s.parent,
            bytes_read: s.bytes_read,
            bytes_reused: s.bytes_reused,
            new_chunks: s.new_chunks,
        }
    }
}

/// How far a running backup of one disk is.
#[derive(SimpleObject, Clone, Debug, Deserialize)]
pub struct BackupProgress {
    /// The event's id.
    #[serde(default)]
    pub event_id: u64,
    /// The backup source.
    pub source: String,
    /// The unit.
    pub unit: String,
    /// The disk's node name.
    pub disk: String,
    /// Bytes done (read, or reused from the parent).
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// A finished run of a backup source.
#[derive(SimpleObject, Clone, Debug, Deserialize)]
pub struct BackupCompleted {
    /// The event's id.
    #[serde(default)]
    pub event_id: u64,
    /// The backup source.
    pub source: String,
    /// The repository written to.
    pub repository: String,
    /// The snapshots made.
    pub snapshots: Vec<BackupSnapshot>,
    /// Selected units skipped because they were not running.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// Queries about backups.
#[derive(Default)]
pub struct BackupQuery;

#[Object]
impl BackupQuery {
    /// The snapshots of a repository (`backup.defaultRepository` when not named), oldest
    /// first.
    async fn backup_snapshots(
        &self,
        ctx: &Context<'_>,
        repository: Option<String>,
    ) -> async_graphql::Result<Vec<BackupSnapshot>> {
        let d = daemon(ctx)?;
        let repository = match repository {
            Some(r) => r,
            None => {
                d.applied_config()
                    .map_err(gql)?
                    .hypervisor
                    .backup
                    .default_repository
            }
        };
        let snaps = d.backup_snapshots(&repository).await.map_err(gql)?;
        Ok(snaps.into_iter().map(BackupSnapshot::from).collect())
    }
}

/// Backup actions.
#[derive(Default)]
pub struct BackupMutation;

#[Object]
impl BackupMutation {
    /// Runs backup source `source` now, outside its schedule; returns its new snapshots.
    async fn backup_run(
        &self,
        ctx: &Context<'_>,
        source: String,
    ) -> async_graphql::Result<Vec<BackupSnapshot>> {
        admit(ctx)?;
        let snaps = daemon(ctx)?.backup_source(&source).await.map_err(gql)?;
        Ok(snaps.into_iter().map(BackupSnapshot::from).collect())
    }
}

/// Backup events as they happen.
#[derive(Default)]
pub struct BackupSubscription;

#[Subscription]
impl BackupSubscription {
    /// Progress of running backups (of `source` only, when given).
    async fn backup_progress(
        &self,
        ctx: &Context<'_>,
        source: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<BackupProgress>>> {
        payloads(ctx, "backup.progress", source, after).await
    }

    /// Each finished run of a backup source (of `source` only, when given).
    async fn backup_completed(
        &self,
        ctx: &Context<'_>,
        source: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<BackupCompleted>>> {
        payloads(ctx, "backup.completed", source, after).await
    }
}

/// The payloads of events of `kind`, decoded, with their event ids.
async fn payloads<T: serde::de::DeserializeOwned + Send + 'static>(
    ctx: &Context<'_>,
    kind: &str,
    source: Option<String>,
    after: Option<u64>,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<T>> + use<T>> {
    let filter = EventFilter {
        kinds: Some(vec![kind.to_string()]),
        subject: source.map(|s| format!("backup/{s}")),
    };
    Ok(event_stream(ctx, after, filter).await?.map(|e| {
        let e = e?;
        let mut payload = e.payload.clone();
        if let Value::Object(map) = &mut payload {
            map.insert("event_id".into(), e.id.into());
        }
        serde_json::from_value(payload)
            .map_err(|err| async_graphql::Error::new(format!("malformed {} event: {err}", e.kind)))
    }))
}
