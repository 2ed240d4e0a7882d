//! The daemon's side of the cluster: applying a configuration to the replicated state,
//! adopting the configuration others applied, and running the units placed here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hypernix_compute::Plan;
use hypernix_events::NewEvent;
use hypernix_mesh::consensus::{Command, Table};
use hypernix_state::{Op, StateStore, Table as LocalTable};
use serde_json::{Map, Value};

use super::Mesh;
use crate::daemon::{CONFIG_KEY, Daemon};
use crate::error::DaemonError;
use crate::model::{Desired, Observed, Power, UnitSpec};
use crate::unit::UnitHandle;

impl Daemon {
    /// Proposes the configuration and every unit's desired state to the cluster; the
    /// leader places the units and each node's agent runs its own.
    pub(crate) async fn apply_to_cluster(
        &self,
        mesh: &Mesh,
        raw: Map<String, Value>,
        plan: Plan,
        specs: BTreeMap<String, UnitSpec>,
        restarts: BTreeSet<String>,
    ) -> Result<Plan, DaemonError> {
        let cluster =
            |e: hypernix_mesh::consensus::ConsensusError| DaemonError::Mesh(e.to_string());
        let replicated: BTreeMap<String, Desired> = mesh
            .list(Table::Units)
            .map_err(cluster)?
            .into_iter()
            .filter_map(|(name, doc)| Some((name, serde_json::from_value(doc).ok()?)))
            .collect();
        let job = self.next_job("apply");
        let total = specs.len()
            + replicated
                .keys()
                .filter(|n| !specs.contains_key(*n))
                .count();
        self.job_event(&job, "job.started", 0, total).await;
        mesh.propose(Command::Put {
            table: Table::Meta,
            key: super::CONFIG_KEY.into(),
            value: Value::Object(raw.clone()),
        })
        .await
        .map_err(cluster)?;
        let mut done = 0;
        let names: Vec<String> = specs.keys().cloned().collect();
        for (name, spec) in specs {
            let old = replicated.get(&name);
            let restart = restarts.contains(&name);
            let desired = Desired {
                spec,
                power: Power::Running,
                generation: old.map_or(0, |o| o.generation) + u64::from(restart),
            };
            let value =
                serde_json::to_value(&desired).map_err(|e| DaemonError::Store(e.to_string()))?;
            mesh.propose(Command::Put {
                table: Table::Units,
                key: name,
                value,
            })
            .await
            .map_err(cluster)?;
            done += 1;
            self.job_event(&job, "job.progress", done, total).await;
        }
        for name in replicated.keys().filter(|n| !names.contains(n)) {
            mesh.propose(Command::Delete {
                table: Table::Units,
                key: name.clone(),
            })
            .await
            .map_err(cluster)?;
            done += 1;
            self.job_event(&job, "job.progress", done, total).await;
        }
        self.adopt_config(raw).await;
        for change in &plan.units {
            let payload = serde_json::to_value(change).unwrap_or_default();
            let event = NewEvent::new("unit.configured", format!("unit/{}", change.unit))
                .with_payload(payload);
            let _ = self.publish(event).await;
        }
        self.job_event(&job, "job.completed", done, total).await;
        Ok(plan)
    }

    /// Takes the cluster's configuration as this node's own when it differs: stores it and
    /// applies its security, storage and monitoring settings.
    pub(crate) async fn adopt_config(&self, raw: Map<String, Value>) {
        if self.applied_raw().ok().as_ref() == Some(&raw) {
            return;
        }
        let config = match Self::resolve_config(raw.clone()) {
            Ok((config, _)) => config,
            Err(e) => {
                return tracing::error!("the cluster's configuration does not resolve here: {e}");
            }
        };
        if let Err(e) = self.guard.configure(&config.hypervisor.security) {
            return tracing::error!("the cluster's security settings do not apply here: {e}");
        }
        let op = Op::Put {
            table: LocalTable::Meta,
            key: CONFIG_KEY.into(),
            value: Value::Object(raw),
        };
        if let Err(e) = self.shared.store.transact(vec![op]) {
            tracing::error!("cannot store the cluster's configuration: {e}");
        }
        let s = &self.shared;
        s.storage
            .configure(&config.hypervisor.storage, &s.layout, &s.bus)
            .await;
        self.monitor.configure(&config.hypervisor.monitoring);
    }

    /// The units the local store remembers, with their desired state.
    pub(crate) fn stored_units(&self) -> Vec<(String, Desired)> {
        self.shared
            .store
            .list(LocalTable::Desired)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, d)| Some((name, serde_json::from_value(d).ok()?)))
            .collect()
    }

    /// Starts the task of unit `name` here, from its stored observed state if any.
    pub(crate) fn run_unit(&self, name: &str, desired: Desired) {
        let observed = self
            .shared
            .store
            .get(LocalTable::Observed, name)
            .ok()
            .flatten()
            .and_then(|o| serde_json::from_value(o).ok())
            .unwrap_or_else(Observed::pending);
        self.shared.save_desired(name, &desired);
        let handle = UnitHandle::spawn(self.shared.clone(), name.to_string(), desired, observed);
        self.shared
            .units
            .lock()
            .expect("units lock")
            .insert(name.to_string(), handle);
    }

    /// Starts the task of unit `name` here with a QEMU waiting for a live migration.
    pub(crate) fn run_incoming(&self, name: &str, desired: Desired) {
        self.shared.save_desired(name, &desired);
        let handle = UnitHandle::spawn_incoming(self.shared.clone(), name.to_string(), desired);
        self.shared
            .units
            .lock()
            .expect("units lock")
            .insert(name.to_string(), handle);
    }

    /// The units with a task on this node.
    pub(crate) fn local_units(&self) -> BTreeMap<String, UnitHandle> {
        self.shared.units.lock().expect("units lock").clone()
    }

    /// This node's part in the cluster, if it is clustered.
    pub fn mesh(&self) -> Option<&Arc<Mesh>> {
        self.mesh.as_ref()
    }
}

impl Daemon {
    /// Takes this node out of its cluster: stops its units (they start elsewhere only once
    /// they stopped here), then deregisters it and leaves the consensus membership.
    pub async fn leave_cluster(&self) -> Result<(), DaemonError> {
        let Some(mesh) = &self.mesh else {
            return Err(DaemonError::Mesh("this daemon is not clustered".into()));
        };
        mesh.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        super::agent::stop_all(self, super::agent::MOVE_GRACE).await;
        mesh.leave()
            .await
            .map_err(|e| DaemonError::Mesh(e.to_string()))
    }
}
