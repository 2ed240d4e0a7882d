//! Typed scalar values that the configuration writes as strings: sizes, durations,
//! times of day, instants and cron schedules.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize, Serializer};

/// A byte size written as `"512Mi"`, `"1Gi"`, `"10G"`, `"4096"` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

const BINARY: [(&str, u64); 6] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
];
const DECIMAL: [(&str, u64); 6] = [
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// A size of `n` MiB.
    pub fn mib(n: u64) -> Size {
        Size(n << 20)
    }
}

impl FromStr for Size {
    type Err = ();

    fn from_str(s: &str) -> Result<Size, ()> {
        let s = s.trim();
        let s = s.strip_suffix('B').unwrap_or(s);
        let (digits, mult) = BINARY
            .iter()
            .chain(DECIMAL.iter())
            .find_map(|(suffix, mult)| s.strip_suffix(suffix).map(|d| (d, *mult)))
            .unwrap_or((s, 1));
        let digits = digits.trim();
        if digits.is_empty() {
            return Err(());
        }
        if let Ok(n) = digits.parse::<u64>() {
            return n.checked_mul(mult).map(Size).ok_or(());
        }
        // Fractions such as "1.5Gi" are allowed when they land on a whole byte.
        let f: f64 = digits.parse().map_err(|_| ())?;
        let bytes = f * mult as f64;
        if !f.is_finite() || f < 0.0 || bytes > u64::MAX as f64 || bytes.fract() != 0.0 {
            return Err(());
        }
        Ok(Size(bytes as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return write!(f, "0");
        }
        for (suffix, mult) in BINARY.iter().rev() {
            if self.0.is_multiple_of(*mult) {
                return write!(f, "{}{suffix}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        d.deserialize_any(ScalarVisitor::<Size>::new(
            "a size such as \"512Mi\" or \"1Gi\"",
        ))
    }
}

/// A span of time written as `"150ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"7d"` or `"2w"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

const DURATION_UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

impl Duration {
    /// A duration of `secs` seconds.
    pub fn secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    pub fn millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// The standard-library duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = ();

    fn from_str(s: &str) -> Result<Duration, ()> {
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(());
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or(())?;
            if split == 0 {
                return Err(());
            }
            let n: u128 = rest[..split].parse().map_err(|_| ())?;
            rest = &rest[split..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let nanos = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, n)| *n)
                .ok_or(())?;
            total = total
                .checked_add(n.checked_mul(nanos).ok_or(())?)
                .ok_or(())?;
            rest = &rest[unit_len..];
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| ())?;
        Ok(Duration(std::time::Duration::new(
            secs,
            (total % 1_000_000_000) as u32,
        )))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return write!(f, "0s");
        }
        for (unit, n) in DURATION_UNITS.iter().rev() {
            if nanos.is_multiple_of(*n) {
                return write!(f, "{}{unit}", nanos / n);
            }
        }
        write!(f, "{nanos}ns")
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(ScalarVisitor::<Duration>::new(
            "a duration such as \"150ms\", \"30s\" or \"7d\"",
        ))
    }
}

/// A wall-clock time written as `"HH:MM"` (`"24:00"` ends a day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    /// Hour, 0 to 24.
    pub hour: u8,
    /// Minute, 0 to 59 (0 when hour is 24).
    pub minute: u8,
}

impl TimeOfDay {
    /// Minutes since midnight.
    pub fn minutes(self) -> u32 {
        u32::from(self.hour) * 60 + u32::from(self.minute)
    }
}

impl FromStr for TimeOfDay {
    type Err = ();

    fn from_str(s: &str) -> Result<TimeOfDay, ()> {
        let (h, m) = s.split_once(':').ok_or(())?;
        if h.len() != 2 || m.len() != 2 {
            return Err(());
        }
        let hour: u8 = h.parse().map_err(|_| ())?;
        let minute: u8 = m.parse().map_err(|_| ())?;
        if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
            return Err(());
        }
        Ok(TimeOfDay { hour, minute })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TimeOfDay, D::Error> {
        d.deserialize_any(ScalarVisitor::<TimeOfDay>::new("a time of day \"HH:MM\""))
    }
}

/// An instant written in RFC 3339, such as `"2026-01-31T08:00:00Z"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub chrono::DateTime<chrono::FixedOffset>);

