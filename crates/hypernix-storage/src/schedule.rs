//! When placement runs (`storage.fabric.movement`): continuously every round, or only in
//! the minutes that cron windows name; and how fast moves may copy.

use chrono::{DateTime, Datelike, Timelike, Utc};
use hypernix_config::schema::storage::{Movement as MovementConfig, MovementEngine};
use hypernix_config::{Cron, Size};

use crate::error::StorageError;

/// A five-field cron expression (minute hour day-of-month month day-of-week) in UTC:
/// `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists with `,`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSpec {
    fields: [Vec<bool>; 5],
    any_dom: bool,
    any_dow: bool,
}

const RANGES: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];

impl CronSpec {
    /// Parses `expr`; the error says which field is wrong.
    pub fn parse(expr: &str) -> Result<CronSpec, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("{expr:?} has {} fields, cron needs 5", parts.len()));
        }
        let mut fields: [Vec<bool>; 5] = Default::default();
        for (i, (part, &(lo, hi))) in parts.iter().zip(&RANGES).enumerate() {
            let mut set = vec![false; hi as usize + 1];
            for item in part.split(',') {
                let bad = || {
                    format!(
                        "field {} of {expr:?} ({item:?}) is not a number, range or step in {lo}-{hi}",
                        i + 1
                    )
                };
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (r, s.parse::<u32>().ok().filter(|&s| s > 0).ok_or_else(bad)?),
                    None => (item, 1),
                };
                let (a, b) = match range {
                    "*" => (lo, hi),
                    r => match r.split_once('-') {
                        Some((a, b)) => {
                            (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?)
                        }
                        None => {
                            let a: u32 = r.parse().map_err(|_| bad())?;
                            (a, if step > 1 { hi } else { a })
                        }
                    },
                };
                if a < lo || b > hi || a > b {
                    return Err(bad());
                }
                for v in (a..=b).step_by(step as usize) {
                    set[v as usize] = true;
                }
            }
            fields[i] = set;
        }
        // Sunday is 0 or 7.
        fields[4][0] |= fields[4][7];
        Ok(CronSpec {
            any_dom: parts[2] == "*",
            any_dow: parts[4] == "*",
            fields,
        })
    }

    /// Whether the minute of `t` is one the expression names.
    pub fn matches(&self, t: DateTime<Utc>) -> bool {
        let f = &self.fields;
        let dom = f[2][t.day() as usize];
        let dow = f[4][t.weekday().num_days_from_sunday() as usize];
        let day = match (self.any_dom, self.any_dow) {
            (false, false) => dom || dow,
            _ => dom && dow,
        };
        f[0][t.minute() as usize] && f[1][t.hour() as usize] && f[3][t.month() as usize] && day
    }
}

/// How placement runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Engine {
    /// Placement is off (`movement.enable = false`).
    Off,
    /// A round every [`Movement::round`].
    Continuous,
    /// Promotions only in minutes `promotion` names, demotions only in those `demotion`
    /// names (a missing window: never).
    Scheduled {
        /// `schedule.promotionWindow`.
        promotion: Option<Box<CronSpec>>,
        /// `schedule.demotionWindow`.
        demotion: Option<Box<CronSpec>>,
    },
}

/// `storage.fabric.movement` as the store uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Movement {
    /// When rounds run.
    pub engine: Engine,
    /// Bytes per second moves may copy at most (`bandwidth.limit`; `None`: unlimited).
    pub bandwidth: Option<u64>,
    /// Seconds between rounds (the scheduled engine checks its windows this often too).
    pub round: u64,
}

impl Default for Movement {
    /// Continuous, unlimited, a round a minute.
    fn default() -> Self {
        Movement {
            engine: Engine::Continuous,
            bandwidth: None,
            round: 60,
        }
    }
}

