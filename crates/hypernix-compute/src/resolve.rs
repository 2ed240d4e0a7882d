//! Resolution of a compute unit: `compute.defaults` → policies (list order, included
//! policies first) → tags (ascending priority; equal priority in list order) → the unit's
//! own settings, each field recording the layer that set it.

use std::collections::{BTreeMap, HashMap, HashSet};

use hypernix_compose::{ComposeError, Composed, Values};
use hypernix_config::path::did_you_mean;
use hypernix_config::schema::compute::Unit;
use hypernix_config::{AttrPath, Config, Size};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::constraints;
use crate::error::ResolveError;
use crate::merge::{Layers, Override};
use crate::provenance::{Source, TagVia};
use crate::resources::{self, Cpu};

/// Unit attributes that name layers rather than settings: tags and policies may not set them.
const META_KEYS: [&str; 4] = ["tags", "policies", "uuid", "blueprint"];

/// A compute unit with every setting resolved.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedUnit {
    /// The unit's name.
    pub name: String,
    /// The resolved settings, defaults filled in.
    pub settings: Unit,
    /// Policies applied, in order.
    pub policies: Vec<String>,
    /// Tags applied, in order (lowest precedence first).
    pub tags: Vec<AppliedTag>,
    /// Concrete CPU resources.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Size,
    /// The source of every field a layer set; fields absent here are schema defaults.
    pub provenance: BTreeMap<String, Source>,
    /// Values that a higher-precedence layer replaced.
    pub overrides: Vec<Override>,
    /// The unit's blueprint and what composing it gave (the daemon renders its seed,
    /// ports and volumes from it).
    #[serde(skip)]
    pub blueprint: Option<(String, Result<Composed, ComposeError>)>,
}

impl ResolvedUnit {
    /// The source of a field path, `Default` when no layer set it.
    pub fn source_of(&self, path: &str) -> Source {
        (0..=path.len())
            .rev()
            .filter(|&i| i == path.len() || path.as_bytes()[i] == b'.')
            .find_map(|i| self.provenance.get(&path[..i]))
            .cloned()
            .unwrap_or(Source::Default)
    }
}

/// A tag as applied to a unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedTag {
    /// The tag.
    pub name: String,
    /// Its priority.
    pub priority: i64,
    /// How the unit got it, when not listed by the unit.
    pub via: Option<TagVia>,
}

/// Resolves every unit, returning them all or every error found.
pub fn resolve_all(config: &Config) -> Result<BTreeMap<String, ResolvedUnit>, Vec<ResolveError>> {
    let mut errors = check_layers(config);
    let mut units = BTreeMap::new();
    let mut cache = LayerCache::default();
    for name in config.hypervisor.compute.units.keys() {
        match resolve_cached(config, name, &mut cache) {
            Ok(u) => {
                units.insert(name.clone(), u);
            }
            Err(e) => errors.extend(e),
        }
    }
    errors.dedup();
    if errors.is_empty() {
        Ok(units)
    } else {
        Err(errors)
    }
}

/// Resolves one unit.
pub fn resolve_unit(config: &Config, name: &str) -> Result<ResolvedUnit, Vec<ResolveError>> {
    resolve_cached(config, name, &mut LayerCache::default())
}

/// Units that list the same policies and tags share everything below their own layer.
type LayerCache<'a> = HashMap<(&'a [String], &'a [String]), Base>;

/// A unit's policies, tags and their merged layers, before its own settings.
#[derive(Clone)]
struct Base {
    policies: Vec<(String, Vec<String>)>,
    tags: Vec<AppliedTag>,
    layers: Layers,
}

