//! `hypernix caps ...` and `hypernix audit ...`: tokens issued, revoked and broken glass
//! through the daemon; attenuation, inspection and audit verification offline.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hypernix_api::client::Client;
use hypernix_caps::KeyRing;
use hypernix_caps::audit;
use hypernix_caps::token::{self, Attenuation};
use hypernix_daemon::layout::Layout;
use serde_json::{Value, json};

use crate::cli::OutputArgs;
use crate::output;

/// Capability tokens.
#[derive(Debug, Subcommand)]
pub enum CapsCommand {
    /// Issue a token for a principal's grant (through the daemon).
    Issue {
        /// The principal, as in security.principals.
        principal: String,
        /// The capability, when the principal has several grants.
        #[arg(long)]
        capability: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Narrow a token offline: fewer operations, more labels, an earlier expiry.
    Attenuate {
        /// The token ("-" reads it from stdin).
        token: String,
        /// Allow only this operation (repeatable), e.g. unit.start.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Require this label, KEY=VALUE (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Expire after this long ("1h", "30m") or at this RFC 3339 instant.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Print a token's blocks and revocation ids (offline, signature not checked).
    Inspect {
        /// The token ("-" reads it from stdin).
        token: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke a token (its last block, so attenuations of it too) or a revocation id.
    Revoke {
        /// A token, or a hex revocation id.
        what: String,
    },
    /// Make a new root key; tokens of the old one stay valid for the grace period.
    Rotate {
        /// How long tokens of the old key stay valid ("24h", "0s").
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Ask for emergency access with a break-glass grant; prints the emergency token.
    BreakGlass {
        /// Why; recorded in the audit log and the security alert.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// The audit log.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit records.
    Show {
        #[command(flatten)]
        state: StateArg,
        /// Only the last N records.
        #[arg(long)]
        last: Option<usize>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Check the hash chain and signed checkpoints; exit 1 naming each bad record.
    Verify {
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// The state directory holding the audit log and keys.
#[derive(Debug, Args)]
pub struct StateArg {
    /// The state directory (default: /var/lib/hypernix as root).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

fn read_token(t: &str) -> anyhow::Result<String> {
    if t == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
        return Ok(s.trim().to_string());
    }
    Ok(t.trim().to_string())
}

/// Runs a `caps` command.
pub fn run(client: &Client, cmd: CapsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CapsCommand::Issue {
            principal,
            capability,
            out,
        } => {
            let issued: Value = client.request(
                "mutation($p: String!, $c: String) { issueToken(principal: $p, capability: $c) \
                 { token id principal revocationIds } }",
                json!({ "p": principal, "c": capability }),
                "issueToken",
            )?;
            print_issued(&issued, out.json)
        }
        CapsCommand::Attenuate {
            token: t,
            operations,
            labels,
            expires,
        } => {
            let labels = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--label {l:?}: expected KEY=VALUE"))
                })
                .collect::<anyhow::Result<_>>()?;
            let expires = expires.map(|e| expiry(&e)).transpose()?;
            let narrowed = token::attenuate(
                &read_token(&t)?,
                &Attenuation {
                    operations,
                    labels,
                    expires,
                },
            )?;
            println!("{narrowed}");
            Ok(ExitCode::SUCCESS)
        }
        CapsCommand::Inspect { token: t, out } => {
            let info = token::inspect(&read_token(&t)?)?;
            if out.json {
                output::json(&info)?;
            } else {
                println!(
                    "root key: {}",
                    info.root_key_id.map_or("-".into(), |k| k.to_string())
                );
                for (i, (src, id)) in info.sources.iter().zip(&info.revocation_ids).enumerate() {
                    println!("block {i} (revocation id {id}):");
                    for line in src.lines() {
                        println!("  {line}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CapsCommand::Revoke { what } => {
            let id = match token::inspect(&what) {
                Ok(info) => info
                    .revocation_ids
                    .last()
                    .cloned()
                    .context("token has no blocks")?,
                Err(_) if what.bytes().all(|b| b.is_ascii_hexdigit()) && !what.is_empty() => what,
                Err(e) => bail!("{e}; give a token or a hex revocation id"),
            };
            let _: bool = client.request(
                "mutation($id: String!) { revokeToken(revocationId: $id) }",
                json!({ "id": id }),
                "revokeToken",
            )?;
            eprintln!("revoked {id}");
            Ok(ExitCode::SUCCESS)
        }
        CapsCommand::Rotate { grace } => {
            let d: hypernix_config::values::Duration =
                serde_json::from_value(Value::String(grace.clone())).with_context(|| {
                    format!("--grace {grace:?}: expected a duration such as \"24h\"")
                })?;
            let secs = u32::try_from(d.std().as_secs()).context("--grace: too long")?;
            let id: u32 = client.request(
                "mutation($g: Int!) { rotateRootKey(graceSeconds: $g) }",
                json!({ "g": secs }),
                "rotateRootKey",
            )?;
            eprintln!(
                "root key {id} is current; tokens of the previous key stay valid for {grace}"
            );
            Ok(ExitCode::SUCCESS)
        }
        CapsCommand::BreakGlass { reason, out } => {
            let issued: Value = client.request(
                "mutation($r: String!) { breakGlass(reason: $r) { token id principal revocationIds } }",
                json!({ "r": reason }),
                "breakGlass",
            )?;
            eprintln!("emergency access granted for 30 minutes; every action is audited");
            print_issued(&issued, out.json)
        }
    }
}

fn print_issued(issued: &Value, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(issued)?;
    } else {
        println!("{}", issued["token"].as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

/// An expiry: a duration from now, or an RFC 3339 instant.
fn expiry(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d: hypernix_config::values::Duration = serde_json::from_value(Value::String(s.into()))
        .with_context(|| {
            format!("--expires {s:?}: expected a duration such as \"1h\" or an RFC 3339 instant")
        })?;
    Ok(chrono::Utc::now() + chrono::Duration::from_std(d.std())?)
}

/// Runs an `audit` command.
pub fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let (state, out) = match &cmd {
        AuditCommand::Show { state, out, .. } | AuditCommand::Verify { state, out } => (state, out),
    };
    let layout = Layout::new(state.state_dir.clone().unwrap_or_else(Layout::default_root));
    let path = layout.audit_log();
    match cmd {
        AuditCommand::Show { last, .. } => {
            let mut records = audit::records(&path)?;
            if let Some(n) = last {
                records = records.split_off(records.len().saturating_sub(n));
            }
            if out.json {
                let v: Vec<Value> = records
                    .iter()
                    .map(|(seq, r)| json!({ "seq": seq, "record": r }))
                    .collect();
                output::json(&v)?;
            } else {
                for (seq, r) in records {
                    println!(
                        "{seq:>6} {} {} {} {} {}{}",
                        r.time.format("%Y-%m-%dT%H:%M:%SZ"),
                        if r.allowed { "ALLOW" } else { "DENY " },
                        r.principal,
                        r.operation,
                        r.resource.unwrap_or_default(),
                        r.reason.map(|x| format!(" ({x})")).unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { .. } => {
            let keys = KeyRing::open(&layout.caps())?;
            let report = audit::verify(&path, &keys)?;
            if out.json {
                output::json(&report)?;
            } else {
                for p in &report.problems {
                    eprintln!("{}: {p}", path.display());
                }
                println!(
                    "{} records, {} signed checkpoints, {} records after the last checkpoint: {}",
                    report.records,
                    report.checkpoints,
                    report.unsigned_tail,
                    if report.ok() { "intact" } else { "TAMPERED" }
                );
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(output::EXIT_FAILURE)
            })
        }
    }
}
