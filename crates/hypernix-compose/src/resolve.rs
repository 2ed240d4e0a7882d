//! Dependency resolution over `requires`, `provides` and `conflicts`.
//!
//! 1. The blueprint's entries are the starting members, in blueprint order.
//! 2. Each requirement is met by a member whose component name or `provides` matches it;
//!    failing that, by the library component of that name; failing that, by the first
//!    library component (by name) that provides it. Such a component joins as a member
//!    under its own name. A requirement nothing meets is [`ComposeError::Unmet`], naming
//!    the chain of members that led to it.
//! 3. A member that lists in `conflicts` another member's name or feature is
//!    [`ComposeError::Conflict`].
//! 4. Members are ordered dependencies first; among members ready at the same time the
//!    earlier blueprint entry goes first (pulled-in members after entries). A loop is
//!    [`ComposeError::Cycle`], naming it as `a → b → c → a`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hypernix_config::schema::composition::{BlueprintComponent, Component};
use serde_json::{Map, Value};

use crate::error::ComposeError;

/// One component in a composition: a blueprint entry, or one a requirement pulled in.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// The name connections use.
    pub alias: String,
    /// The component's name in the library.
    pub component: String,
    /// The component.
    pub spec: &'a Component,
    /// Values the blueprint gives its inputs.
    pub inputs: Map<String, Value>,
    /// Its position in the blueprint, `None` when a requirement pulled it in.
    pub entry: Option<usize>,
}

/// Members in dependency order and the edges between them.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    /// Members, each after everything it requires.
    pub members: Vec<Member<'a>>,
    /// `(dependent, dependency)` alias pairs, one per met requirement.
    pub edges: Vec<(String, String)>,
}

struct Node<'a> {
    member: Member<'a>,
    /// The member whose requirement pulled this one in.
    parent: Option<usize>,
}

