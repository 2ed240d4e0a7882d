//! Layered merging of unit settings with provenance: attribute sets merge key by key,
//! any other value (lists included) is replaced whole by a later layer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::provenance::Source;

/// A value a later layer replaced with a different one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Override {
    /// Field path inside the unit, such as `resources.memory.size`.
    pub path: String,
    /// The layer that won.
    pub winner: Source,
    /// Its value.
    pub value: Value,
    /// The layer that lost.
    pub loser: Source,
    /// Its value.
    pub replaced: Value,
}

/// Settings merged so far, with the source of each field.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// The merged settings.
    pub tree: Map<String, Value>,
    /// The source of every field set, by dotted path.
    pub provenance: BTreeMap<String, Source>,
    /// Values replaced by later layers.
    pub overrides: Vec<Override>,
}

impl Layers {
    /// Applies one layer on top of what is there.
    pub fn apply(&mut self, layer: &Map<String, Value>, source: &Source) {
        self.apply_except(layer, source, &[]);
    }

    /// Applies one layer, leaving out its top-level attributes named in `skip`.
    pub fn apply_except(&mut self, layer: &Map<String, Value>, source: &Source, skip: &[&str]) {
        let mut tree = std::mem::take(&mut self.tree);
        self.apply_map(&mut tree, layer, source, "", skip);
        self.tree = tree;
    }

    fn apply_map(
        &mut self,
        into: &mut Map<String, Value>,
        layer: &Map<String, Value>,
        source: &Source,
        prefix: &str,
        skip: &[&str],
    ) {
        for (key, value) in layer {
            if skip.contains(&key.as_str()) {
                continue;
            }
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match (into.get_mut(key), value) {
                (Some(Value::Object(existing)), Value::Object(incoming)) => {
                    self.apply_map(existing, incoming, source, &path, &[]);
                }
                (existing, _) => {
                    let replaces_set = matches!(existing, Some(Value::Object(_)));
                    if let Some(old) = existing
                        && old != value
                        && let Some(loser) = self.provenance.get(&path)
                    {
                        self.overrides.push(Override {
                            path: path.clone(),
                            winner: source.clone(),
                            value: value.clone(),
                            loser: loser.clone(),
                            replaced: old.clone(),
                        });
                    }
                    if replaces_set {
                        let below = format!("{path}.");
                        self.provenance.retain(|p, _| !p.starts_with(&below));
                    }
                    self.set_leaves(&path, value, source);
                    into.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// Records `source` for `value` and every field below it.
    fn set_leaves(&mut self, path: &str, value: &Value, source: &Source) {
        match value {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    self.set_leaves(&format!("{path}.{k}"), v, source);
                }
            }
            _ => {
                self.provenance.insert(path.to_string(), source.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn later_layers_win_and_overrides_are_recorded() {
        let mut l = Layers::default();
        let p = Source::Policy {
            name: "p".into(),
            via: vec![],
        };
        l.apply(&obj(json!({"resources": {"memory": {"size": "1Gi"}}})), &p);
        l.apply(
            &obj(json!({"resources": {"memory": {"size": "2Gi"}, "compute": {"units": 200}}})),
            &Source::Unit,
        );
        assert_eq!(l.tree["resources"]["memory"]["size"], "2Gi");
        assert_eq!(l.provenance["resources.memory.size"], Source::Unit);
        assert_eq!(l.provenance["resources.compute.units"], Source::Unit);
        assert_eq!(l.overrides.len(), 1);
        assert_eq!(l.overrides[0].loser, p);
    }

    #[test]
    fn equal_values_are_not_overrides() {
        let mut l = Layers::default();
        l.apply(
            &obj(json!({"labels": {"a": "x"}})),
            &Source::ComputeDefaults,
        );
        l.apply(&obj(json!({"labels": {"a": "x", "b": "y"}})), &Source::Unit);
        assert!(l.overrides.is_empty());
        assert_eq!(l.provenance["labels.a"], Source::Unit);
    }
}
