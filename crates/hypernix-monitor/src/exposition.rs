//! The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE` and one line
//! per sample.
//!
//! Written here rather than with `prometheus-client`: that crate's registry holds typed
//! metrics registered up front and encodes OpenMetrics, while the daemon renders a
//! snapshot of whatever series its collector found, in the format Prometheus scrapes.

use std::collections::BTreeMap;
use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One metric family: a name, its help text and type, and its samples by label set.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The metric name, such as `hypernix_unit_cpu_seconds_total`.
    pub name: String,
    /// What it measures.
    pub help: String,
    /// Counter or gauge.
    pub kind: MetricType,
    /// Samples: labels and value.
    pub samples: Vec<(BTreeMap<String, String>, f64)>,
}

/// The families in the text format, families and samples in the order given.
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        };
        let help = f.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {} {help}", f.name);
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for (labels, value) in &f.samples {
            out.push_str(&f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = write!(out, "{k}=\"{v}\"");
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*value));
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_labels_and_help_and_spells_special_values() {
        let fam = Family {
            name: "x_total".into(),
            help: "a \\ b\nc".into(),
            kind: MetricType::Counter,
            samples: vec![
                (BTreeMap::from([("u".into(), "a\"b\\c\nd".into())]), 1.5),
                (BTreeMap::new(), f64::INFINITY),
                (BTreeMap::new(), f64::NAN),
            ],
        };
        assert_eq!(
            render(&[fam]),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{u=\"a\\\"b\\\\c\\nd\"} 1.5\nx_total +Inf\nx_total NaN\n"
        );
    }
}
