//! Policy constraints: bounds every resolved unit under a policy must satisfy.
//!
//! `constraints` is shaped like unit settings; at a leaf stands `{ min; max; oneOf; }`
//! (any of the three). `min` and `max` compare numbers, sizes (`"512Mi"`) or durations
//! (`"30s"`); `oneOf` lists the allowed values.

use hypernix_config::path::did_you_mean;
use hypernix_config::schema::compute::Unit;
use hypernix_config::{AttrPath, Config, Duration, Size};
use serde_json::{Map, Value};

use crate::error::ResolveError;
use crate::resolve::ResolvedUnit;

const KEYS: [&str; 3] = ["min", "max", "oneOf"];

/// Checks that every policy's constraints are well formed and name real fields.
pub fn check_shapes(config: &Config) -> Vec<ResolveError> {
    let template = serde_json::to_value(Unit::default()).unwrap_or_default();
    let mut errors = Vec::new();
    for (name, policy) in &config.hypervisor.compute.policies {
        let path = AttrPath::root()
            .join("compute")
            .join("policies")
            .join(name)
            .join("constraints");
        walk_shape(&policy.constraints, Some(&template), &path, &mut errors);
    }
    errors
}

fn walk_shape(
    node: &Map<String, Value>,
    template: Option<&Value>,
    path: &AttrPath,
    errors: &mut Vec<ResolveError>,
) {
    for (key, value) in node {
        let here = path.join(key);
        // Labels and free-form attribute sets accept any key below them.
        let sub = match template {
            Some(Value::Object(t)) if !t.is_empty() => match t.get(key) {
                Some(s) => Some(s),
                None => {
                    let hint = did_you_mean(key, t.keys().map(String::as_str));
                    errors.push(invalid(&here, format!("no unit setting `{key}`{hint}")));
                    continue;
                }
            },
            _ => None,
        };
        match value {
            Value::Object(m) if is_leaf(m) => {
                if let Some(bad) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
                    errors.push(invalid(
                        &here,
                        format!("unknown constraint `{bad}`; use min, max or oneOf"),
                    ));
                }
                if m.get("oneOf").is_some_and(|v| !v.is_array()) {
                    errors.push(invalid(
                        &here.join("oneOf"),
                        "expected a list of allowed values".into(),
                    ));
                }
                for bound in ["min", "max"] {
                    if let Some(b) = m.get(bound)
                        && magnitude(b).is_none()
                    {
                        errors.push(invalid(
                            &here.join(bound),
                            format!("expected a number, size or duration, got {b}"),
                        ));
                    }
                }
            }
            Value::Object(m) => walk_shape(m, sub, &here, errors),
            other => errors.push(invalid(
                &here,
                format!("expected {{ min; max; oneOf; }} or an attribute set of them, got {other}"),
            )),
        }
    }
}

fn is_leaf(m: &Map<String, Value>) -> bool {
    m.keys().any(|k| KEYS.contains(&k.as_str()))
}

fn invalid(path: &AttrPath, message: String) -> ResolveError {
    ResolveError::Invalid {
        path: path.to_string(),
        message,
    }
}

/// A comparable magnitude of a number, size or duration.
fn magnitude(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s
            .parse::<Size>()
            .map(|s| s.bytes() as f64)
            .or_else(|_| s.parse::<Duration>().map(|d| d.std().as_secs_f64()))
            .ok(),
        _ => None,
    }
}

/// Checks a resolved unit against the constraints of every policy it is under.
pub fn check(config: &Config, unit: &ResolvedUnit) -> Result<(), Vec<ResolveError>> {
    let policies = &config.hypervisor.compute.policies;
    if unit
        .policies
        .iter()
        .all(|p| policies[p].constraints.is_empty())
    {
        return Ok(());
    }
    let settings = serde_json::to_value(&unit.settings).unwrap_or_default();
    let mut errors = Vec::new();
    for policy in &unit.policies {
        let constraints = &config.hypervisor.compute.policies[policy].constraints;
        let mut ctx = Ctx {
            unit: &unit.name,
            policy,
            errors: &mut errors,
        };
        walk_check(constraints, &settings, "", &mut ctx);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

struct Ctx<'a> {
    unit: &'a str,
    policy: &'a str,
    errors: &'a mut Vec<ResolveError>,
}

fn walk_check(node: &Map<String, Value>, settings: &Value, prefix: &str, ctx: &mut Ctx<'_>) {
    for (key, c) in node {
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let value = settings.get(key).unwrap_or(&Value::Null);
        let Value::Object(c) = c else { continue };
        if !is_leaf(c) {
            walk_check(c, value, &field, ctx);
            continue;
        }
        let mut broken = |constraint: String| {
            ctx.errors.push(ResolveError::Constraint {
                unit: ctx.unit.into(),
                field: field.clone(),
                value: value.to_string(),
                constraint,
                policy: ctx.policy.into(),
            })
        };
        if let Some(Value::Array(allowed)) = c.get("oneOf")
            && !allowed.contains(value)
        {
            broken(format!("oneOf {}", Value::Array(allowed.clone())));
        }
        for (bound, ok) in [("min", f64::ge as fn(&f64, &f64) -> bool), ("max", f64::le)] {
            let Some(b) = c.get(bound) else { continue };
            match (magnitude(value), magnitude(b)) {
                (Some(v), Some(limit)) if ok(&v, &limit) => {}
                _ => broken(format!("{bound} {b}")),
            }
        }
    }
}