fn resolve_cached<'a>(
    config: &'a Config,
    name: &str,
    cache: &mut LayerCache<'a>,
) -> Result<ResolvedUnit, Vec<ResolveError>> {
    let compute = &config.hypervisor.compute;
    let unit_path = AttrPath::root().join("compute").join("units").join(name);
    let Some(unit) = compute.units.get(name) else {
        return Err(vec![ResolveError::UnknownRef {
            path: "hypervisor.compute.units".into(),
            kind: "unit",
            name: name.into(),
            hint: did_you_mean(name, compute.units.keys().map(String::as_str)),
        }]);
    };
    let key = (unit.policies.as_slice(), unit.tags.as_slice());
    let Base {
        policies,
        tags,
        mut layers,
    } = match cache.get(&key) {
        Some(base) => base.clone(),
        None => {
            let base = base_layers(config, unit, &unit_path)?;
            cache.insert(key, base.clone());
            base
        }
    };
    let raw_unit = config
        .raw
        .get("compute")
        .and_then(|c| c.get("units"))
        .and_then(|u| u.get(name))
        .and_then(Value::as_object);
    if let Some(own) = raw_unit {
        layers.apply_except(own, &Source::Unit, &["tags", "policies"]);
    }

    let mut tree = layers.tree;
    for key in ["tags", "policies"] {
        if let Some(v) = own_meta(unit, key) {
            tree.insert(key.into(), v);
        }
    }
    let mut settings: Unit = match serde_json::from_value(Value::Object(tree)) {
        Ok(s) => s,
        Err(e) => {
            return Err(vec![ResolveError::Invalid {
                path: unit_path.to_string(),
                message: format!("the merged settings do not type-check: {e}"),
            }]);
        }
    };
    let mut provenance = layers.provenance;
    let blueprint = fold_blueprint(config, &mut settings, &mut provenance);
    let compute_res = &settings.resources.compute;
    let cpu = match resources::cpu(
        compute_res.units,
        compute_res.burst,
        compute.defaults.resource_multiplier,
    ) {
        Ok(cpu) => cpu,
        Err(message) => {
            return Err(vec![ResolveError::Invalid {
                path: unit_path.to_string(),
                message,
            }]);
        }
    };
    let resolved = ResolvedUnit {
        name: name.into(),
        memory: settings.resources.memory.size,
        settings,
        policies: policies.into_iter().map(|(p, _)| p).collect(),
        tags,
        cpu,
        provenance,
        overrides: layers.overrides,
        blueprint,
    };
    constraints::check(config, &resolved)?;
    Ok(resolved)
}

/// The blueprint a unit names: `blueprint`, else `labels.blueprint`.
pub fn blueprint_of(settings: &Unit) -> Option<&String> {
    settings
        .blueprint
        .as_ref()
        .or(settings.labels.get("blueprint"))
}

/// Composes the unit's blueprint and applies its resource adjustments, recording the last
/// component that changed each value as its source. A blueprint that does not compose
/// leaves the resources alone; the daemon fails the unit with the error.
fn fold_blueprint(
    config: &Config,
    settings: &mut Unit,
    provenance: &mut BTreeMap<String, Source>,
) -> Option<(String, Result<Composed, ComposeError>)> {
    let blueprint = blueprint_of(settings)?.clone();
    let composition = &config.hypervisor.composition;
    let composed = hypernix_compose::compose(composition, &blueprint, &Values::new());
    if let Ok(composed) = &composed {
        let source = |by: Vec<String>| {
            by.last().map(|name| Source::Component {
                name: name.clone(),
                blueprint: blueprint.clone(),
            })
        };
        let compute = &mut settings.resources.compute;
        let (units, by) = composed.cpu_units(compute.units);
        if let Some(s) = source(by) {
            compute.units = units;
            provenance.insert("resources.compute.units".into(), s);
        }
        let memory = &mut settings.resources.memory;
        let (bytes, by) = composed.memory_bytes(memory.size.bytes());
        if let Some(s) = source(by) {
            memory.size = Size(bytes);
            provenance.insert("resources.memory.size".into(), s);
        }
    }
    Some((blueprint, composed))
}

