//! A composition as a Graphviz DOT graph: members as nodes, requirements as solid edges
//! (dependent → dependency), connections as dashed edges labelled with their ends.

use std::fmt::Write;

use hypernix_config::schema::composition::Blueprint;

use crate::merge::Composed;

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Renders the DOT graph of a composed blueprint.
pub fn dot(composed: &Composed, blueprint: &Blueprint) -> String {
    let mut g = String::new();
    let _ = writeln!(g, "digraph {} {{", q(&composed.blueprint));
    g.push_str("  rankdir=LR;\n  node [shape=box];\n");
    for m in &composed.members {
        let label = if m.alias == m.component {
            format!("{}\\n{}", m.alias, m.version)
        } else {
            format!("{} ({})\\n{}", m.alias, m.component, m.version)
        };
        let style = if m.listed { "" } else { ", style=dashed" };
        let _ = writeln!(
            g,
            "  {} [label=\"{}\"{style}];",
            q(&m.alias),
            label.replace('"', "\\\"")
        );
    }
    for (from, to) in &composed.edges {
        let _ = writeln!(g, "  {} -> {} [label=\"requires\"];", q(from), q(to));
    }
    for c in &blueprint.connections {
        let (Some((a, out)), Some((b, input))) = (c.from.split_once('.'), c.to.split_once('.'))
        else {
            continue;
        };
        let _ = writeln!(
            g,
            "  {} -> {} [style=dashed, label={}];",
            q(a),
            q(b),
            q(&format!("{out} → {input}"))
        );
    }
    g.push_str("}\n");
    g
}
