//! `hypernix config check|explain|plan`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use hypernix_compute::plan::flatten;
use hypernix_compute::{Action, Override, ResolvedUnit, Source, plan};
use hypernix_config::Config;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::ConfigCommand;
use crate::output::{self, show, table};

/// Runs a `config` subcommand.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Check { files, out } => check(&files, out.json),
        ConfigCommand::Explain { unit, files, out } => explain(&unit, &files, out.json),
        ConfigCommand::Plan { old, new, out } => plan_cmd(old, new, out.json),
    }
}

/// A configuration loaded and every unit resolved.
pub struct Loaded {
    pub config: Config,
    pub units: BTreeMap<String, ResolvedUnit>,
}

/// Loads and resolves, or returns every error as text.
pub fn load(files: &[PathBuf]) -> Result<Loaded, Vec<String>> {
    let config = hypernix_config::load_paths(files)
        .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let units = hypernix_compute::resolve_all(&config)
        .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    Ok(Loaded { config, units })
}

/// Prints errors (JSON on stdout, or text on stderr) and returns exit code 1.
pub(crate) fn fail(errors: &[String], as_json: bool) -> anyhow::Result<ExitCode> {
    if as_json {
        output::json(&json!({ "ok": false, "errors": errors }))?;
    } else {
        let n = errors.len();
        eprintln!(
            "{n} error{} in the configuration:",
            if n == 1 { "" } else { "s" }
        );
        for e in errors {
            eprintln!("  - {}", e.replace('\n', "\n    "));
        }
    }
    Ok(ExitCode::from(output::EXIT_FAILURE))
}

#[derive(Serialize)]
struct Warning<'a> {
    unit: &'a str,
    #[serde(flatten)]
    settled: &'a Override,
}

/// Overrides between tags and policies, which priority or order settled.
fn warnings(units: &BTreeMap<String, ResolvedUnit>) -> Vec<Warning<'_>> {
    units
        .values()
        .flat_map(|u| {
            u.overrides
                .iter()
                .filter(|o| o.winner != Source::Unit)
                .map(|o| Warning {
                    unit: &u.name,
                    settled: o,
                })
        })
        .collect()
}

fn check(files: &[PathBuf], as_json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(errors) => return fail(&errors, as_json),
    };
    let compute = &loaded.config.hypervisor.compute;
    let warnings = warnings(&loaded.units);
    if as_json {
        output::json(&json!({
            "ok": true,
            "files": loaded.config.files,
            "units": loaded.units.len(),
            "tags": compute.tags.len(),
            "policies": compute.policies.len(),
            "warnings": warnings,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for w in &warnings {
        eprintln!(
            "warning: unit {}: {} = {} from {} overrides {} from {}",
            w.unit,
            w.settled.path,
            show(&w.settled.value),
            w.settled.winner,
            show(&w.settled.replaced),
            w.settled.loser
        );
    }
    let (vcpus, memory) = loaded.units.values().fold((0u64, 0u64), |(c, m), u| {
        (c + u64::from(u.cpu.vcpus), m + u.memory.bytes())
    });
    println!(
        "ok: {} file(s), {} unit(s) ({} vCPUs, {} memory), {} tag(s), {} polic{}, {} warning(s)",
        loaded.config.files.len(),
        loaded.units.len(),
        vcpus,
        hypernix_config::Size(memory),
        compute.tags.len(),
        compute.policies.len(),
        if compute.policies.len() == 1 {
            "y"
        } else {
            "ies"
        },
        warnings.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// One line of `explain`.
#[derive(Serialize)]
struct Field {
    path: String,
    value: Value,
    source: Source,
}

fn explain(unit: &str, files: &[PathBuf], as_json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(errors) => return fail(&errors, as_json),
    };
    let Some(u) = loaded.units.get(unit) else {
        let known: Vec<&str> = loaded.units.keys().map(String::as_str).collect();
        let hint = hypernix_config::path::did_you_mean(unit, known.iter().copied());
        return fail(
            &[format!(
                "no compute unit `{unit}`{hint}; units: {}",
                known.join(", ")
            )],
            as_json,
        );
    };
    let mut fields = vec![
        Field {
            path: "vcpus".into(),
            value: u.cpu.vcpus.into(),
            source: u.source_of("resources.compute.units"),
        },
        Field {
            path: "maxVcpus".into(),
            value: u.cpu.max_vcpus.into(),
            source: match u.settings.resources.compute.burst {
                Some(_) => u.source_of("resources.compute.burst"),
                None => u.source_of("resources.compute.units"),
            },
        },
        Field {
            path: "cpuQuotaCores".into(),
            value: json!(u.cpu.quota_cores),
            source: u.source_of("resources.compute.units"),
        },
    ];
    let mut leaves = BTreeMap::new();
    flatten("", &serde_json::to_value(&u.settings)?, &mut leaves);
    for (path, value) in leaves {
        if path == "tags" || path == "policies" {
            continue; // Shown above the table.
        }
        let source = u.source_of(&path);
        fields.push(Field {
            path,
            value,
            source,
        });
    }
    if as_json {
        output::json(&json!({
            "unit": u.name,
            "policies": u.policies,
            "tags": u.tags,
            "cpu": u.cpu,
            "memory": u.memory,
            "fields": fields,
            "overrides": u.overrides,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("unit {}", u.name);
    println!("  policies: {}", list_or_none(u.policies.iter().cloned()));
    let tags = u.tags.iter().map(|t| {
        Source::Tag {
            name: t.name.clone(),
            priority: t.priority,
            via: t.via.clone(),
        }
        .to_string()
        .trim_start_matches("tag ")
        .to_string()
    });
    println!("  tags (lowest precedence first): {}", list_or_none(tags));
    println!();
    let mut t = table(["FIELD", "VALUE", "SOURCE"]);
    for f in &fields {
        t.add_row(vec![f.path.clone(), show(&f.value), f.source.to_string()]);
    }
    println!("{t}");
    if !u.overrides.is_empty() {
        println!("\nsettled by precedence:");
        for o in &u.overrides {
            println!(
                "  {}: {} from {} over {} from {}",
                o.path,
                show(&o.value),
                o.winner,
                show(&o.replaced),
                o.loser
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_or_none(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn plan_cmd(old: PathBuf, new: PathBuf, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut errors = Vec::new();
    let mut side = |path: PathBuf, label: &str| match load(&[path]) {
        Ok(l) => Some(l.units),
        Err(e) => {
            errors.extend(e.into_iter().map(|e| format!("{label}: {e}")));
            None
        }
    };
    let (old_units, new_units) = (side(old, "old"), side(new, "new"));
    let (Some(old_units), Some(new_units)) = (old_units, new_units) else {
        return fail(&errors, as_json);
    };
    let p = plan(&old_units, &new_units);
    if as_json {
        output::json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    for u in &p.units {
        let (mark, what) = match u.action {
            Action::Create => ("+", "create"),
            Action::Destroy => ("-", "destroy"),
            Action::ApplyLive => ("~", "update live"),
            Action::Restart => ("-/+", "restart"),
        };
        println!("{mark} {} ({what})", u.unit);
        for f in &u.fields {
            println!(
                "    {}: {} -> {}  [{}: {}]",
                f.path,
                show(&f.old),
                show(&f.new),
                if f.live { "live" } else { "restart" },
                f.reason
            );
        }
    }
    println!(
        "Plan: {} to create, {} to restart, {} to update live, {} to destroy.",
        p.count(Action::Create),
        p.count(Action::Restart),
        p.count(Action::ApplyLive),
        p.count(Action::Destroy)
    );
    Ok(ExitCode::SUCCESS)
}