/// Parses a rate such as `100Mi/s`, `50MB/s` or `1Gbps` into bytes per second.
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(bits) = s.strip_suffix("bps") {
        let bits = bits.parse::<Size>().ok()?.bytes();
        return Some(bits / 8).filter(|&b| b > 0);
    }
    let bytes = s.strip_suffix("/s")?.parse::<Size>().ok()?.bytes();
    Some(bytes).filter(|&b| b > 0)
}

impl Movement {
    /// Reads `storage.fabric.movement`.
    pub fn from_config(m: &MovementConfig) -> Result<Movement, StorageError> {
        let at = "storage.fabric.movement";
        let cron = |c: &Option<Cron>, name: &str| -> Result<Option<Box<CronSpec>>, StorageError> {
            c.as_ref()
                .map(|c| {
                    CronSpec::parse(&c.0).map(Box::new).map_err(|e| {
                        StorageError::Config(format!(
                            "{at}.schedule.{name}: {e}; write it like \"0 2 * * *\""
                        ))
                    })
                })
                .transpose()
        };
        let engine = match (m.enable, m.engine) {
            (false, _) => Engine::Off,
            (true, MovementEngine::Continuous) => Engine::Continuous,
            (true, MovementEngine::Scheduled) => Engine::Scheduled {
                promotion: cron(&m.schedule.promotion_window, "promotionWindow")?,
                demotion: cron(&m.schedule.demotion_window, "demotionWindow")?,
            },
            (true, MovementEngine::Triggered) => {
                return Err(StorageError::Config(format!(
                    "{at}.engine: triggered is not implemented; use continuous or scheduled"
                )));
            }
        };
        let bandwidth = match &m.bandwidth.limit {
            None => None,
            Some(l) => Some(parse_rate(l).ok_or_else(|| {
                StorageError::Config(format!(
                    "{at}.bandwidth.limit: {l:?} is not a rate; write it like \"100Mi/s\", \"50MB/s\" or \"1Gbps\""
                ))
            })?),
        };
        Ok(Movement {
            engine,
            bandwidth,
            round: 60,
        })
    }

    /// Which moves a round at `t` may make: (promotions, demotions).
    pub fn allowed(&self, t: DateTime<Utc>) -> (bool, bool) {
        match &self.engine {
            Engine::Off => (false, false),
            Engine::Continuous => (true, true),
            Engine::Scheduled {
                promotion,
                demotion,
            } => (
                promotion.as_ref().is_some_and(|c| c.matches(t)),
                demotion.as_ref().is_some_and(|c| c.matches(t)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn cron_fields_ranges_steps_and_days() {
        let c = CronSpec::parse("0 2 * * *").unwrap();
        assert!(c.matches(at(2026, 11, 26, 2, 0)));
        assert!(!c.matches(at(2026, 11, 26, 2, 1)));
        assert!(!c.matches(at(2026, 11, 26, 3, 0)));
        let c = CronSpec::parse("*/15 9-17 * * 1-5").unwrap();
        // 2026-11-26 is a Thursday, 2026-11-29 a Sunday.
        assert!(c.matches(at(2026, 11, 26, 9, 45)));
        assert!(!c.matches(at(2026, 11, 26, 9, 50)));
        assert!(!c.matches(at(2026, 11, 29, 10, 0)));
        let c = CronSpec::parse("0 0 1 * 7").unwrap();
        // Day of month or Sunday, as cron does when both are set.
        assert!(c.matches(at(2026, 11, 29, 0, 0)) && c.matches(at(2026, 12, 1, 0, 0)));
        assert!(!c.matches(at(2026, 12, 2, 0, 0)));
        for bad in [
            "* * * *",
            "60 * * * *",
            "a * * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "MON * * * *",
        ] {
            assert!(CronSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates_parse_in_bytes_per_second() {
        assert_eq!(parse_rate("100Mi/s"), Some(100 << 20));
        assert_eq!(parse_rate("50MB/s"), Some(50_000_000));
        assert_eq!(parse_rate("1Gbps"), Some(125_000_000));
        for bad in ["100", "x/s", "0/s", "Mi/s"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }
}
