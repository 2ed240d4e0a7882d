//! Compute units, tags, policies, configuration apply and plan, jobs and the event log.

use async_graphql::{Context, Json, Object, Subscription};
use futures::{Stream, StreamExt};
use hypernix_daemon::daemon::UnitAction as DaemonAction;
use hypernix_daemon::error::DaemonError;
use serde_json::{Map, Value};

use crate::auth::Credential;
use crate::schema::{admit, daemon, event_stream, gql, object};
use crate::types::{
    ComputeUnit, ComputeUnitFilter, Event, EventFilter, Health, JobProgress, Plan, Policy, Tag,
    UnitAction, UnitStateChange,
};

/// Queries about compute units, tags, policies, configuration, jobs and events.
#[derive(Default)]
pub struct UnitQuery;

#[Object]
impl UnitQuery {
    /// The daemon's version, pid and accelerator.
    async fn health(&self, ctx: &Context<'_>) -> async_graphql::Result<Health> {
        Ok(daemon(ctx)?.health().into())
    }

    /// Compute units, optionally filtered by labels, tag and state.
    async fn compute_units(
        &self,
        ctx: &Context<'_>,
        filter: Option<ComputeUnitFilter>,
    ) -> async_graphql::Result<Vec<ComputeUnit>> {
        let filter = filter.unwrap_or_default();
        let scope = ctx
            .data_opt::<Credential>()
            .and_then(Credential::decision)
            .map(|d| d.scope)
            .unwrap_or_default();
        Ok(daemon(ctx)?
            .units()
            .into_iter()
            .map(ComputeUnit::from)
            .filter(|u| filter.matches(u) && u.within(&scope))
            .collect())
    }

    /// One compute unit.
    async fn compute_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ComputeUnit> {
        Ok(daemon(ctx)?.unit(&name).map_err(gql)?.into())
    }

    /// The end of a unit's console log.
    async fn console_log(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default = 65536)] tail: u64,
    ) -> async_graphql::Result<String> {
        daemon(ctx)?.console_log(&name, tail).map_err(gql)
    }

    /// The tags of the applied configuration.
    async fn tags(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Tag>> {
        let config = daemon(ctx)?.applied_config().map_err(gql)?;
        let tags = config
            .hypervisor
            .compute
            .tags
            .into_iter()
            .map(|(name, t)| Tag {
                name,
                category: serde_json::to_value(t.category)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                priority: t.priority,
                description: t.description,
                values: Json(serde_json::to_value(t.values).unwrap_or_default()),
            });
        Ok(tags.collect())
    }

    /// The policies of the applied configuration.
    async fn policies(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Policy>> {
        let config = daemon(ctx)?.applied_config().map_err(gql)?;
        let policies = config
            .hypervisor
            .compute
            .policies
            .into_iter()
            .map(|(name, p)| Policy {
                name,
                description: p.description,
                tags: p.tags,
                policies: p.policies,
                defaults: Json(serde_json::to_value(p.defaults).unwrap_or_default()),
            });
        Ok(policies.collect())
    }

    /// The configuration applied last, as written (the `hypervisor` attribute set).
    async fn config(&self, ctx: &Context<'_>) -> async_graphql::Result<Json<Value>> {
        Ok(Json(Value::Object(
            daemon(ctx)?.applied_raw().map_err(gql)?,
        )))
    }

    /// What applying `config` (a `hypervisor` attribute set) would change.
    async fn plan(&self, ctx: &Context<'_>, config: Json<Value>) -> async_graphql::Result<Plan> {
        let raw = object(config, "config")?;
        Ok(daemon(ctx)?.plan(raw).map_err(gql)?.into())
    }

    /// The latest progress of every job whose events the log still holds, newest last.
    async fn jobs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<JobProgress>> {
        let events = daemon(ctx)?.events(None, 100_000).await.map_err(gql)?;
        let mut latest: Vec<JobProgress> = Vec::new();
        for p in events.iter().filter_map(JobProgress::from_event) {
            latest.retain(|j| j.job != p.job);
            latest.push(p);
        }
        Ok(latest)
    }

    /// Events after `after`, at most `limit`, optionally filtered.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<u64>,
        #[graphql(default = 1000)] limit: usize,
        filter: Option<EventFilter>,
    ) -> async_graphql::Result<Vec<Event>> {
        let filter = filter.unwrap_or_default();
        let events = daemon(ctx)?
            .events(after, limit.min(10_000))
            .await
            .map_err(gql)?;
        Ok(events
            .into_iter()
            .filter(|e| filter.matches(e))
            .map(Event::from)
            .collect())
    }
}

/// Changes.
#[derive(Default)]
pub struct UnitMutation;

#[Object]
impl UnitMutation {
    /// Applies a configuration (a `hypervisor` attribute set); answers the plan carried out.
    async fn apply_config(
        &self,
        ctx: &Context<'_>,
        config: Json<Value>,
    ) -> async_graphql::Result<Plan> {
        admit(ctx)?;
        let raw = object(config, "config")?;
        Ok(daemon(ctx)?.apply(raw).await.map_err(gql)?.into())
    }

