//! The destination's watchdog over a unit waiting for a live migration.
//!
//! After `acceptMigration` the unit's QEMU waits (`-incoming defer -S`) for the source's
//! disks and memory, then for `finishMigration`. A source daemon that dies, or a network
//! cut between the nodes, leaves it waiting forever: no `finishMigration(resume: false)`
//! comes. So, every [`POLL`], while the unit is still incoming, the watchdog reads the
//! waiting QEMU's `query-migrate`:
//! 1. `completed`: the guest arrived; only `finishMigration` resumes or drops it now, so
//!    the watchdog stops (the source, paused, switches over or rolls back);
//! 2. `failed` or `cancelled`, or no answer (QEMU 7.2 exits when an incoming migration
//!    fails, and the unit task would boot the half-copied guest afresh): the unit is
//!    dropped;
//! 3. anything else, once the source node has not been a cluster member for the stall
//!    timeout (it died, or the network to it is cut: QEMU then waits on the dead
//!    connection, `active`, or `setup` in the disk phase, for as long as TCP lets it), or
//!    after the migration timeout: the incoming stream is yanked and the NBD server
//!    stopped, so that the migration cannot complete any more, and the status read again
//!    once it settled: dropped unless `completed` (it finished just in time).
//!
//! Dropping is what a failed migration's `finishMigration(resume: false)` does: the unit
//! task is evicted (its QEMU stops) and the unit leaves the incoming set; a
//! `migration.failed` event on this node names the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hypernix_events::NewEvent;
use hypernix_mesh::consensus::{NodeId, Table};
use hypernix_vmm::Vm;
use hypernix_vmm::migrate::Options;
use serde_json::{Value, json};

use super::Mesh;
use crate::daemon::{Daemon, Shared};
use crate::unit::{Command, UnitHandle};

/// How often the waiting QEMU is asked how its migration goes.
const POLL: Duration = Duration::from_secs(1);
/// How long a yanked incoming migration may take to reach a final status.
const SETTLE: Duration = Duration::from_secs(5);

/// What the watchdog makes of the waiting QEMU's migration status.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Still under way, within the timeout.
    Wait,
    /// Completed: `finishMigration` takes it from here.
    Arrived,
    /// Broken: drop the unit, for this reason.
    Failed(String),
    /// Given up on, for this reason: make sure it cannot complete, then look again.
    GiveUp(String),
}

/// How long the watchdog has waited, and how long it may.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Since the watch began.
    waited: Duration,
    /// The migration timeout.
    timeout: Duration,
    /// How long the source node has not been a member (zero while it is).
    source_gone: Duration,
    /// How long it may not be.
    stall: Duration,
}

/// Judges `query-migrate`'s `status` (and `error-desc`) at `clock`.
fn verdict(status: &str, error: Option<&str>, clock: Clock) -> Verdict {
    match status {
        "completed" => Verdict::Arrived,
        "failed" | "cancelled" => Verdict::Failed(format!(
            "the incoming migration {status}: {}",
            error.unwrap_or("the source's stream broke")
        )),
        _ if clock.source_gone > clock.stall => Verdict::GiveUp(format!(
            "the source node has not been a cluster member for {:?}",
            clock.stall
        )),
        _ if clock.waited > clock.timeout => Verdict::GiveUp(format!(
            "the incoming migration did not complete within {:?}",
            clock.timeout
        )),
        _ => Verdict::Wait,
    }
}

impl Daemon {
    /// Destination: watches unit `name`, waiting in `vm` for a migration, and drops it when
    /// the migration broke or timed out without `finishMigration` (see the module docs).
    pub(super) fn watch_incoming(&self, mesh: &Arc<Mesh>, name: &str, vm: Arc<Vm>) {
        let Ok(handle) = self.handle(name) else {
            return;
        };
        // The unit is still placed on its source.
        let placement = mesh.raft.read_local(Table::Placement, name).ok().flatten();
        let source = placement
            .and_then(|doc| super::node::placement_node(&doc))
            .filter(|node| *node != mesh.id);
        let options = Options::default();
        let watch = Watchdog {
            shared: self.shared.clone(),
            mesh: mesh.clone(),
            name: name.to_string(),
            handle,
            vm,
            source,
            timeout: options.timeout,
            stall: options.stall_timeout,
        };
        tokio::spawn(watch.run());
    }
}

/// One waiting unit and what dropping it takes.
struct Watchdog {
    shared: Arc<Shared>,
    mesh: Arc<Mesh>,
    name: String,
    handle: UnitHandle,
    vm: Arc<Vm>,
    source: Option<NodeId>,
    timeout: Duration,
    stall: Duration,
}

