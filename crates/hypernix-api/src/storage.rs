//! Storage tiers, volumes, heat maps and data movement.

use async_graphql::{Context, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use hypernix_daemon::error::DaemonError;

use crate::schema::{admit, daemon, event_stream, gql};
use crate::types::EventFilter;

/// A storage tier and its use.
#[derive(SimpleObject, Clone, Debug)]
pub struct StorageTier {
    /// The tier's name (`storage.tiers.NAME`).
    pub name: String,
    /// Its level: 0 is the fastest.
    pub level: u32,
    /// Whether it survives restarts (memory tiers do not).
    pub durable: bool,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Bytes held by extents.
    pub used: u64,
    /// Extents it holds.
    pub extents: u64,
    /// Extent reads it served over the extent reads of all tiers (cache hits, for a
    /// memory tier); null before any read.
    pub hit_ratio: Option<f64>,
    /// Extents moved into or out of it since the daemon started.
    pub moves: u64,
    /// Extents moved into it since the daemon started.
    pub moved_in: u64,
    /// Extents moved out of it since the daemon started.
    pub moved_out: u64,
}

/// A tiered volume (a unit's disk is the volume `UNIT.DISK`).
#[derive(SimpleObject, Clone, Debug)]
pub struct Volume {
    /// Its name, also its NBD export name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Extents that hold data; the rest read as zeros.
    pub allocated_extents: u64,
    /// Bytes those extents take.
    pub allocated_bytes: u64,
}

/// One allocated extent of a volume: where it lives and how hot it is.
#[derive(SimpleObject, Clone, Debug)]
pub struct ExtentHeat {
    /// The extent index.
    pub extent: u64,
    /// Its first byte in the volume.
    pub offset: u64,
    /// The tier holding it.
    pub tier: String,
    /// That tier's level.
    pub level: u32,
    /// Its decayed access count (reads + writes, halving every `heatMap.halfLife`).
    pub heat: f64,
}

/// A volume's heat map: every allocated extent in order.
#[derive(SimpleObject, Clone, Debug)]
pub struct HeatMap {
    /// The volume.
    pub volume: String,
    /// The extent size in bytes.
    pub granularity: u64,
    /// Allocated extents; the missing ones are holes.
    pub extents: Vec<ExtentHeat>,
}

/// An extent moved between tiers by the placement engine.
#[derive(SimpleObject, Clone, Debug)]
pub struct DataMovement {
    /// The event's id (subscribe after it to resume).
    pub event_id: u64,
    /// When it moved.
    pub time: DateTime<Utc>,
    /// The volume.
    pub volume: String,
    /// The extent index.
    pub extent: u64,
    /// The tier it left.
    pub from: String,
    /// The tier it went to.
    pub to: String,
    /// Bytes moved.
    pub bytes: u64,
}

/// An extent a placement round moved.
#[derive(SimpleObject, Clone, Debug)]
pub struct MovedExtent {
    /// The volume.
    pub volume: String,
    /// The extent index.
    pub extent: u64,
    /// The tier it left.
    pub from: String,
    /// The tier it went to.
    pub to: String,
    /// Bytes moved.
    pub bytes: u64,
}

fn storage_err(message: String) -> async_graphql::Error {
    gql(DaemonError::Storage(message))
}

/// Queries about storage tiers, volumes and heat.
#[derive(Default)]
pub struct StorageQuery;

#[Object]
impl StorageQuery {
    /// Every storage tier, fastest first.
    async fn storage_tiers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<StorageTier>> {
        let tiers = daemon(ctx)?.storage().tiers().map_err(storage_err)?;
        Ok(tiers
            .into_iter()
            .map(|t| StorageTier {
                name: t.name,
                level: t.level,
                durable: t.durable,
                capacity: t.capacity,
                used: t.used,
                extents: t.extents,
                hit_ratio: t.hit_ratio,
                moves: t.moved_in + t.moved_out,
                moved_in: t.moved_in,
                moved_out: t.moved_out,
            })
            .collect())
    }

    /// Every volume by name.
    async fn volumes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Volume>> {
        let storage = daemon(ctx)?.storage();
        let g = storage.granularity().map_err(storage_err)?;
        let volumes = storage.volumes().map_err(storage_err)?;
        Ok(volumes
            .into_iter()
            .map(|v| Volume {
                name: v.name,
                size: v.size,
                allocated_extents: v.allocated_extents,
                allocated_bytes: v.allocated_extents * g,
            })
            .collect())
    }

    /// One volume.
    async fn volume(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Volume> {
        let all = self.volumes(ctx).await?;
        all.into_iter().find(|v| v.name == name).ok_or_else(|| {
            storage_err(format!(
                "no volume named {name:?}; the query `volumes` lists them"
            ))
        })
    }

    /// The heat and tier of every allocated extent of a volume.
    async fn heat_map(&self, ctx: &Context<'_>, volume: String) -> async_graphql::Result<HeatMap> {
        let storage = daemon(ctx)?.storage();
        let g = storage.granularity().map_err(storage_err)?;
        let extents = storage.heat_map(&volume).map_err(storage_err)?;
        Ok(HeatMap {
            volume,
            granularity: g,
            extents: extents
                .into_iter()
                .map(|e| ExtentHeat {
                    extent: e.extent,
                    offset: e.extent * g,
                    tier: e.tier,
                    level: e.level,
                    heat: e.heat,
                })
                .collect(),
        })
    }
}

/// Changes to storage.
#[derive(Default)]
pub struct StorageMutation;

#[Object]
impl StorageMutation {
    /// Runs one placement round now; answers the extents it moved.
    async fn rebalance_storage(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<MovedExtent>> {
        admit(ctx)?;
        let moved = daemon(ctx)?
            .storage()
            .rebalance()
            .await
            .map_err(storage_err)?;
        Ok(moved
            .into_iter()
            .map(|m| MovedExtent {
                volume: m.volume,
                extent: m.extent,
                from: m.from,
                to: m.to,
                bytes: m.bytes,
            })
            .collect())
    }

    /// Removes a volume and its data for good; refused while a configured unit uses it.
    async fn delete_volume(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        admit(ctx)?;
        daemon(ctx)?.delete_volume(&name).map_err(gql)?;
        Ok(true)
    }
}

/// Live storage updates.
#[derive(Default)]
pub struct StorageSubscription;

#[Subscription]
impl StorageSubscription {
    /// Each extent the placement engine moves (of `volume` only, when given); with
    /// `after`, first every move after that event id.
    async fn data_movement(
        &self,
        ctx: &Context<'_>,
        volume: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<DataMovement>>> {
        let filter = EventFilter {
            kinds: Some(vec!["storage.moved".into()]),
            subject: volume.map(|v| format!("volume/{v}")),
        };
        Ok(event_stream(ctx, after, filter).await?.filter_map(|e| {
            let out = match e {
                Err(err) => Some(Err(err)),
                Ok(e) => {
                    let p = &e.payload;
                    let text = |k: &str| p[k].as_str().map(str::to_string);
                    match (
                        text("volume"),
                        p["extent"].as_u64(),
                        text("from"),
                        text("to"),
                    ) {
                        (Some(volume), Some(extent), Some(from), Some(to)) => {
                            Some(Ok(DataMovement {
                                event_id: e.id,
                                time: e.time,
                                volume,
                                extent,
                                from,
                                to,
                                bytes: p["bytes"].as_u64().unwrap_or(0),
                            }))
                        }
                        _ => None,
                    }
                }
            };
            futures::future::ready(out)
        }))
    }
}