impl FromStr for Instant {
    type Err = ();

    fn from_str(s: &str) -> Result<Instant, ()> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(Instant)
            .map_err(|_| ())
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_rfc3339())
    }
}

impl Serialize for Instant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Instant, D::Error> {
        d.deserialize_any(ScalarVisitor::<Instant>::new(
            "an RFC 3339 instant such as \"2026-01-31T08:00:00Z\"",
        ))
    }
}

/// A five-field cron schedule (`minute hour day-of-month month day-of-week`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cron(pub String);

impl FromStr for Cron {
    type Err = ();

    fn from_str(s: &str) -> Result<Cron, ()> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let ok = fields.len() == 5
            && fields.iter().all(|f| {
                f.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | ',' | '-' | '/'))
            });
        if ok {
            Ok(Cron(fields.join(" ")))
        } else {
            Err(())
        }
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Cron {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cron, D::Error> {
        d.deserialize_any(ScalarVisitor::<Cron>::new(
            "a five-field cron schedule such as \"0 2 * * *\"",
        ))
    }
}

/// Parses a scalar from a string (or, for sizes, a whole number) and names what it expected.
struct ScalarVisitor<T> {
    expected: &'static str,
    _t: std::marker::PhantomData<T>,
}

impl<T> ScalarVisitor<T> {
    fn new(expected: &'static str) -> Self {
        ScalarVisitor {
            expected,
            _t: std::marker::PhantomData,
        }
    }
}

impl<T: FromStr> de::Visitor<'_> for ScalarVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expected)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse()
            .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        // Only sizes accept plain numbers (bytes); other scalars reject them below.
        if std::any::type_name::<T>() == std::any::type_name::<Size>() {
            return self.visit_str(&v.to_string());
        }
        Err(E::invalid_type(Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        match u64::try_from(v) {
            Ok(u) => self.visit_u64(u),
            Err(_) => Err(E::invalid_type(Unexpected::Signed(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("512Mi".parse::<Size>(), Ok(Size(512 << 20)));
        assert_eq!("1Gi".parse::<Size>(), Ok(Size(1 << 30)));
        assert_eq!("1.5Gi".parse::<Size>(), Ok(Size(3 << 29)));
        assert_eq!("10G".parse::<Size>(), Ok(Size(10_000_000_000)));
        assert_eq!("0".parse::<Size>(), Ok(Size(0)));
        assert_eq!("4096".parse::<Size>(), Ok(Size(4096)));
        for bad in [
            "",
            "Mi",
            "12Qi",
            "-1Gi",
            "1.2.3Mi",
            "99999999999Ei",
            "NaNGi",
        ] {
            assert!(bad.parse::<Size>().is_err(), "{bad}");
        }
        assert_eq!(Size(512 << 20).to_string(), "512Mi");
        let v: Size = serde_json::from_value(serde_json::json!(1024)).unwrap();
        assert_eq!(v, Size(1024));
        let e = serde_json::from_value::<Size>(serde_json::json!("lots")).unwrap_err();
        assert!(e.to_string().contains("expected a size"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!("150ms".parse::<Duration>(), Ok(Duration::millis(150)));
        assert_eq!("1h30m".parse::<Duration>(), Ok(Duration::secs(5400)));
        assert_eq!("7d".parse::<Duration>(), Ok(Duration::secs(7 * 86400)));
        for bad in ["", "5", "ms", "5 parsecs", "1.5h", "-3s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
        assert_eq!(Duration::secs(5400).to_string(), "90m");
        assert!(serde_json::from_value::<Duration>(serde_json::json!(5)).is_err());
    }

    #[test]
    fn times_and_instants() {
        assert_eq!(
            "09:30".parse::<TimeOfDay>(),
            Ok(TimeOfDay {
                hour: 9,
                minute: 30
            })
        );
        assert!("24:00".parse::<TimeOfDay>().is_ok());
        for bad in ["9:30", "24:01", "12:60", "noon", "12-30"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
        assert!("2026-01-31T08:00:00Z".parse::<Instant>().is_ok());
        assert!("2026-01-31".parse::<Instant>().is_err());
        assert!("0 2 * * *".parse::<Cron>().is_ok());
        assert!("0 2 * *".parse::<Cron>().is_err());
    }
}