impl Watchdog {
    async fn run(self) {
        let started = Instant::now();
        let mut source_lost: Option<Instant> = None;
        let reason = loop {
            tokio::time::sleep(POLL).await;
            // Ended by `finishMigration`: nothing to watch.
            if !self.incoming() {
                return;
            }
            let Some((status, error)) = self.status().await else {
                match self.vm.exit() {
                    Some(exit) => {
                        // `finishMigration(resume: false)` stops QEMU first, then ends the
                        // incoming state: give it a moment, so as not to drop it twice.
                        tokio::time::sleep(POLL).await;
                        break format!(
                            "the waiting QEMU exited ({exit}), as QEMU does when an incoming \
                             migration fails"
                        );
                    }
                    // Busy, or exiting: look again.
                    None => continue,
                }
            };
            let member = |node| self.mesh.members.borrow().contains_key(&node);
            source_lost = match self.source {
                Some(node) if !member(node) => source_lost.or(Some(Instant::now())),
                _ => None,
            };
            let clock = Clock {
                waited: started.elapsed(),
                timeout: self.timeout,
                source_gone: source_lost.map_or(Duration::ZERO, |t| t.elapsed()),
                stall: self.stall,
            };
            match verdict(&status, error.as_deref(), clock) {
                Verdict::Wait => {}
                Verdict::Arrived => return,
                Verdict::Failed(reason) => break reason,
                Verdict::GiveUp(reason) => match self.stop_waiting().await.as_deref() {
                    Some("completed") => return,
                    _ => break reason,
                },
            }
        };
        if !self.incoming() {
            return;
        }
        tracing::warn!("{}: dropping the waiting migration: {reason}", self.name);
        let _ = self
            .handle
            .send(Command::Evict {
                grace: Duration::ZERO,
            })
            .await;
        self.mesh
            .incoming
            .lock()
            .expect("incoming lock")
            .remove(&self.name);
        let payload = json!({ "node": self.mesh.id, "from": self.source, "reason": reason });
        self.shared
            .publish(
                NewEvent::new("migration.failed", format!("unit/{}", self.name))
                    .with_payload(payload),
            )
            .await;
    }

    fn incoming(&self) -> bool {
        let incoming = self.mesh.incoming.lock().expect("incoming lock");
        incoming.contains(&self.name)
    }

    /// The waiting QEMU's migration status and error, or `None` when it does not answer.
    async fn status(&self) -> Option<(String, Option<String>)> {
        let info: Value = self.vm.qmp().call("query-migrate", None).await.ok()?;
        let status = info["status"].as_str()?.to_string();
        Some((status, info["error-desc"].as_str().map(String::from)))
    }

    /// Cuts the incoming stream and stops the NBD server, then answers the status once it
    /// is final (or [`SETTLE`] passed).
    async fn stop_waiting(&self) -> Option<String> {
        let q = self.vm.qmp();
        let yank = json!({ "instances": [{ "type": "migration" }] });
        let _ = q.call::<Value>("yank", Some(yank)).await;
        let _ = q.call::<Value>("nbd-server-stop", None).await;
        let deadline = Instant::now() + SETTLE;
        loop {
            let (status, _) = self.status().await?;
            if matches!(status.as_str(), "completed" | "failed" | "cancelled")
                || Instant::now() > deadline
            {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(waited: u64, source_gone: u64) -> Clock {
        Clock {
            waited: Duration::from_secs(waited),
            timeout: Duration::from_secs(600),
            source_gone: Duration::from_secs(source_gone),
            stall: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_completed_migration_is_never_dropped_even_late_or_orphaned() {
        for clock in [at(0, 0), at(1200, 0), at(10, 100)] {
            assert_eq!(verdict("completed", None, clock), Verdict::Arrived);
        }
    }

    #[test]
    fn a_broken_stream_is_dropped_at_once_naming_why() {
        let v = verdict("failed", Some("Connection reset"), at(0, 0));
        assert_eq!(
            v,
            Verdict::Failed("the incoming migration failed: Connection reset".into())
        );
        assert!(matches!(
            verdict("cancelled", None, at(0, 0)),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn a_waiting_migration_waits_until_the_timeout_or_its_source_is_gone_for_the_stall() {
        for status in ["setup", "active", "device"] {
            assert_eq!(verdict(status, None, at(300, 0)), Verdict::Wait);
            assert_eq!(verdict(status, None, at(300, 20)), Verdict::Wait);
            let late = verdict(status, None, at(601, 0));
            assert!(
                matches!(&late, Verdict::GiveUp(r) if r.contains("within 600s")),
                "{late:?}"
            );
            let orphaned = verdict(status, None, at(40, 31));
            assert!(
                matches!(&orphaned, Verdict::GiveUp(r) if r.contains("cluster member")),
                "{orphaned:?}"
            );
        }
    }
}
