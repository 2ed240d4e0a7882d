//! Printing: tables for people, JSON for programs, and the exit codes.

use comfy_table::{Table, presets};
use serde::Serialize;

/// Exit code for a failure other than bad usage.
pub const EXIT_FAILURE: u8 = 1;

/// A table with the house style.
pub fn table<I: IntoIterator<Item = &'static str>>(header: I) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header);
    t
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A JSON value shown compactly, strings without quotes.
pub fn show(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}
