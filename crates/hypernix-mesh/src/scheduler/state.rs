//! The cluster as placement sees it while it works: what each node uses, which units each
//! topology domain holds, and which nodes a unit may go to.
//!
//! Labels are interned: a *label set* is a unit's labels as sorted pair ids, a *selector*
//! an affinity rule's `labelSelector` the same way. A unit's *group* is its label set: the
//! units with exactly its labels (the replicas of one service). Every domain (a host, a
//! rack, a zone, a region) counts the units of each group and each label pair it holds, and
//! the anti-affinity selectors of its units, so a check costs a few map lookups.
//! A node without a rack (or region) is in the one domain of nodes without one.

use super::{Cluster, Health, scope_name};
use hypernix_config::schema::compute::{Affinity, AffinityKind, TopologyScope};
use std::collections::BTreeMap;

/// Scopes in the order of a node's domain array.
const SCOPES: [TopologyScope; 4] = [
    TopologyScope::Host,
    TopologyScope::Rack,
    TopologyScope::Zone,
    TopologyScope::Region,
];

fn scope_index(scope: TopologyScope) -> usize {
    match scope {
        TopologyScope::Host => 0,
        TopologyScope::Rack => 1,
        TopologyScope::Zone => 2,
        TopologyScope::Region => 3,
    }
}

#[derive(Default)]
struct Domain {
    units: u32,
    groups: BTreeMap<usize, u32>,
    pairs: BTreeMap<usize, u32>,
    anti: BTreeMap<usize, u32>,
}

struct Rule {
    kind: AffinityKind,
    scope: usize,
    selector: usize,
    weight: u64,
    text: String,
}

pub(super) struct State<'a> {
    pub(super) cluster: &'a Cluster,
    node_domains: Vec<[usize; 4]>,
    domains: Vec<Domain>,
    /// Compute and memory placed on each node (`u128`: sums of `u64` requests).
    used: Vec<(u128, u128)>,
    at: Vec<Option<usize>>,
    label_sets: Vec<Vec<usize>>,
    group: Vec<usize>,
    /// Pair ids of each selector; `None` when one of its pairs is on no unit.
    selectors: Vec<Option<Vec<usize>>>,
    /// The selectors that match each group.
    matching: Vec<Vec<usize>>,
    rules: Vec<Vec<Rule>>,
    group_spreads: Vec<Vec<(usize, u32)>>,
}

