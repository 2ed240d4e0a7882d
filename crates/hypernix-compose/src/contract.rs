//! Interface contracts: each member's inputs from the blueprint, a connection or a
//! default; outputs; connections checked by type; blueprint parameters.
//!
//! Text in outputs, files, environment values and hooks may refer to the member's
//! inputs as `${input.NAME}` and to the blueprint's parameters as `${param.NAME}`
//! (never valid shell, so hooks keep their own `${VAR}`).

use std::collections::BTreeMap;

use hypernix_config::schema::composition::{Blueprint, Parameter};
use serde_json::Value;

use crate::error::ComposeError;
use crate::resolve::Member;

/// Values by name.
pub type Values = BTreeMap<String, Value>;

/// True when `value` fits the declared `kind`. Known kinds: string, int (integer),
/// number (float), bool (boolean), list (array), object (attrs), port; any other kind
/// is taken on trust.
pub fn type_matches(kind: &str, value: &Value) -> bool {
    match kind {
        "string" | "str" | "path" | "url" => value.is_string(),
        "int" | "integer" => value.is_i64() || value.is_u64(),
        "number" | "float" => value.is_number(),
        "bool" | "boolean" => value.is_boolean(),
        "list" | "array" => value.is_array(),
        "object" | "attrs" => value.is_object(),
        "port" => value.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
        _ => true,
    }
}

/// The value of each blueprint parameter: the given one, or its default.
pub fn parameters(blueprint: &Blueprint, given: &Values) -> Result<Values, ComposeError> {
    let mut values = Values::new();
    for name in given.keys() {
        if !blueprint.parameters.contains_key(name) {
            return Err(ComposeError::Parameter {
                name: name.clone(),
                message: "the blueprint has no such parameter".into(),
            });
        }
    }
    for (name, p) in &blueprint.parameters {
        let Some(value) = given.get(name).or(p.default.as_ref()) else {
            return Err(ComposeError::Parameter {
                name: name.clone(),
                message: "has no default, so a value must be given".into(),
            });
        };
        check_parameter(name, p, value)?;
        values.insert(name.clone(), value.clone());
    }
    Ok(values)
}

fn check_parameter(name: &str, p: &Parameter, value: &Value) -> Result<(), ComposeError> {
    let fail = |message: String| ComposeError::Parameter {
        name: name.into(),
        message,
    };
    if !type_matches(&p.kind, value) {
        return Err(fail(format!("{value} is not of type `{}`", p.kind)));
    }
    if let Some(pattern) = &p.validation {
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
            fail(format!(
                "validation `{pattern}` is not a regular expression: {e}"
            ))
        })?;
        if !re.is_match(&text(value)) {
            return Err(fail(format!("{value} does not match `{pattern}`")));
        }
    }
    Ok(())
}

/// Each member's input values (alias → name → value), in the members' order, and each
/// output's value (`alias.output` → text).
pub fn bind(
    members: &[Member],
    blueprint: &Blueprint,
    params: &Values,
) -> Result<(Vec<Values>, BTreeMap<String, String>), ComposeError> {
    let by_alias: BTreeMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.alias.as_str(), i))
        .collect();
    // Connections: input end → output end, checked by type.
    let mut feeds: BTreeMap<(usize, &str), (usize, &str)> = BTreeMap::new();
    for c in &blueprint.connections {
        let (from, out) = end(&c.from, &by_alias, members, true)?;
        let (to, input) = end(&c.to, &by_alias, members, false)?;
        let from_type = &members[from].spec.interface.outputs[out].kind;
        let to_type = &members[to].spec.interface.inputs[input].kind;
        if from_type != to_type {
            return Err(ComposeError::ConnectionType {
                from: c.from.clone(),
                to: c.to.clone(),
                from_type: from_type.clone(),
                to_type: to_type.clone(),
            });
        }
        if feeds.insert((to, input), (from, out)).is_some() {
            return Err(ComposeError::Contract {
                component: members[to].alias.clone(),
                message: format!("input `{input}` is connected twice"),
            });
        }
    }
    // Members come dependencies first, but a connection may run against that order, so
    // bind in rounds until every connected input has its output's value.
    let mut inputs: Vec<Option<Values>> = vec![None; members.len()];
    let mut outputs: BTreeMap<String, String> = BTreeMap::new();
    let mut progress = true;
    while progress {
        progress = false;
        for (i, m) in members.iter().enumerate() {
            if inputs[i].is_some() {
                continue;
            }
            let pending = feeds.iter().any(|((to, _), (from, out))| {
                *to == i && !outputs.contains_key(&format!("{}.{out}", members[*from].alias))
            });
            if pending {
                continue;
            }
            let values = member_inputs(m, i, members, &feeds, &outputs)?;
            for (name, o) in &m.spec.interface.outputs {
                let value = interpolate(&o.value, &values, params).map_err(|message| {
                    ComposeError::Contract {
                        component: m.alias.clone(),
                        message: format!("output `{name}`: {message}"),
                    }
                })?;
                outputs.insert(format!("{}.{name}", m.alias), value);
            }
            inputs[i] = Some(values);
            progress = true;
        }
    }
    if let Some(i) = inputs.iter().position(Option::is_none) {
        return Err(ComposeError::Contract {
            component: members[i].alias.clone(),
            message: "its inputs and outputs are connected in a loop".into(),
        });
    }
    Ok((inputs.into_iter().flatten().collect(), outputs))
}

