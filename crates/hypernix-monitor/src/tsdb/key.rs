//! Series identity: a metric name and its labels.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A series: a metric name and its labels, ordered by name then labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric name, e.g. `cpu_seconds`.
    pub name: String,
    /// The labels, e.g. `unit="web"`.
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    /// A series without labels.
    pub fn new(name: impl Into<String>) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            labels: BTreeMap::new(),
        }
    }

    /// This series with one more label (replacing a label of the same name).
    pub fn with(mut self, label: impl Into<String>, value: impl Into<String>) -> SeriesKey {
        self.labels.insert(label.into(), value.into());
        self
    }
}

/// Prometheus style: `name{a="b",c="d"}`, or `name` without labels; `\`, `"` and newlines
/// in label values are escaped as Prometheus does.
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (label, value)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            write!(f, "{label}=\"{value}\"")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::SeriesKey;

    #[test]
    fn displays_prometheus_style() {
        assert_eq!(SeriesKey::new("up").to_string(), "up");
        let key = SeriesKey::new("cpu").with("unit", "web").with("a", "x\"y");
        assert_eq!(key.to_string(), r#"cpu{a="x\"y",unit="web"}"#);
        assert_eq!(key.clone().with("a", "z").labels["a"], "z");
    }
}