impl<'a> State<'a> {
    /// The cluster with its placement, leaving out the units `skip` names.
    pub(super) fn new(cluster: &'a Cluster, skip: impl Fn(usize) -> bool) -> State<'a> {
        let (node_domains, domains) = domains(cluster);
        let (pairs, label_sets, group) = label_sets(cluster);
        let mut selector_ids = BTreeMap::new();
        let rules = cluster
            .units
            .iter()
            .map(|unit| {
                let affinity = unit.placement.affinity.iter();
                affinity
                    .map(|a| rule(a, &pairs, &mut selector_ids))
                    .collect()
            })
            .collect();
        let mut selectors = vec![None; selector_ids.len()];
        for (ids, id) in selector_ids {
            selectors[id] = ids;
        }
        let matching = matching(&label_sets, &selectors);
        let mut group_spreads = vec![Vec::new(); label_sets.len()];
        for (u, spread) in cluster.spreads.iter().enumerate() {
            if let Some((scope, maximum)) = *spread {
                let spreads: &mut Vec<(usize, u32)> = &mut group_spreads[group[u]];
                let rule = (scope_index(scope), maximum);
                if !spreads.contains(&rule) {
                    spreads.push(rule);
                }
            }
        }
        let mut state = State {
            cluster,
            node_domains,
            domains: (0..domains).map(|_| Domain::default()).collect(),
            used: vec![(0, 0); cluster.nodes.len()],
            at: vec![None; cluster.units.len()],
            label_sets,
            group,
            selectors,
            matching,
            rules,
            group_spreads,
        };
        for (name, node) in &cluster.placement {
            // Cluster::new checked that both exist.
            let unit = cluster.units.binary_search_by(|u| u.name.cmp(name));
            let node = cluster.nodes.binary_search_by_key(node, |n| n.id);
            if let (Ok(unit), Ok(node)) = (unit, node)
                && !skip(unit)
            {
                state.add(unit, node);
            }
        }
        state
    }

    /// The node a unit is on, if any.
    pub(super) fn node_of(&self, unit: usize) -> Option<usize> {
        self.at[unit]
    }

    /// Puts a unit on a node.
    pub(super) fn add(&mut self, unit: usize, node: usize) {
        self.count(unit, node, 1);
        self.at[unit] = Some(node);
    }

    /// Takes a unit off its node.
    pub(super) fn remove(&mut self, unit: usize) {
        if let Some(node) = self.at[unit].take() {
            self.count(unit, node, -1);
        }
    }

    fn count(&mut self, unit: usize, node: usize, delta: i32) {
        let u = &self.cluster.units[unit];
        let used = &mut self.used[node];
        let (compute, memory) = (u128::from(u.compute), u128::from(u.memory));
        *used = if delta > 0 {
            (used.0 + compute, used.1 + memory)
        } else {
            (
                used.0.saturating_sub(compute),
                used.1.saturating_sub(memory),
            )
        };
        let group = self.group[unit];
        let bump = |map: &mut BTreeMap<usize, u32>, key: usize| {
            let count = map.entry(key).or_default();
            *count = count.saturating_add_signed(delta);
            if *count == 0 {
                map.remove(&key);
            }
        };
        for &d in &self.node_domains[node] {
            let domain = &mut self.domains[d];
            domain.units = domain.units.saturating_add_signed(delta);
            bump(&mut domain.groups, group);
            for &pair in &self.label_sets[group] {
                bump(&mut domain.pairs, pair);
            }
        }
        for rule in self.rules[unit]
            .iter()
            .filter(|r| r.kind == AffinityKind::Anti)
        {
            let d = self.node_domains[node][rule.scope];
            bump(&mut self.domains[d].anti, rule.selector);
        }
    }

    /// Whether a selector matches a label set.
    fn matches(&self, selector: usize, group: usize) -> bool {
        self.matching[group].binary_search(&selector).is_ok()
    }

    /// Whether a domain holds a unit the selector matches.
    fn domain_matches(&self, domain: usize, selector: usize) -> bool {
        let d = &self.domains[domain];
        match self.selectors[selector].as_deref() {
            None => false,
            Some([]) => d.units > 0,
            Some([pair]) => d.pairs.contains_key(pair),
            Some(pairs) => {
                pairs.iter().all(|p| d.pairs.contains_key(p))
                    && d.groups.keys().any(|&g| self.matches(selector, g))
            }
        }
    }

    /// How many required affinity rules of placed units have no match in their domain.
    pub(super) fn broken_required(&self) -> usize {
        let placed = self.at.iter().enumerate();
        let placed = placed.filter_map(|(u, n)| Some((u, (*n)?)));
        placed
            .flat_map(|(u, n)| self.rules[u].iter().map(move |r| (n, r)))
            .filter(|(_, r)| r.kind == AffinityKind::Required)
            .filter(|(n, r)| !self.domain_matches(self.node_domains[*n][r.scope], r.selector))
            .count()
    }

    /// Whether a node may take units at all.
    pub(super) fn eligible(&self, node: usize) -> bool {
        let n = &self.cluster.nodes[node];
        n.runs_units && n.health == Health::Alive
    }

    /// The nodes a unit may go to now, by index, or why there are none.
    pub(super) fn candidates(&self, unit: usize) -> Result<Vec<usize>, String> {
        let u = &self.cluster.units[unit];
        let group = self.group[unit];
        let mut nodes: Vec<usize> = (0..self.cluster.nodes.len())
            .filter(|&n| self.eligible(n))
            .collect();
        if nodes.is_empty() {
            return Err(format!("unit {}: no node is alive and runs units", u.name));
        }
        let mut narrowed: Option<String> = None;
        let mut filter = |nodes: &mut Vec<usize>, text: &str, keep: &dyn Fn(usize) -> bool| {
            let before = nodes.len();
            nodes.retain(|&n| keep(n));
            if nodes.is_empty() {
                return Err(format!(
                    "unit {}: {text} rules out all {before} candidate nodes",
                    u.name
                ));
            }
            if nodes.len() < before {
                narrowed = Some(text.to_owned());
            }
            Ok(())
        };
        for rule in &self.rules[unit] {
            let in_domain =
                |n: usize| self.domain_matches(self.node_domains[n][rule.scope], rule.selector);
            match rule.kind {
                AffinityKind::Required => {
                    let anywhere =
                        (0..self.domains.len()).any(|d| self.domain_matches(d, rule.selector));
                    if !anywhere {
                        if self.matches(rule.selector, group) {
                            continue;
                        }
                        return Err(format!(
                            "unit {}: {}: no unit it matches is placed",
                            u.name, rule.text
                        ));
                    }
                    filter(&mut nodes, &rule.text, &in_domain)?;
                }
                AffinityKind::Anti => filter(&mut nodes, &rule.text, &|n| !in_domain(n))?,
                AffinityKind::Preferred => {}
            }
        }
        let theirs = |n: usize| {
            self.node_domains[n].iter().all(|&d| {
                let anti = &self.domains[d].anti;
                self.matching[group].iter().all(|s| !anti.contains_key(s))
            })
        };
        filter(&mut nodes, "anti-affinity of units placed there", &theirs)?;
        for &(scope, maximum) in &self.group_spreads[group] {
            let text = format!(
                "spread of at most {maximum} per {}",
                scope_name(SCOPES[scope])
            );
            let room = |n: usize| self.in_group(group, self.node_domains[n][scope]) < maximum;
            filter(&mut nodes, &text, &room)?;
        }
        nodes.retain(|&n| self.fits(unit, n));
        if nodes.is_empty() {
            let free = format!(
                "{} compute units and {} bytes of memory free",
                u.compute, u.memory
            );
            return Err(match narrowed {
                Some(text) => format!("unit {}: {text} leaves no node with {free}", u.name),
                None => format!("unit {}: no node has {free}", u.name),
            });
        }
        Ok(nodes)
    }

    fn in_group(&self, group: usize, domain: usize) -> u32 {
        self.domains[domain]
            .groups
            .get(&group)
            .copied()
            .unwrap_or(0)
    }

    fn fits(&self, unit: usize, node: usize) -> bool {
        let (u, n) = (&self.cluster.units[unit], &self.cluster.nodes[node]);
        let (compute, memory) = self.used[node];
        compute + u128::from(u.compute) <= u128::from(n.compute)
            && memory + u128::from(u.memory) <= u128::from(n.memory)
    }

    /// The larger of the node's compute and memory use, as a fraction of its capacity.
    pub(super) fn load(&self, node: usize) -> f64 {
        self.load_of(node, self.used[node])
    }

    /// The node's load with the unit added.
    pub(super) fn load_with(&self, node: usize, unit: usize) -> f64 {
        let u = &self.cluster.units[unit];
        let (compute, memory) = self.used[node];
        self.load_of(
            node,
            (
                compute + u128::from(u.compute),
                memory + u128::from(u.memory),
            ),
        )
    }

    fn load_of(&self, node: usize, (compute, memory): (u128, u128)) -> f64 {
        let n = &self.cluster.nodes[node];
        let fraction = |used: u128, capacity: u64| used as f64 / capacity.max(1) as f64;
        fraction(compute, n.compute).max(fraction(memory, n.memory))
    }

    /// The summed weights of the unit's preferred rules the node satisfies.
    pub(super) fn preference(&self, unit: usize, node: usize) -> u64 {
        self.rules[unit]
            .iter()
            .filter(|r| r.kind == AffinityKind::Preferred)
            .filter(|r| self.domain_matches(self.node_domains[node][r.scope], r.selector))
            .map(|r| r.weight)
            .sum()
    }

    /// Units of the unit's group in the node's domain at the unit's spread scope (its host
    /// without one).
    pub(super) fn group_count(&self, unit: usize, node: usize) -> u32 {
        let scope = self.cluster.spreads[unit].map_or(0, |(scope, _)| scope_index(scope));
        self.in_group(self.group[unit], self.node_domains[node][scope])
    }

    /// Whether the unit has a required affinity rule.
    pub(super) fn has_required(&self, unit: usize) -> bool {
        self.rules[unit]
            .iter()
            .any(|r| r.kind == AffinityKind::Required)
    }
}

/// Each node's domains (host, rack, zone, region) by id, and how many domains there are.
fn domains(cluster: &Cluster) -> (Vec<[usize; 4]>, usize) {
    let mut ids: BTreeMap<(usize, Option<String>), usize> = BTreeMap::new();
    let node_domains = cluster
        .nodes
        .iter()
        .map(|n| {
            let keys = [
                Some(n.id.to_string()),
                n.location.rack.clone(),
                Some(n.location.zone.clone()),
                n.location.region.clone(),
            ];
            let mut domains = [0; 4];
            for (scope, key) in keys.into_iter().enumerate() {
                let next = ids.len();
                domains[scope] = *ids.entry((scope, key)).or_insert(next);
            }
            domains
        })
        .collect();
    (node_domains, ids.len())
}

type Pairs<'c> = BTreeMap<(&'c str, &'c str), usize>;

/// The label pairs by id, the label sets (groups) by id, and each unit's group.
fn label_sets(cluster: &Cluster) -> (Pairs<'_>, Vec<Vec<usize>>, Vec<usize>) {
    let mut pairs = Pairs::new();
    let mut ids: BTreeMap<Vec<usize>, usize> = BTreeMap::new();
    let mut group = Vec::with_capacity(cluster.units.len());
    for unit in &cluster.units {
        let mut set: Vec<usize> = unit
            .labels
            .iter()
            .map(|(k, v)| {
                let next = pairs.len();
                *pairs.entry((k, v)).or_insert(next)
            })
            .collect();
        set.sort_unstable();
        let next = ids.len();
        group.push(*ids.entry(set).or_insert(next));
    }
    let mut label_sets = vec![Vec::new(); ids.len()];
    for (set, id) in ids {
        label_sets[id] = set;
    }
    (pairs, label_sets, group)
}

/// An affinity rule with its selector interned and its text for reasons.
fn rule(
    affinity: &Affinity,
    pairs: &Pairs<'_>,
    selector_ids: &mut BTreeMap<Option<Vec<usize>>, usize>,
) -> Rule {
    let ids: Option<Vec<usize>> = affinity
        .label_selector
        .iter()
        .map(|(k, v)| pairs.get(&(k.as_str(), v.as_str())).copied())
        .collect();
    let ids = ids.map(|mut ids| {
        ids.sort_unstable();
        ids
    });
    let next = selector_ids.len();
    let selector = *selector_ids.entry(ids).or_insert(next);
    let kind = match affinity.kind {
        AffinityKind::Required => "required affinity",
        AffinityKind::Preferred => "preferred affinity",
        AffinityKind::Anti => "anti-affinity",
    };
    let labels: Vec<String> = affinity
        .label_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Rule {
        kind: affinity.kind,
        scope: scope_index(affinity.scope),
        selector,
        weight: affinity.weight.into(),
        text: format!(
            "{kind} with {{{}}} at scope {}",
            labels.join(","),
            scope_name(affinity.scope)
        ),
    }
}

/// The selectors that match each label set, in selector order. A selector is checked only
/// against the label sets holding its first pair.
fn matching(label_sets: &[Vec<usize>], selectors: &[Option<Vec<usize>>]) -> Vec<Vec<usize>> {
    let mut with_pair: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (set, pairs) in label_sets.iter().enumerate() {
        for &pair in pairs {
            with_pair.entry(pair).or_default().push(set);
        }
    }
    let mut matching = vec![Vec::new(); label_sets.len()];
    for (selector, pairs) in selectors.iter().enumerate() {
        match pairs.as_deref() {
            None => {}
            Some([]) => matching.iter_mut().for_each(|m| m.push(selector)),
            Some([first, rest @ ..]) => {
                let sets = with_pair.get(first).map_or(&[][..], Vec::as_slice);
                for &set in sets {
                    let labels = &label_sets[set];
                    if rest.iter().all(|p| labels.binary_search(p).is_ok()) {
                        matching[set].push(selector);
                    }
                }
            }
        }
    }
    matching
}
