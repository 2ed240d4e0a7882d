//! One module per command group; each turns arguments into library calls and output.

pub mod backup;
mod config;
mod console;
mod daemon;
pub mod storage;

use std::process::ExitCode;

use clap::CommandFactory;

use hypernix_api::client::Client;

use crate::cli::{Cli, Command};

/// The API address when neither `--api` nor the configuration names one.
const DEFAULT_API: &str = "127.0.0.1:7878";

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let api = cli.api.clone().unwrap_or_else(|| DEFAULT_API.to_string());
    let client = Client::new(api.clone());
    match cli.command {
        Command::Storage(cmd) => storage::run(cmd),
        Command::Config(cmd) => config::run(cmd),
        Command::Backup(cmd) => backup::run(cmd, &client),
        Command::Serve(args) => daemon::serve(&api, args),
        Command::Up {
            files,
            daemon: args,
            timeout,
            out,
        } => daemon::up(cli.api.as_deref(), &files, args, timeout, out),
        Command::Apply { files, out } => daemon::apply(cli.api.as_deref(), &files, out),
        Command::Units { out } => daemon::units(&client, out),
        Command::Unit { action, name, out } => daemon::unit(&client, action, &name, out),
        Command::Console { name } => console::console(&client, &name),
        Command::Logs {
            name,
            follow,
            tail,
            json,
        } => daemon::logs(&client, &name, follow, tail, json),
        Command::Events { after, out } => daemon::events(&client, after, out),
        Command::Down { keep_units } => daemon::down(&client, keep_units),
        Command::Image(cmd) => daemon::image(cmd),
        Command::Api(crate::cli::ApiCommand::Schema) => {
            print!("{}", hypernix_api::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "hypernix",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
