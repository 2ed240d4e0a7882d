//! Typing the merged JSON tree into [`Hypervisor`], collecting every error rather than
//! the first: after each error the offending attribute is set aside and typing runs again.

use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::path::{AttrPath, did_you_mean};
use crate::schema::Hypervisor;

/// Bounds the retries; a configuration with more errors than this lists the first ones.
const MAX_ERRORS: usize = 200;

/// Types `raw` (the `hypervisor` attribute set) or returns every error found.
pub fn parse(raw: &Map<String, Value>) -> Result<Hypervisor, Vec<ConfigError>> {
    let mut tree = Value::Object(raw.clone());
    let mut errors = Vec::new();
    let mut removed_paths: Vec<Vec<String>> = Vec::new();
    loop {
        match serde_path_to_error::deserialize::<_, Hypervisor>(&tree) {
            Ok(h) if errors.is_empty() => return Ok(h),
            Ok(_) => return Err(errors),
            Err(e) => {
                let segments = segments(e.path());
                let message = humanize(&e.inner().to_string());
                let (path, removed) = locate(&mut tree, segments, &message);
                // A required attribute we set aside ourselves is not a second error.
                let follow_on =
                    quoted_after(&message, "required attribute `").is_some_and(|name| {
                        let mut missing = path.clone();
                        missing.push(name);
                        removed_paths.contains(&missing)
                    });
                if !follow_on {
                    errors.push(ConfigError::Invalid {
                        path: AttrPath::root().join_all(&path).to_string(),
                        message,
                    });
                }
                removed_paths.push(path);
                if !removed || errors.len() >= MAX_ERRORS {
                    return Err(errors);
                }
            }
        }
    }
}

impl AttrPath {
    fn join_all(&self, segments: &[String]) -> AttrPath {
        segments.iter().fold(self.clone(), |p, s| p.join(s))
    }
}

fn segments(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(crate::path::index(*index)),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Finds where the error belongs and removes that attribute so typing can go on.
/// Returns the path to report and whether anything was removed.
fn locate(tree: &mut Value, mut path: Vec<String>, message: &str) -> (Vec<String>, bool) {
    // An unknown attribute is reported at its own path; serde reports it at the parent.
    if let Some(name) = quoted_after(message, "unknown attribute `")
        && get(tree, &path).and_then(|v| v.get(&name)).is_some()
    {
        path.push(name);
    }
    // A missing required attribute invalidates the set that lacks it.
    if path.is_empty() {
        return (path, false);
    }
    let removed = remove(tree, &path);
    (path, removed)
}

fn get<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| a.get(i)),
        _ => None,
    })
}

fn remove(tree: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut v = tree;
    for seg in parent {
        v = match v {
            Value::Object(m) => match m.get_mut(seg) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(a) => match list_index(seg).and_then(|i| a.get_mut(i)) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match v {
        Value::Object(m) => m.remove(last).is_some(),
        // Replacing a list item by null keeps the indexes of later items stable; the next
        // pass reports nothing new for it because the parent list is reported already.
        Value::Array(a) => match list_index(last) {
            Some(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn list_index(seg: &str) -> Option<usize> {
    seg.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_string())
}

/// Rewrites serde's wording into the configuration's: attributes, not fields, and a
/// "did you mean" for a misspelt attribute or enum value.
fn humanize(message: &str) -> String {
    for (serde_word, our_word) in [
        ("unknown field `", "attribute"),
        ("unknown variant `", "value"),
    ] {
        if let Some(name) = quoted_after(message, serde_word) {
            let expected = expected_names(message);
            let hint = did_you_mean(&name, expected.iter().map(String::as_str));
            let list = if expected.is_empty() {
                "there are none here".to_string()
            } else {
                format!("expected one of {}", expected.join(", "))
            };
            return format!("unknown {our_word} `{name}`{hint} ({list})");
        }
    }
    if let Some(name) = quoted_after(message, "missing field `") {
        return format!("required attribute `{name}` is missing");
    }
    let mut m = message.replace("invalid type: ", "wrong type: got ");
    for (serde_word, ours) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a non-negative whole number"),
        ("expected usize", "expected a non-negative whole number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected an attribute set"),
        ("expected a string", "expected a string"),
    ] {
        if let Some(rest) = m.strip_suffix(serde_word) {
            m = format!("{rest}{ours}");
        }
    }
    if let Some(at) = m.find("expected struct ") {
        m = format!("{}expected an attribute set", &m[..at]);
    }
    m
}

/// The names serde lists after "expected one of" / "expected".
fn expected_names(message: &str) -> Vec<String> {
    let Some(at) = message.find("expected") else {
        return Vec::new();
    };
    message[at..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}
