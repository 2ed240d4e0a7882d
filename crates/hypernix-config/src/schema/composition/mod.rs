//! `hypervisor.composition`: components and the blueprints that combine them.
//!
//! A blueprint lists components, each under an alias (the component's name unless set),
//! gives their inputs, and connects one component's output to another's input, both
//! written `alias.name`. A unit uses a blueprint with `blueprint = "name"` or
//! `labels.blueprint = "name"`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Problems;
use crate::path::{AttrPath, index};

mod component;
#[cfg(test)]
mod tests;

pub use component::{
    Compatibility, Component, ComponentConfiguration, ComponentKind, CpuAdjustment, File, Hooks,
    Input, Interface, MemoryAdjustment, Output, Packages, Port, Protocol, ResourceAdjustments,
    Volume, VolumeKind,
};

/// `hypervisor.composition`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Composition {
    /// Reusable components.
    pub components: BTreeMap<String, Component>,
    /// Combinations of components.
    pub blueprints: BTreeMap<String, Blueprint>,
}

/// `composition.blueprints.NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Blueprint {
    /// The components, in installation order.
    pub components: Vec<BlueprintComponent>,
    /// Values a unit using the blueprint may set.
    pub parameters: BTreeMap<String, Parameter>,
    /// Outputs wired to inputs.
    pub connections: Vec<Connection>,
}

/// `blueprints.NAME.components[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintComponent {
    /// The component's name.
    pub component: String,
    /// Name of this use of it in connections (the component's name when unset).
    #[serde(default)]
    pub alias: Option<String>,
    /// Values of the component's inputs.
    #[serde(default)]
    pub inputs: Map<String, Value>,
}

impl BlueprintComponent {
    /// The alias connections use for this component.
    pub fn alias(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.component)
    }
}

/// `blueprints.NAME.parameters.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Parameter {
    /// Value type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Value when the unit gives none.
    pub default: Option<Value>,
    /// A check on the value, such as a regular expression.
    pub validation: Option<String>,
}

impl Default for Parameter {
    fn default() -> Self {
        Parameter {
            kind: "string".into(),
            default: None,
            validation: None,
        }
    }
}

/// `blueprints.NAME.connections[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Connection {
    /// The output, written `alias.output`.
    pub from: String,
    /// The input it feeds, written `alias.input`.
    pub to: String,
}

impl Composition {
    /// Checks components, and that blueprints name existing components, inputs and outputs.
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let at = AttrPath::root().join("composition");
        for (name, component) in &self.components {
            component.validate(&at.join("components").join(name), problems);
        }
        for (name, blueprint) in &self.blueprints {
            blueprint.validate(
                &self.components,
                &at.join("blueprints").join(name),
                problems,
            );
        }
    }
}

/// One use of a component in a blueprint.
struct Member<'a> {
    position: usize,
    entry: &'a BlueprintComponent,
    component: Option<&'a Component>,
}

impl Blueprint {
    fn validate(
        &self,
        components: &BTreeMap<String, Component>,
        path: &AttrPath,
        problems: &mut Problems,
    ) {
        if self.components.is_empty() {
            problems.at(
                path.join("components"),
                "is empty; list the components the blueprint is made of",
            );
        }
        let mut members: BTreeMap<&str, Member> = BTreeMap::new();
        for (i, entry) in self.components.iter().enumerate() {
            let item = path.join("components").join(index(i));
            let component = components.get(&entry.component);
            if component.is_none() {
                problems.unknown_ref(
                    item.join("component"),
                    "component",
                    &entry.component,
                    components.keys(),
                );
            }
            if let Some(component) = component {
                for key in entry.inputs.keys() {
                    if !component.interface.inputs.contains_key(key) {
                        problems.unknown_ref(
                            item.join("inputs").join(key),
                            &format!("`{}` input", entry.component),
                            key,
                            component.interface.inputs.keys(),
                        );
                    }
                }
            }
            let alias = entry.alias();
            let alias_path = item.join(if entry.alias.is_some() {
                "alias"
            } else {
                "component"
            });
            if alias.is_empty() || alias.contains('.') {
                problems.at(
                    &alias_path,
                    format!(
                        "`{alias}` cannot be an alias, since connections are written alias.name; \
                         set an alias without a dot"
                    ),
                );
            }
            if let Some(other) = members.get(alias) {
                problems.at(
                    alias_path,
                    format!(
                        "alias `{alias}` is already used by components[{}]; give this one its own \
                         alias",
                        other.position
                    ),
                );
                continue;
            }
            members.insert(
                alias,
                Member {
                    position: i,
                    entry,
                    component,
                },
            );
        }
        let connected = self.validate_connections(&members, path, problems);
        for member in members.values() {
            let Some(component) = member.component else {
                continue;
            };
            let alias = member.entry.alias();
            for (name, input) in &component.interface.inputs {
                let given = member.entry.inputs.contains_key(name)
                    || connected.contains(&(alias, name.as_str()));
                if input.required && input.default.is_none() && !given {
                    problems.at(
                        path.join("components").join(index(member.position)),
                        format!(
                            "component `{}` needs input `{name}`; set inputs.{name} or connect \
                             an output to `{alias}.{name}`",
                            member.entry.component
                        ),
                    );
                }
            }
        }
        check_conflicts(&members, path, problems);
    }

