//! Resolutions, how long each is kept, and choosing one for a query.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The resolution points are stored and queried at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Resolution {
    /// Samples as appended.
    Raw,
    /// One-minute buckets.
    Minute,
    /// Five-minute buckets.
    FiveMinutes,
    /// One-hour buckets.
    Hour,
}

impl Resolution {
    /// Finest to coarsest.
    pub const ALL: [Resolution; 4] = [
        Resolution::Raw,
        Resolution::Minute,
        Resolution::FiveMinutes,
        Resolution::Hour,
    ];

    /// Bucket width in milliseconds; for `Raw`, 1 s: the finest sampling interval
    /// [`Retention::pick`] assumes when it counts raw points.
    pub fn step_ms(self) -> i64 {
        match self {
            Resolution::Raw => 1_000,
            Resolution::Minute => 60_000,
            Resolution::FiveMinutes => 300_000,
            Resolution::Hour => 3_600_000,
        }
    }

    /// The resolution this one is rolled up from (`None` for `Raw`).
    pub fn source(self) -> Option<Resolution> {
        match self {
            Resolution::Raw => None,
            Resolution::Minute => Some(Resolution::Raw),
            Resolution::FiveMinutes => Some(Resolution::Minute),
            Resolution::Hour => Some(Resolution::FiveMinutes),
        }
    }

    /// The start of the bucket holding `at_ms` (saturating at `i64::MIN`).
    pub fn bucket(self, at_ms: i64) -> i64 {
        at_ms.saturating_sub(at_ms.rem_euclid(self.step_ms()))
    }
}

/// How long points of each resolution are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw samples.
    pub raw: Duration,
    /// One-minute buckets.
    pub minute: Duration,
    /// Five-minute buckets.
    pub five_minutes: Duration,
    /// One-hour buckets.
    pub hour: Duration,
}

/// Raw 24 h, one-minute 7 d, five-minute 30 d, one-hour 400 d.
impl Default for Retention {
    fn default() -> Retention {
        const DAY: u64 = 86_400;
        Retention {
            raw: Duration::from_secs(DAY),
            minute: Duration::from_secs(7 * DAY),
            five_minutes: Duration::from_secs(30 * DAY),
            hour: Duration::from_secs(400 * DAY),
        }
    }
}

impl Retention {
    /// How long `resolution` is kept.
    pub fn of(&self, resolution: Resolution) -> Duration {
        match resolution {
            Resolution::Raw => self.raw,
            Resolution::Minute => self.minute,
            Resolution::FiveMinutes => self.five_minutes,
            Resolution::Hour => self.hour,
        }
    }

    /// The oldest time still kept at `resolution` when the clock reads `now_ms`.
    pub fn cutoff(&self, resolution: Resolution, now_ms: i64) -> i64 {
        let keep = i64::try_from(self.of(resolution).as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(keep)
    }

    /// The finest resolution whose retention still covers `from_ms` at `now_ms` and that
    /// yields at most `max_points` points over `[from_ms, to_ms]` (raw counted at one
    /// point per second); `Hour` when none does.
    pub fn pick(&self, now_ms: i64, from_ms: i64, to_ms: i64, max_points: usize) -> Resolution {
        let span = to_ms.saturating_sub(from_ms).max(0);
        Resolution::ALL
            .into_iter()
            .find(|&r| {
                let points = span / r.step_ms() + 1;
                from_ms >= self.cutoff(r, now_ms)
                    && usize::try_from(points).is_ok_and(|p| p <= max_points)
            })
            .unwrap_or(Resolution::Hour)
    }
}

#[cfg(test)]
mod tests {
    use super::{Resolution, Retention};

    const HOUR: i64 = 3_600_000;

    #[test]
    fn buckets_floor_toward_minus_infinity() {
        assert_eq!(Resolution::Minute.bucket(119_999), 60_000);
        assert_eq!(Resolution::Minute.bucket(-1), -60_000);
        assert_eq!(Resolution::Hour.bucket(i64::MIN), i64::MIN);
    }

    #[test]
    fn pick_takes_the_finest_that_fits() {
        let r = Retention::default();
        let now = 1_000 * 24 * HOUR;
        // Ten minutes ago, 1,000 points: raw (601 points at 1 s) fits.
        assert_eq!(r.pick(now, now - HOUR / 6, now, 1_000), Resolution::Raw);
        // The last 6 hours in 1,000 points: raw would be 21,601, minutes 361.
        assert_eq!(r.pick(now, now - 6 * HOUR, now, 1_000), Resolution::Minute);
        // Two days ago: raw no longer covers it; 2,881 minutes, 577 five-minute buckets.
        assert_eq!(
            r.pick(now, now - 48 * HOUR, now, 1_000),
            Resolution::FiveMinutes
        );
        // Sixty days ago: only hours are kept that long.
        assert_eq!(
            r.pick(now, now - 1_440 * HOUR, now, 5_000),
            Resolution::Hour
        );
        // Nothing fits: the coarsest.
        assert_eq!(r.pick(now, now - 1_440 * HOUR, now, 10), Resolution::Hour);
    }
}