    /// Adds a compute unit to the applied configuration and starts it.
    async fn create_compute_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
        settings: Json<Value>,
    ) -> async_graphql::Result<Plan> {
        let settings = object(settings, "settings")?;
        edit_units(ctx, |units| match units.contains_key(&name) {
            true => Err(format!("compute unit `{name}` exists; use updateComputeUnit").into()),
            false => {
                units.insert(name, Value::Object(settings));
                Ok(())
            }
        })
        .await
    }

    /// Replaces a compute unit's own settings; the plan says what restarts.
    async fn update_compute_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
        settings: Json<Value>,
    ) -> async_graphql::Result<Plan> {
        let settings = object(settings, "settings")?;
        edit_units(ctx, |units| match units.get_mut(&name) {
            Some(unit) => {
                *unit = Value::Object(settings);
                Ok(())
            }
            None => Err(gql(DaemonError::UnknownUnit(name))),
        })
        .await
    }

    /// Removes a compute unit from the applied configuration, stopping it.
    async fn delete_compute_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<Plan> {
        edit_units(ctx, |units| match units.remove(&name) {
            Some(_) => Ok(()),
            None => Err(gql(DaemonError::UnknownUnit(name))),
        })
        .await
    }

    /// Starts, stops, restarts, pauses or resumes a compute unit.
    async fn control_compute_unit(
        &self,
        ctx: &Context<'_>,
        name: String,
        action: UnitAction,
    ) -> async_graphql::Result<ComputeUnit> {
        admit(ctx)?;
        let action = match action {
            UnitAction::Start => DaemonAction::Start,
            UnitAction::Stop => DaemonAction::Stop,
            UnitAction::Restart => DaemonAction::Restart,
            UnitAction::Pause => DaemonAction::Pause,
            UnitAction::Resume => DaemonAction::Resume,
        };
        Ok(daemon(ctx)?.act(&name, action).await.map_err(gql)?.into())
    }

    /// Stops the daemon; with `stopUnits`, stops every unit first.
    async fn shutdown(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] stop_units: bool,
    ) -> async_graphql::Result<bool> {
        daemon(ctx)?.shutdown(stop_units).await.map_err(gql)?;
        Ok(true)
    }
}

/// Changes `compute.units` of the applied configuration with `edit`, then applies it.
async fn edit_units(
    ctx: &Context<'_>,
    edit: impl FnOnce(&mut Map<String, Value>) -> async_graphql::Result<()>,
) -> async_graphql::Result<Plan> {
    admit(ctx)?;
    let d = daemon(ctx)?;
    let mut raw = d.applied_raw().map_err(gql)?;
    edit(units_mut(&mut raw)?)?;
    Ok(d.apply(raw).await.map_err(gql)?.into())
}

fn units_mut(raw: &mut Map<String, Value>) -> async_graphql::Result<&mut Map<String, Value>> {
    let compute = raw
        .entry("compute")
        .or_insert_with(|| Value::Object(Map::new()));
    let units = compute
        .as_object_mut()
        .ok_or("the applied configuration's compute is not an attribute set")?
        .entry("units")
        .or_insert_with(|| Value::Object(Map::new()));
    units
        .as_object_mut()
        .ok_or_else(|| "the applied configuration's compute.units is not an attribute set".into())
}

/// Subscriptions to events, unit state, job progress and unit updates.
#[derive(Default)]
pub struct UnitSubscription;

#[Subscription]
impl UnitSubscription {
    /// Events as they are published; with `after`, first every event after that id
    /// (`after: 0` replays the whole log).
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<u64>,
        filter: Option<EventFilter>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Event>>> {
        Ok(event_stream(ctx, after, filter.unwrap_or_default())
            .await?
            .map(|e| e.map(|e| Event::from(e.as_ref().clone()))))
    }

    /// Each state change of compute units (of `name` only, when given).
    async fn compute_unit_state_changed(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<UnitStateChange>>> {
        let filter = EventFilter {
            kinds: Some(vec!["unit.*".into()]),
            subject: name.map(|n| format!("unit/{n}")),
        };
        let mut last: std::collections::HashMap<String, Value> = Default::default();
        Ok(event_stream(ctx, after, filter)
            .await?
            .filter_map(move |e| {
                let out = match e {
                    Err(err) => Some(Err(err)),
                    Ok(e) => {
                        let unit = e.subject.trim_start_matches("unit/").to_string();
                        let state = e.payload.get("state").cloned().unwrap_or(Value::Null);
                        let changed = last.get(&unit) != Some(&state);
                        last.insert(unit.clone(), state.clone());
                        serde_json::from_value::<hypernix_daemon::model::UnitState>(state)
                            .ok()
                            .filter(|_| changed)
                            .map(|s| {
                                Ok(UnitStateChange {
                                    event_id: e.id,
                                    unit,
                                    state: s.into(),
                                    kind: e.kind.clone(),
                                    time: e.time,
                                })
                            })
                    }
                };
                futures::future::ready(out)
            }))
    }

    /// The progress of jobs (of `job` only, when given).
    async fn job_progress(
        &self,
        ctx: &Context<'_>,
        job: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<JobProgress>>> {
        let filter = EventFilter {
            kinds: Some(vec!["job.*".into()]),
            subject: job.map(|j| format!("job/{j}")),
        };
        Ok(event_stream(ctx, after, filter).await?.filter_map(|e| {
            futures::future::ready(match e {
                Ok(e) => JobProgress::from_event(&e).map(Ok),
                Err(err) => Some(Err(err)),
            })
        }))
    }

    /// Each configuration change of compute units (of `name` only, when given).
    async fn compute_unit_updated(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        after: Option<u64>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Event>>> {
        let filter = EventFilter {
            kinds: Some(vec![
                "unit.configured".into(),
                "unit.ballooned".into(),
                "unit.vcpus".into(),
            ]),
            subject: name.map(|n| format!("unit/{n}")),
        };
        Ok(event_stream(ctx, after, filter)
            .await?
            .map(|e| e.map(|e| Event::from(e.as_ref().clone()))))
    }
}