/// Expands a unit's policies and tags and merges their layers.
fn base_layers(
    config: &Config,
    unit: &Unit,
    unit_path: &AttrPath,
) -> Result<Base, Vec<ResolveError>> {
    let compute = &config.hypervisor.compute;
    let mut errors = Vec::new();

    // Policies, included ones first, each once.
    let mut policies: Vec<(String, Vec<String>)> = Vec::new();
    for (i, p) in unit.policies.iter().enumerate() {
        let path = unit_path
            .join("policies")
            .join(hypernix_config::path::index(i));
        expand_policy(
            config,
            p,
            &path,
            &mut Vec::new(),
            &mut policies,
            &mut errors,
        );
    }

    // Tags in list order: defaultTags, the policies' tags, the unit's own. Where each was
    // listed is kept as a cheap origin; its attribute path is built only for an error.
    enum Listed<'a> {
        Defaults(usize),
        Policy(&'a str, usize),
        Unit(usize),
    }
    let mut listed: Vec<(&String, Listed<'_>)> = Vec::new();
    listed.extend(
        compute
            .defaults
            .default_tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t, Listed::Defaults(i))),
    );
    for (p, _) in &policies {
        let tags = compute.policies[p].tags.iter().enumerate();
        listed.extend(tags.map(|(i, t)| (t, Listed::Policy(p, i))));
    }
    listed.extend(
        unit.tags
            .iter()
            .enumerate()
            .map(|(i, t)| (t, Listed::Unit(i))),
    );
    let mut tags: Vec<AppliedTag> = Vec::new();
    for (name, origin) in listed {
        let Some(tag) = compute.tags.get(name) else {
            let base = AttrPath::root().join("compute");
            let path = match origin {
                Listed::Defaults(i) => base.join("defaults").join("defaultTags").join(index(i)),
                Listed::Policy(p, i) => base.join("policies").join(p).join("tags").join(index(i)),
                Listed::Unit(i) => unit_path.join("tags").join(index(i)),
            };
            errors.push(unknown(&path, "tag", name, compute.tags.keys()));
            continue;
        };
        let via = match origin {
            Listed::Defaults(_) => Some(TagVia::DefaultTags),
            Listed::Policy(p, _) => Some(TagVia::Policy(p.to_string())),
            Listed::Unit(_) => None,
        };
        match tags.iter_mut().find(|t| &t.name == name) {
            // The unit's own listing is the most direct way to have a tag.
            Some(t) if via.is_none() => t.via = None,
            Some(_) => {}
            None => tags.push(AppliedTag {
                name: name.clone(),
                priority: tag.priority,
                via,
            }),
        }
    }
    tags.sort_by_key(|t| t.priority);
    if !errors.is_empty() {
        return Err(errors);
    }

    // The layers.
    let raw_compute = config.raw.get("compute");
    let empty = Map::new();
    let raw = |kind: &str, name: &str, field: &str| -> &Map<String, Value> {
        raw_compute
            .and_then(|c| c.get(kind))
            .and_then(|c| c.get(name))
            .and_then(|c| {
                if field.is_empty() {
                    Some(c)
                } else {
                    c.get(field)
                }
            })
            .and_then(Value::as_object)
            .unwrap_or(&empty)
    };
    let mut layers = Layers::default();
    for (p, via) in &policies {
        let source = Source::Policy {
            name: p.clone(),
            via: via.clone(),
        };
        layers.apply(raw("policies", p, "defaults"), &source);
    }
    for t in &tags {
        let source = Source::Tag {
            name: t.name.clone(),
            priority: t.priority,
            via: t.via.clone(),
        };
        layers.apply(raw("tags", &t.name, "values"), &source);
    }
    Ok(Base {
        policies,
        tags,
        layers,
    })
}

fn own_meta(unit: &Unit, key: &str) -> Option<Value> {
    let list = if key == "tags" {
        &unit.tags
    } else {
        &unit.policies
    };
    (!list.is_empty()).then(|| Value::from(list.clone()))
}

fn index(i: usize) -> String {
    hypernix_config::path::index(i)
}

