//! `hypernix compose render|graph|check`: blueprints composed from the configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use hypernix_compose::render::QEMU_FIRST_MAC;
use hypernix_compose::{Values, compose, graph, seed};
use serde_json::{Value, json};

use crate::cli::OutputArgs;
use crate::commands::config::{fail, load};
use crate::output;

/// Compose guests from components and blueprints.
#[derive(Debug, Subcommand)]
pub enum ComposeCommand {
    /// Compose a blueprint and print its cloud-init seed (or the composition as JSON).
    Render {
        /// The blueprint.
        blueprint: String,
        /// Configuration files or directories (.nix, .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Render for this unit: its name is the hostname and its resources are adjusted.
        #[arg(long)]
        unit: Option<String>,
        /// A blueprint parameter, NAME=VALUE (VALUE as JSON, else as a string).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Format::CloudInit)]
        format: Format,
        /// Also write the seed as an ISO 9660 volume labelled `cidata` to FILE.
        #[arg(long, value_name = "FILE")]
        iso: Option<PathBuf>,
    },
    /// Print a blueprint's components and their dependencies as a Graphviz DOT graph.
    Graph {
        /// The blueprint.
        blueprint: String,
        /// Configuration files or directories (.nix, .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compose every blueprint; exit 1 listing every failure.
    Check {
        /// Configuration files or directories (.nix, .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// What `compose render` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The seed's three files, each after a `==> NAME <==` line.
    CloudInit,
    /// The composition and the seed as JSON.
    Json,
}

/// Runs a `compose` subcommand.
pub fn run(cmd: ComposeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ComposeCommand::Render {
            blueprint,
            files,
            unit,
            params,
            format,
            iso,
        } => render(&blueprint, &files, unit.as_deref(), &params, format, iso),
        ComposeCommand::Graph { blueprint, files } => graph_cmd(&blueprint, &files),
        ComposeCommand::Check { files, out } => check(&files, out.json),
    }
}

fn parse_params(params: &[String]) -> anyhow::Result<Values> {
    let mut out = Values::new();
    for p in params {
        let (name, value) = p
            .split_once('=')
            .with_context(|| format!("--param {p}: write it NAME=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        out.insert(name.to_string(), value);
    }
    Ok(out)
}

fn render(
    blueprint: &str,
    files: &[PathBuf],
    unit: Option<&str>,
    params: &[String],
    format: Format,
    iso: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let as_json = format == Format::Json;
    let loaded = match load(files) {
        Ok(l) => l,
        Err(errors) => return fail(&errors, as_json),
    };
    let resolved = match unit {
        Some(u) => match loaded.units.get(u) {
            Some(r) => Some(r),
            None => return fail(&[format!("no compute unit `{u}`")], as_json),
        },
        None => None,
    };
    let params = parse_params(params)?;
    let composition = &loaded.config.hypervisor.composition;
    let composed = match compose(composition, blueprint, &params) {
        Ok(c) => c,
        Err(e) => return fail(&[format!("blueprint {blueprint}: {e}")], as_json),
    };
    let hostname = unit.unwrap_or(blueprint);
    let seed = seed(&composed, hostname, QEMU_FIRST_MAC);
    if let Some(path) = &iso {
        let bytes = seed.iso();
        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    match format {
        Format::Json => {
            let resources = resolved.map(|r| {
                let (units, cpu_by) = composed.cpu_units(r.settings.resources.compute.units);
                let (memory, memory_by) = composed.memory_bytes(r.memory.bytes());
                json!({ "computeUnits": units, "computeUnitsBy": cpu_by,
                        "memory": hypernix_config::Size(memory), "memoryBy": memory_by })
            });
            output::json(&json!({
                "composition": composed,
                "resources": resources,
                "seed": seed,
            }))?;
        }
        Format::CloudInit => {
            for (name, content) in seed.files() {
                println!("==> {name} <==");
                print!("{}", String::from_utf8_lossy(content));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn graph_cmd(blueprint: &str, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(errors) => return fail(&errors, false),
    };
    let composition = &loaded.config.hypervisor.composition;
    match compose(composition, blueprint, &Values::new()) {
        Ok(c) => {
            print!("{}", graph::dot(&c, &composition.blueprints[blueprint]));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => fail(&[format!("blueprint {blueprint}: {e}")], false),
    }
}

fn check(files: &[PathBuf], as_json: bool) -> anyhow::Result<ExitCode> {
    let loaded = match load(files) {
        Ok(l) => l,
        Err(errors) => return fail(&errors, as_json),
    };
    let composition = &loaded.config.hypervisor.composition;
    let failures: Vec<String> = hypernix_compose::check_all(composition)
        .into_iter()
        .map(|(name, e)| format!("blueprint {name}: {e}"))
        .collect();
    if !failures.is_empty() {
        return fail(&failures, as_json);
    }
    let n = composition.blueprints.len();
    if as_json {
        output::json(&json!({
            "ok": true,
            "blueprints": n,
            "components": composition.components.len(),
        }))?;
    } else {
        println!(
            "ok: {n} blueprint(s) of {} component(s) compose",
            composition.components.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