/// Resolves a blueprint's entries against the component library.
pub fn resolve<'a>(
    library: &'a BTreeMap<String, Component>,
    blueprint: &str,
    entries: &'a [BlueprintComponent],
) -> Result<Resolution<'a>, ComposeError> {
    let mut nodes: Vec<Node<'a>> = Vec::with_capacity(entries.len());
    // Name or feature → members offering it.
    let mut offers: HashMap<&'a str, Vec<usize>> = HashMap::new();
    let mut aliases: HashMap<String, usize> = HashMap::new();
    let add = |nodes: &mut Vec<Node<'a>>,
               offers: &mut HashMap<&'a str, Vec<usize>>,
               aliases: &mut HashMap<String, usize>,
               name: &'a str,
               member: Member<'a>,
               parent: Option<usize>|
     -> Result<(), ComposeError> {
        let i = nodes.len();
        if aliases.insert(member.alias.clone(), i).is_some() {
            return Err(ComposeError::Contract {
                component: member.alias,
                message: "this alias is used twice; give each use its own alias".into(),
            });
        }
        offers.entry(name).or_default().push(i);
        for p in &member.spec.compatibility.provides {
            offers.entry(p.as_str()).or_default().push(i);
        }
        nodes.push(Node { member, parent });
        Ok(())
    };
    for (i, entry) in entries.iter().enumerate() {
        let Some((name, spec)) = library.get_key_value(&entry.component) else {
            return Err(ComposeError::UnknownComponent {
                blueprint: blueprint.into(),
                component: entry.component.clone(),
            });
        };
        let member = Member {
            alias: entry.alias().to_string(),
            component: name.clone(),
            spec,
            inputs: entry.inputs.clone(),
            entry: Some(i),
        };
        add(&mut nodes, &mut offers, &mut aliases, name, member, None)?;
    }

    // Pull in what requirements need, breadth first.
    let mut providers: Option<HashMap<&'a str, &'a str>> = None;
    let mut i = 0;
    while i < nodes.len() {
        let spec = nodes[i].member.spec;
        for req in &spec.compatibility.requires {
            if offers.contains_key(req.as_str()) {
                continue;
            }
            let found = library.get_key_value(req).or_else(|| {
                let index = providers.get_or_insert_with(|| provider_index(library));
                index
                    .get(req.as_str())
                    .and_then(|name| library.get_key_value(*name))
            });
            let Some((name, spec)) = found else {
                let mut chain = vec![nodes[i].member.alias.clone()];
                let mut at = nodes[i].parent;
                while let Some(p) = at {
                    chain.push(nodes[p].member.alias.clone());
                    at = nodes[p].parent;
                }
                chain.reverse();
                return Err(ComposeError::Unmet {
                    chain,
                    missing: req.clone(),
                });
            };
            let member = Member {
                alias: name.clone(),
                component: name.clone(),
                spec,
                inputs: Map::new(),
                entry: None,
            };
            add(&mut nodes, &mut offers, &mut aliases, name, member, Some(i))?;
        }
        i += 1;
    }

    // Edges: each member depends on every other member meeting one of its requirements.
    let n = nodes.len();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in nodes.iter().enumerate() {
        let mut set = BTreeSet::new();
        for req in &node.member.spec.compatibility.requires {
            for &j in offers.get(req.as_str()).into_iter().flatten() {
                if j != i {
                    set.insert(j);
                }
            }
        }
        deps[i] = set.into_iter().collect();
    }
    for (a, node) in nodes.iter().enumerate() {
        for c in &node.member.spec.compatibility.conflicts {
            if let Some(&b) = offers
                .get(c.as_str())
                .into_iter()
                .flatten()
                .find(|&&b| b != a)
            {
                return Err(ComposeError::Conflict {
                    a: node.member.alias.clone(),
                    b: nodes[b].member.alias.clone(),
                    over: c.clone(),
                });
            }
        }
    }

    let order = toposort(&deps).map_err(|cycle| ComposeError::Cycle {
        chain: cycle
            .iter()
            .map(|&i| nodes[i].member.alias.clone())
            .collect(),
    })?;
    let mut edges = Vec::new();
    for &i in &order {
        for &j in &deps[i] {
            edges.push((nodes[i].member.alias.clone(), nodes[j].member.alias.clone()));
        }
    }
    let mut slots: Vec<Option<Member<'a>>> = nodes.into_iter().map(|n| Some(n.member)).collect();
    let members = order.iter().filter_map(|&i| slots[i].take()).collect();
    Ok(Resolution { members, edges })
}

/// Feature → the first library component (by name) providing it.
fn provider_index(library: &BTreeMap<String, Component>) -> HashMap<&str, &str> {
    let mut index = HashMap::new();
    for (name, c) in library {
        for p in &c.compatibility.provides {
            index.entry(p.as_str()).or_insert(name.as_str());
        }
    }
    index
}

/// Orders nodes so each comes after its dependencies, smallest index first among the
/// ready ones; or returns a loop, first node repeated at the end.
pub(crate) fn toposort(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            waiting[d] -= 1;
            if waiting[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every node left waits on another node left: walk until one repeats.
    let left: Vec<bool> = waiting.iter().map(|&w| w > 0).collect();
    let start = (0..n).find(|&i| left[i]).unwrap_or_default();
    let mut seen = vec![None; n];
    let mut path = Vec::new();
    let mut at = start;
    while seen[at].is_none() {
        seen[at] = Some(path.len());
        path.push(at);
        at = deps[at].iter().copied().find(|&d| left[d]).unwrap_or(at);
    }
    let mut cycle = path.split_off(seen[at].unwrap_or_default());
    // Start the loop at its smallest node so the message does not depend on the walk.
    let min = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, v)| **v)
        .map(|(k, _)| k)
        .unwrap_or_default();
    cycle.rotate_left(min);
    cycle.push(cycle[0]);
    Err(cycle)
}
