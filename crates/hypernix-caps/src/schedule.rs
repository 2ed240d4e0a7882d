//! Weekly schedule windows in a time zone: the Datalog check a token carries, and the
//! `local_time(zone, day, minute)` facts the authorizer supplies, computed with chrono-tz so
//! daylight-saving transitions are handled.

use std::collections::BTreeSet;

use biscuit_auth::builder::{Term, int, string};
use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use hypernix_config::schema::security::{Day, Schedule};

use crate::error::CapsError;

/// Parses a time zone name such as `Europe/Paris`.
pub fn zone(name: &str) -> Result<Tz, CapsError> {
    name.parse::<Tz>().map_err(|_| {
        CapsError::Config(format!(
            "unknown time zone {name:?}; use an IANA name such as \"UTC\" or \"Europe/Paris\""
        ))
    })
}

/// The day, and minute of the day, at `now` in `tz`.
pub fn local_time(tz: Tz, now: DateTime<Utc>) -> (&'static str, i64) {
    let local = now.with_timezone(&tz);
    let day = day_name(local.weekday());
    (day, i64::from(local.hour() * 60 + local.minute()))
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

fn config_day(d: Day) -> Weekday {
    match d {
        Day::Monday => Weekday::Mon,
        Day::Tuesday => Weekday::Tue,
        Day::Wednesday => Weekday::Wed,
        Day::Thursday => Weekday::Thu,
        Day::Friday => Weekday::Fri,
        Day::Saturday => Weekday::Sat,
        Day::Sunday => Weekday::Sun,
    }
}

/// The Datalog check of a schedule (`None` when it has no windows): one alternative per
/// window, two for a window that runs past midnight (the evening on its days, the early
/// morning on the days after). A window without days opens every day.
pub fn check(schedule: &Schedule) -> Result<Option<String>, CapsError> {
    zone(&schedule.timezone)?;
    let tz = string(&schedule.timezone);
    let mut alternatives = Vec::new();
    for w in &schedule.windows {
        let days: Vec<Weekday> = if w.days.is_empty() {
            all_days()
        } else {
            w.days.iter().map(|d| config_day(*d)).collect()
        };
        let (start, end) = (
            i64::from(w.start_time.minutes()),
            i64::from(w.end_time.minutes()),
        );
        let set = |days: &mut dyn Iterator<Item = Weekday>| {
            Term::Set(days.map(|d| string(day_name(d))).collect::<BTreeSet<_>>())
        };
        if start < end {
            alternatives.push(format!(
                "local_time({tz}, $d, $m), {}.contains($d), $m >= {}, $m < {}",
                set(&mut days.iter().copied()),
                int(start),
                int(end)
            ));
        } else {
            alternatives.push(format!(
                "local_time({tz}, $d, $m), {}.contains($d), $m >= {}",
                set(&mut days.iter().copied()),
                int(start)
            ));
            alternatives.push(format!(
                "local_time({tz}, $d, $m), {}.contains($d), $m < {}",
                set(&mut days.iter().map(|d| d.succ())),
                int(end)
            ));
        }
    }
    if alternatives.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!("check if {}", alternatives.join(" or "))))
}

fn all_days() -> Vec<Weekday> {
    [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ]
    .to_vec()
}
