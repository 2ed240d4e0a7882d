//! Reading configuration files: `.nix` through the real Nix evaluator, `.json` directly,
//! directories as all the `.nix` and `.json` files in them, in name order.
//!
//! A Nix file may be an attribute set or a module-style function (`{ config, lib, ... }:`).
//! A module's `imports` are loaded too, and its `config` is used when it has one. Modules
//! get `config = { }`, `pkgs = { }` and a small `lib` (`mkIf`, `mkDefault`, `mkForce`,
//! `mkMerge` of attribute sets); there is no nixpkgs here.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

use crate::error::{ConfigError, ConfigErrors, Problems};
use crate::merge::Merger;
use crate::path::did_you_mean;
use crate::schema::Hypervisor;

/// A loaded, typed and validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The typed tree, defaults filled in.
    pub hypervisor: Hypervisor,
    /// The merged `hypervisor` attribute set as written, without defaults.
    pub raw: Map<String, Value>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Types and validates an already merged `hypervisor` attribute set.
    pub fn from_raw(raw: Map<String, Value>, files: Vec<PathBuf>) -> Result<Config, ConfigErrors> {
        let hypervisor = crate::typed::parse(&raw).map_err(ConfigErrors)?;
        let mut problems = Problems::default();
        hypervisor.validate(&mut problems);
        if !problems.is_empty() {
            return Err(ConfigErrors(problems.0));
        }
        Ok(Config {
            hypervisor,
            raw,
            files,
        })
    }
}

/// Loads, merges, types and validates the configuration in `paths` (files or directories).
pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        match expand(p.as_ref()) {
            Ok(found) => files.extend(found),
            Err(e) => errors.push(e),
        }
    }
    let mut merger = Merger::default();
    let mut seen = BTreeSet::new();
    let mut queue: Vec<PathBuf> = files.into_iter().rev().collect();
    let mut read = Vec::new();
    while let Some(file) = queue.pop() {
        let key = file.canonicalize().unwrap_or_else(|_| file.clone());
        if !seen.insert(key) {
            continue;
        }
        match read_file(&file) {
            Ok(loaded) => {
                queue.extend(loaded.imports.into_iter().rev());
                if let Some(hv) = loaded.hypervisor {
                    merger.add(hv, &file, &mut errors);
                }
                read.push(file);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Config::from_raw(merger.finish(), read)
}

/// The configuration files a path stands for.
fn expand(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(io)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.is_file() && matches!(ext(&p), Some("nix" | "json")) {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

fn ext(p: &Path) -> Option<&str> {
    p.extension().and_then(|e| e.to_str())
}

/// What one file contributes.
struct Loaded {
    hypervisor: Option<Map<String, Value>>,
    imports: Vec<PathBuf>,
}

fn read_file(file: &Path) -> Result<Loaded, ConfigError> {
    let value = match ext(file) {
        Some("json") => {
            let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
                path: file.to_path_buf(),
                source,
            })?;
            let value: Value = serde_json::from_str(&text).map_err(|source| ConfigError::Json {
                file: file.to_path_buf(),
                source,
            })?;
            serde_json::json!({ "value": value, "imports": [] })
        }
        _ => eval_nix(file)?,
    };
    split_top(file, value)
}

/// Checks the top level of a file: `hypervisor` is the only attribute it may set.
fn split_top(file: &Path, value: Value) -> Result<Loaded, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: file.display().to_string(),
        message,
    };
    let mut imports = Vec::new();
    if let Some(list) = value.get("imports").and_then(Value::as_array) {
        for i in list {
            let s = i
                .as_str()
                .ok_or_else(|| invalid(format!("imports: expected paths, got {i}")))?;
            imports.push(PathBuf::from(s));
        }
    }
    let Some(Value::Object(mut top)) = value.get("value").cloned() else {
        return Err(invalid(
            "expected an attribute set with `hypervisor`, or a module function returning one"
                .into(),
        ));
    };
    let hypervisor = match top.remove("hypervisor") {
        None => None,
        Some(Value::Object(hv)) => Some(hv),
        Some(other) => {
            return Err(invalid(format!(
                "hypervisor: expected an attribute set, got {}",
                crate::merge::brief(&other)
            )));
        }
    };
    if let Some(key) = top.keys().next() {
        let hint = did_you_mean(key, ["hypervisor"]);
        return Err(invalid(format!(
            "unknown top-level attribute `{key}`{hint}; only `hypervisor` is read"
        )));
    }
    Ok(Loaded {
        hypervisor,
        imports,
    })
}

/// The Nix expression that evaluates one file, calling it if it is a module function.
fn nix_expr(file: &Path) -> String {
    let quoted: String = file
        .display()
        .to_string()
        .chars()
        .flat_map(|c| match c {
            '"' | '\\' | '$' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!(
        r#"let
  f = import (/. + "{quoted}");
  lib = {{
    mkIf = c: v: if c then v else {{ }};
    mkDefault = v: v;
    mkForce = v: v;
    mkMerge = builtins.foldl' (a: b: a // b) {{ }};
  }};
  args = {{ config = {{ }}; pkgs = {{ }}; inherit lib; }};
  fa = builtins.functionArgs f;
  m = if builtins.isFunction f then f (if fa == {{ }} then args else builtins.intersectAttrs fa args) else f;
  attrs = builtins.isAttrs m;
in {{
  value = if attrs && m ? config then m.config else if attrs then removeAttrs m [ "imports" "options" ] else m;
  imports = if attrs then map toString (m.imports or [ ]) else [ ];
}}"#
    )
}

fn eval_nix(file: &Path) -> Result<Value, ConfigError> {
    let abs = std::path::absolute(file).map_err(|source| ConfigError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let output = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "--expr"])
        .arg(nix_expr(&abs))
        .output()
        .map_err(|source| match source.kind() {
            ErrorKind::NotFound => ConfigError::NixMissing {
                file: file.to_path_buf(),
            },
            _ => ConfigError::Io {
                path: file.to_path_buf(),
                source,
            },
        })?;
    if !output.status.success() {
        return Err(ConfigError::Nix {
            file: file.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| ConfigError::Json {
        file: file.to_path_buf(),
        source,
    })
}
