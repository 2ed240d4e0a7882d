//! Deep merging of configuration files: attribute sets merge key by key, and any other
//! value may be defined once (or again, identically).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::path::AttrPath;

/// Accumulates files into one tree, remembering which file defined each attribute.
#[derive(Debug, Default)]
pub struct Merger {
    tree: Map<String, Value>,
    origins: HashMap<Vec<String>, PathBuf>,
}

impl Merger {
    /// Merges `value` (a `hypervisor` attribute set) from `file` into the tree.
    pub fn add(&mut self, value: Map<String, Value>, file: &Path, errors: &mut Vec<ConfigError>) {
        let mut path = vec!["hypervisor".to_string()];
        let mut tree = std::mem::take(&mut self.tree);
        self.merge_map(&mut tree, value, file, &mut path, errors);
        self.tree = tree;
    }

    /// The merged tree.
    pub fn finish(self) -> Map<String, Value> {
        self.tree
    }

    fn merge_map(
        &mut self,
        into: &mut Map<String, Value>,
        from: Map<String, Value>,
        file: &Path,
        path: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        for (key, incoming) in from {
            path.push(key.clone());
            match into.get_mut(&key) {
                None => {
                    self.origins.insert(path.clone(), file.to_path_buf());
                    into.insert(key, incoming);
                }
                Some(Value::Object(existing)) if incoming.is_object() => {
                    let Value::Object(incoming) = incoming else {
                        unreachable!("checked by the guard")
                    };
                    self.merge_map(existing, incoming, file, path, errors);
                }
                Some(existing) if *existing == incoming => {}
                Some(existing) => errors.push(ConfigError::Conflict {
                    path: AttrPath::from_segments(path.iter().cloned()).to_string(),
                    first: self.origin(path),
                    first_value: brief(existing),
                    second: file.to_path_buf(),
                    second_value: brief(&incoming),
                }),
            }
            path.pop();
        }
    }

    /// The file that first defined `path` or its nearest defined ancestor.
    fn origin(&self, path: &[String]) -> PathBuf {
        (1..=path.len())
            .rev()
            .find_map(|n| self.origins.get(&path[..n]))
            .cloned()
            .unwrap_or_default()
    }
}

/// A value shortened for an error message.
pub(crate) fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
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
    fn merges_deeply_and_reports_conflicts_with_both_files() {
        let mut m = Merger::default();
        let mut errors = Vec::new();
        m.add(
            obj(json!({"compute": {"units": {"a": {"tags": ["x"]}}}})),
            Path::new("a.nix"),
            &mut errors,
        );
        m.add(
            obj(json!({"compute": {"units": {"b": {}, "a": {"tags": ["x"]}}}})),
            Path::new("b.nix"),
            &mut errors,
        );
        assert!(errors.is_empty());
        m.add(
            obj(json!({"compute": {"units": {"a": {"tags": ["y"]}}}})),
            Path::new("c.nix"),
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        let msg = errors[0].to_string();
        assert!(msg.starts_with("hypervisor.compute.units.a.tags:"), "{msg}");
        assert!(msg.contains("a.nix") && msg.contains("c.nix"), "{msg}");
        let tree = m.finish();
        assert!(tree["compute"]["units"]["b"].is_object());
    }

    #[test]
    fn attrset_against_scalar_is_a_conflict() {
        let mut m = Merger::default();
        let mut errors = Vec::new();
        m.add(
            obj(json!({"api": {"listen": "x"}})),
            Path::new("a.json"),
            &mut errors,
        );
        m.add(obj(json!({"api": 3})), Path::new("b.json"), &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("hypervisor.api:"));
    }
}
