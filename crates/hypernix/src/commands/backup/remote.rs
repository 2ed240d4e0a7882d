//! `hypernix backup run|snapshots`: backups the daemon takes of its units, through the API.

use std::process::ExitCode;

use hypernix_api::client::Client;
use serde_json::{Value, json};

use crate::cli::OutputArgs;
use crate::output::{json, table};

const FIELDS: &str = "id time source paths size parent bytesRead bytesReused newChunks";

/// `backup run SOURCE`: runs a source of the applied configuration now.
pub fn run(client: &Client, source: &str, out: OutputArgs) -> anyhow::Result<ExitCode> {
    let query = format!("mutation($s: String!) {{ backupRun(source: $s) {{ {FIELDS} }} }}");
    let snaps: Vec<Value> = client.request(&query, json!({ "s": source }), "backupRun")?;
    print(&snaps, out)
}

/// `backup snapshots [--repository NAME]`: the snapshots of one of the daemon's repositories.
pub fn snapshots(
    client: &Client,
    repository: Option<&str>,
    out: OutputArgs,
) -> anyhow::Result<ExitCode> {
    let query = format!("query($r: String) {{ backupSnapshots(repository: $r) {{ {FIELDS} }} }}");
    let snaps: Vec<Value> =
        client.request(&query, json!({ "r": repository }), "backupSnapshots")?;
    print(&snaps, out)
}

fn print(snaps: &[Value], out: OutputArgs) -> anyhow::Result<ExitCode> {
    if out.json {
        json(&snaps)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(["ID", "TIME", "SOURCE", "SIZE", "READ", "REUSED", "PARENT"]);
    for s in snaps {
        let text = |k: &str| s[k].as_str().unwrap_or("-").to_string();
        let short = |k: &str| text(k).chars().take(8).collect::<String>();
        t.add_row([
            short("id"),
            text("time"),
            text("source"),
            s["size"].to_string(),
            s["bytesRead"].to_string(),
            s["bytesReused"].to_string(),
            short("parent"),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
