//! `security.principals`: who holds capabilities, and the temporal rules of each grant.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Scope, Security, check_positive};
use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::{Duration, Instant, TimeOfDay};

/// `security.principals.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    /// Kind of principal.
    #[serde(rename = "type")]
    pub kind: PrincipalKind,
    /// The principals in a group.
    #[serde(default)]
    pub members: Vec<String>,
    /// Capabilities held.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A kind of principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A program.
    Service,
    /// A set of principals that share grants.
    Group,
    /// A bearer token.
    Token,
}

/// `principals.NAME.grants[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grant {
    /// The capability granted.
    pub capability: String,
    /// Narrows the capability to resources with these labels.
    #[serde(default)]
    pub scope: Option<Scope>,
    /// When and how often the grant may be used.
    #[serde(default)]
    pub temporal: Temporal,
    /// Break-glass use.
    #[serde(default)]
    pub emergency: Emergency,
}

/// `grants[].temporal`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Temporal {
    /// When the grant is valid at all.
    pub validity: Validity,
    /// Weekly windows the grant is usable in.
    pub schedule: Option<Schedule>,
    /// Use counts and rates.
    pub usage: Usage,
}

/// `temporal.validity`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Validity {
    /// Valid from this instant.
    pub start: Option<Instant>,
    /// Valid until this instant.
    pub end: Option<Instant>,
    /// Valid for this long after it is first used.
    pub duration: Option<Duration>,
}

/// `temporal.schedule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Schedule {
    /// Time zone of the windows, such as `"UTC"` or `"Europe/Paris"`.
    pub timezone: String,
    /// The windows.
    pub windows: Vec<Window>,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            timezone: "UTC".into(),
            windows: Vec::new(),
        }
    }
}

/// `schedule.windows[]`: a time span on some days (it may run past midnight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    /// Days the window opens on.
    #[serde(default)]
    pub days: Vec<Day>,
    /// Opening time.
    pub start_time: TimeOfDay,
    /// Closing time.
    pub end_time: TimeOfDay,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Day {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

/// `temporal.usage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Usage {
    /// Most uses over the grant's life.
    pub max_uses: Option<u64>,
    /// Most uses per window.
    pub rate_limit: Option<RateLimit>,
}

/// `usage.rateLimit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u64,
    /// The window.
    pub window: Duration,
}

/// `grants[].emergency`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Emergency {
    /// The grant is for emergencies, and every use is announced.
    pub break_glass: bool,
    /// Who is told of each use.
    pub notification_list: Vec<String>,
}

/// Checks every principal: group members, grants and their temporal rules.
pub(super) fn validate(security: &Security, at: &AttrPath, problems: &mut Problems) {
    for (name, principal) in &security.principals {
        let path = at.join("principals").join(name);
        if principal.kind != PrincipalKind::Group && !principal.members.is_empty() {
            problems.at(
                path.join("members"),
                "only a group has members; set type = \"group\" or remove members",
            );
        }
        for (i, member) in principal.members.iter().enumerate() {
            if !security.principals.contains_key(member) {
                let item = path.join("members").join(index(i));
                problems.unknown_ref(item, "principal", member, security.principals.keys());
            }
        }
        if let Some(cycle) = group_cycle(security, name) {
            problems.at(
                path.join("members"),
                format!(
                    "groups contain each other ({}); remove one of these memberships",
                    cycle.join(" → ")
                ),
            );
        }
        for (i, grant) in principal.grants.iter().enumerate() {
            grant.validate(security, &path.join("grants").join(index(i)), problems);
        }
    }
}

/// A chain of groups that leads from group `start` back to it, if there is one.
fn group_cycle<'a>(security: &'a Security, start: &'a str) -> Option<Vec<&'a str>> {
    let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
    let mut seen = BTreeSet::new();
    while let Some((group, next)) = stack.last_mut() {
        let members = security
            .principals
            .get(*group)
            .filter(|p| p.kind == PrincipalKind::Group)
            .map_or(&[][..], |p| p.members.as_slice());
        let Some(member) = members.get(*next) else {
            stack.pop();
            continue;
        };
        *next += 1;
        if member == start {
            let mut cycle: Vec<&str> = stack.iter().map(|(g, _)| *g).collect();
            cycle.push(start);
            return Some(cycle);
        }
        if seen.insert(member.as_str()) {
            stack.push((member, 0));
        }
    }
    None
}

impl Grant {
    fn validate(&self, security: &Security, path: &AttrPath, problems: &mut Problems) {
        if !security.capabilities.contains_key(&self.capability) {
            problems.unknown_ref(
                path.join("capability"),
                "capability",
                &self.capability,
                security.capabilities.keys(),
            );
        }
        let temporal = path.join("temporal");
        let validity = &self.temporal.validity;
        if let (Some(start), Some(end)) = (validity.start, validity.end)
            && end <= start
        {
            problems.at(
                temporal.join("validity").join("end"),
                format!("{end} is not after start ({start}); make the grant end after it starts"),
            );
        }
        if let Some(duration) = validity.duration {
            check_positive(
                duration,
                temporal.join("validity").join("duration"),
                problems,
            );
        }
        if let Some(schedule) = &self.temporal.schedule {
            let path = temporal.join("schedule");
            if schedule.timezone.is_empty() || schedule.timezone.contains(char::is_whitespace) {
                problems.at(
                    path.join("timezone"),
                    format!(
                        "`{}` is not a time zone; use a name such as \"UTC\" or \"Europe/Paris\"",
                        schedule.timezone
                    ),
                );
            }
            for (i, window) in schedule.windows.iter().enumerate() {
                let item = path.join("windows").join(index(i));
                if window.days.is_empty() {
                    problems.at(
                        item.join("days"),
                        "is empty, so the window never opens; list the days, such as [\"monday\"]",
                    );
                }
                if window.start_time == window.end_time {
                    problems.at(
                        item.join("endTime"),
                        format!(
                            "equals startTime ({}), so the window is empty; use a different \
                             end (a window may run past midnight)",
                            window.start_time
                        ),
                    );
                }
            }
        }
        let usage = &self.temporal.usage;
        if usage.max_uses == Some(0) {
            problems.at(
                temporal.join("usage").join("maxUses"),
                "is 0, so the grant could never be used; use 1 or more, or remove the grant",
            );
        }
        if let Some(rate) = &usage.rate_limit {
            let path = temporal.join("usage").join("rateLimit");
            if rate.requests == 0 {
                problems.at(
                    path.join("requests"),
                    "is 0; allow 1 or more requests per window",
                );
            }
            check_positive(rate.window, path.join("window"), problems);
        }
        if self.emergency.break_glass && self.emergency.notification_list.is_empty() {
            problems.at(
                path.join("emergency").join("notificationList"),
                "is empty; a break-glass grant must tell someone when it is used, so list who",
            );
        }
    }
}