fn member_inputs(
    m: &Member,
    i: usize,
    members: &[Member],
    feeds: &BTreeMap<(usize, &str), (usize, &str)>,
    outputs: &BTreeMap<String, String>,
) -> Result<Values, ComposeError> {
    let fail = |message: String| ComposeError::Contract {
        component: m.alias.clone(),
        message,
    };
    for key in m.inputs.keys() {
        if !m.spec.interface.inputs.contains_key(key) {
            return Err(fail(format!("`{}` has no input `{key}`", m.component)));
        }
    }
    let mut values = Values::new();
    for (name, input) in &m.spec.interface.inputs {
        let fed = feeds.get(&(i, name.as_str())).map(|(from, out)| {
            Value::String(outputs[&format!("{}.{out}", members[*from].alias)].clone())
        });
        let value = m
            .inputs
            .get(name)
            .cloned()
            .or(fed)
            .or(input.default.clone());
        match value {
            Some(v) if !type_matches(&input.kind, &v) => {
                return Err(fail(format!(
                    "input `{name}` is {v}, not of type `{}`",
                    input.kind
                )));
            }
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None if input.required => {
                return Err(fail(format!(
                    "needs input `{name}`; set it in the blueprint or connect an output to it"
                )));
            }
            None => {}
        }
    }
    Ok(values)
}

/// Splits and checks `alias.name`, returning the member and the name.
fn end<'b>(
    text: &'b str,
    by_alias: &BTreeMap<&str, usize>,
    members: &[Member],
    output: bool,
) -> Result<(usize, &'b str), ComposeError> {
    let what = if output { "output" } else { "input" };
    let Some((alias, name)) = text.split_once('.') else {
        return Err(ComposeError::Contract {
            component: text.into(),
            message: format!("connection end `{text}` is not written alias.{what}"),
        });
    };
    let Some(&i) = by_alias.get(alias) else {
        return Err(ComposeError::Contract {
            component: alias.into(),
            message: format!("connection end `{text}` names no component of the blueprint"),
        });
    };
    let interface = &members[i].spec.interface;
    let known = if output {
        interface.outputs.contains_key(name)
    } else {
        interface.inputs.contains_key(name)
    };
    if !known {
        return Err(ComposeError::Contract {
            component: alias.into(),
            message: format!("`{}` has no {what} `{name}`", members[i].component),
        });
    }
    Ok((i, name))
}

/// A value as text: strings as they are, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Replaces `${input.NAME}` and `${param.NAME}`; a reference to nothing is an error.
pub fn interpolate(template: &str, inputs: &Values, params: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(close) = after.find('}') else { break };
        let reference = &after[..close];
        let value = if let Some(name) = reference.strip_prefix("input.") {
            Some(
                inputs
                    .get(name)
                    .ok_or_else(|| format!("refers to `${{{reference}}}`, an unset input"))?,
            )
        } else if let Some(name) = reference.strip_prefix("param.") {
            Some(
                params
                    .get(name)
                    .ok_or_else(|| format!("refers to `${{{reference}}}`, an unknown parameter"))?,
            )
        } else {
            None
        };
        out.push_str(&rest[..at]);
        match value {
            Some(v) => out.push_str(&text(v)),
            None => out.push_str(&rest[at..at + 3 + close]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
