//! The schedule of `backup.sources`, checked every second against the configuration
//! applied last.
//!
//! - A source runs first when the daemon first sees it (at start, or after the apply that
//!   adds it or changes its schedule), then every `schedule.interval`; slots missed while a run lasted are skipped.
//! - `schedule.continuous`: runs follow each other back to back, each starting when the
//!   previous ended but no sooner than `interval` after the previous start.
//! - `schedule.window` (UTC): runs start only inside it; a window may pass midnight.
//! - A source never runs twice at once; runs of all sources take turns (one writer per
//!   repository index).

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use chrono::Timelike;
use hypernix_config::schema::backup::{BackupSchedule, BackupWindow};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::daemon::Daemon;

/// How often the schedule is checked.
const TICK: Duration = Duration::from_secs(1);

/// Runs backup sources when they are due.
pub(crate) struct Scheduler;

/// One source's place in the schedule.
struct Slot {
    schedule: BackupSchedule,
    next: Instant,
    started: Instant,
    task: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts checking the schedule of `daemon` until it is dropped.
    pub(crate) fn spawn(daemon: Weak<Daemon>) {
        tokio::spawn(async move {
            let mut slots: HashMap<String, Slot> = HashMap::new();
            loop {
                tokio::time::sleep(TICK).await;
                let Some(d) = daemon.upgrade() else { return };
                let Ok(config) = d.applied_config() else {
                    continue;
                };
                let sources = config.hypervisor.backup.sources;
                slots.retain(|name, _| sources.contains_key(name));
                let now = Instant::now();
                for (name, source) in sources {
                    let schedule = &source.schedule;
                    let interval = schedule.interval.std();
                    let slot = slots.entry(name.clone()).or_insert(Slot {
                        schedule: schedule.clone(),
                        next: now,
                        started: now,
                        task: None,
                    });
                    if slot.schedule != *schedule {
                        // A new schedule starts over, as for a new source.
                        slot.schedule = schedule.clone();
                        slot.next = now;
                    }
                    if let Some(task) = &slot.task {
                        if !task.is_finished() {
                            continue;
                        }
                        slot.task = None;
                        if schedule.continuous {
                            slot.next = (slot.started + interval).max(now);
                        }
                    }
                    if now < slot.next || !in_window(schedule.window.as_ref(), chrono::Utc::now()) {
                        continue;
                    }
                    slot.started = now;
                    if !schedule.continuous {
                        while slot.next <= now {
                            slot.next += interval.max(TICK);
                        }
                    }
                    let d = d.clone();
                    slot.task = Some(tokio::spawn(async move {
                        if let Err(e) = d.backup_source(&name).await {
                            tracing::warn!("{e}");
                        }
                    }));
                }
            }
        });
    }
}

/// Whether `now` (UTC) lies in `window`; no window is always.
fn in_window(window: Option<&BackupWindow>, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(w) = window else { return true };
    let minute = now.hour() * 60 + now.minute();
    let (start, end) = (w.start.minutes(), w.end.minutes());
    if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use hypernix_config::schema::backup::BackupWindow;

    use super::in_window;

    #[test]
    fn windows_hold_their_span_and_may_pass_midnight() {
        let at = |h, m| chrono::Utc.with_ymd_and_hms(2026, 1, 1, h, m, 0).unwrap();
        let w = |s: &str, e: &str| BackupWindow {
            start: s.parse().unwrap(),
            end: e.parse().unwrap(),
        };
        let night = w("22:00", "04:30");
        assert!(in_window(Some(&night), at(23, 0)));
        assert!(in_window(Some(&night), at(4, 29)));
        assert!(!in_window(Some(&night), at(4, 30)));
        assert!(!in_window(Some(&night), at(12, 0)));
        let day = w("09:00", "17:00");
        assert!(in_window(Some(&day), at(9, 0)));
        assert!(!in_window(Some(&day), at(17, 0)));
        assert!(in_window(None, at(3, 3)));
    }
}