    /// Checks each connection's ends and returns the inputs that are connected.
    fn validate_connections<'a>(
        &'a self,
        members: &BTreeMap<&str, Member>,
        path: &AttrPath,
        problems: &mut Problems,
    ) -> BTreeSet<(&'a str, &'a str)> {
        let aliases: Vec<String> = members.keys().map(|a| a.to_string()).collect();
        let mut connected = BTreeMap::new();
        for (i, connection) in self.connections.iter().enumerate() {
            let item = path.join("connections").join(index(i));
            let ends = [
                ("from", &connection.from, "output"),
                ("to", &connection.to, "input"),
            ];
            for (field, end, what) in ends {
                let Some((alias, name)) = end
                    .split_once('.')
                    .filter(|(a, n)| !a.is_empty() && !n.is_empty())
                else {
                    problems.at(
                        item.join(field),
                        format!(
                            "`{end}` is not written alias.{what}; use, for example, \"web.{what}\""
                        ),
                    );
                    continue;
                };
                let Some(member) = members.get(alias) else {
                    problems.unknown_ref(item.join(field), "alias", alias, &aliases);
                    continue;
                };
                let Some(component) = member.component else {
                    continue;
                };
                let interface = &component.interface;
                let known: Vec<&String> = if field == "from" {
                    interface.outputs.keys().collect()
                } else {
                    interface.inputs.keys().collect()
                };
                if !known.iter().any(|k| *k == name) {
                    let kind = format!("`{}` {what}", member.entry.component);
                    problems.unknown_ref(item.join(field), &kind, name, known);
                    continue;
                }
                if field == "from" {
                    continue;
                }
                if let Some(first) = connected.insert((alias, name), i) {
                    problems.at(
                        item.join("to"),
                        format!("`{end}` is already fed by connections[{first}]; connect it once"),
                    );
                } else if member.entry.inputs.contains_key(name) {
                    problems.at(
                        item.join("to"),
                        format!(
                            "`{end}` is also set in components[{}].inputs; set it one way only",
                            member.position
                        ),
                    );
                }
            }
        }
        connected.into_keys().collect()
    }
}

/// Reports a component that conflicts with another in the same blueprint, by name or by
/// something the other provides.
fn check_conflicts(members: &BTreeMap<&str, Member>, path: &AttrPath, problems: &mut Problems) {
    let present: Vec<(&Member, &Component)> = members
        .values()
        .filter_map(|m| m.component.map(|c| (m, c)))
        .collect();
    for (a, a_component) in &present {
        for (b, b_component) in &present {
            if a.position == b.position {
                continue;
            }
            let mut offers =
                std::iter::once(&b.entry.component).chain(&b_component.compatibility.provides);
            let clash = offers.find(|x| a_component.compatibility.conflicts.contains(*x));
            if let Some(clash) = clash {
                problems.at(
                    path.join("components").join(index(a.position)),
                    format!(
                        "component `{}` conflicts with `{clash}`, which components[{}] (`{}`) \
                         brings; remove one of them",
                        a.entry.component, b.position, b.entry.component
                    ),
                );
            }
        }
    }
}