fn unknown<'a>(
    path: &AttrPath,
    kind: &'static str,
    name: &str,
    known: impl Iterator<Item = &'a String>,
) -> ResolveError {
    ResolveError::UnknownRef {
        path: path.to_string(),
        kind,
        name: name.into(),
        hint: did_you_mean(name, known.map(String::as_str)),
    }
}

/// Appends `name` and the policies it includes (first) to `out`, detecting cycles.
fn expand_policy(
    config: &Config,
    name: &str,
    path: &AttrPath,
    stack: &mut Vec<String>,
    out: &mut Vec<(String, Vec<String>)>,
    errors: &mut Vec<ResolveError>,
) {
    let policies = &config.hypervisor.compute.policies;
    if let Some(start) = stack.iter().position(|p| p == name) {
        let mut cycle: Vec<&str> = stack[start..].iter().map(String::as_str).collect();
        cycle.push(name);
        errors.push(ResolveError::PolicyCycle {
            path: path.to_string(),
            cycle: cycle.join(" -> "),
        });
        return;
    }
    let Some(policy) = policies.get(name) else {
        errors.push(unknown(path, "policy", name, policies.keys()));
        return;
    };
    stack.push(name.into());
    let own = AttrPath::root()
        .join("compute")
        .join("policies")
        .join(name)
        .join("policies");
    for (i, inner) in policy.policies.iter().enumerate() {
        expand_policy(config, inner, &own.join(index(i)), stack, out, errors);
    }
    stack.pop();
    if !out.iter().any(|(p, _)| p == name) {
        out.push((name.into(), stack.clone()));
    }
}

/// Checks the tags and policies themselves, whether or not a unit uses them: references,
/// cycles, and fields a layer may not set.
pub fn check_layers(config: &Config) -> Vec<ResolveError> {
    let compute = &config.hypervisor.compute;
    let mut errors = Vec::new();
    let base = AttrPath::root().join("compute");
    for name in compute.policies.keys() {
        let mut seen = Vec::new();
        expand_policy(
            config,
            name,
            &base.join("policies").join(name),
            &mut Vec::new(),
            &mut seen,
            &mut errors,
        );
        for (i, t) in compute.policies[name].tags.iter().enumerate() {
            if !compute.tags.contains_key(t) {
                let path = base.join("policies").join(name).join("tags").join(index(i));
                errors.push(unknown(&path, "tag", t, compute.tags.keys()));
            }
        }
    }
    for (i, t) in compute.defaults.default_tags.iter().enumerate() {
        if !compute.tags.contains_key(t) {
            let path = base.join("defaults").join("defaultTags").join(index(i));
            errors.push(unknown(&path, "tag", t, compute.tags.keys()));
        }
    }
    let raw = config.raw.get("compute");
    for (kind, field) in [("tags", "values"), ("policies", "defaults")] {
        let Some(entries) = raw.and_then(|c| c.get(kind)).and_then(Value::as_object) else {
            continue;
        };
        for (name, entry) in entries {
            let Some(values) = entry.get(field).and_then(Value::as_object) else {
                continue;
            };
            for key in META_KEYS.iter().filter(|k| values.contains_key(**k)) {
                errors.push(ResolveError::Invalid {
                    path: base.join(kind).join(name).join(field).join(key).to_string(),
                    message: format!(
                        "a {} cannot set `{key}`; set it on the unit instead",
                        if kind == "tags" { "tag" } else { "policy" }
                    ),
                });
            }
        }
    }
    if !(compute.defaults.resource_multiplier > 0.0
        && compute.defaults.resource_multiplier.is_finite())
    {
        errors.push(ResolveError::Invalid {
            path: base.join("defaults").join("resourceMultiplier").to_string(),
            message: format!(
                "must be a positive number, got {}",
                compute.defaults.resource_multiplier
            ),
        });
    }
    errors.extend(constraints::check_shapes(config));
    let mut seen = HashSet::new();
    errors.retain(|e| seen.insert(e.to_string()));
    errors
}
