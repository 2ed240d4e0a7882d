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

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = Client::new(cli.api.clone());
    match cli.command {
        Command::Storage(cmd) => storage::run(cmd),
        Command::Config(cmd) => config::run(cmd),
        Command::Backup(cmd) => backup::run(cmd),
        Command::Serve(args) => daemon::serve(&cli.api, args),
        Command::Up {
            files,
            daemon: args,
            timeout,
            out,
        } => daemon::up(&client, &files, args, timeout, out),
        Command::Apply { files, out } => daemon::apply(&client, &files, out),
        Command::Units { out } => daemon::units(&client, out),
        Command::Unit { action, name, out } => daemon::unit(&client, action, &name, out),
        Command::Console { name } => console::console(&client, &name),
        Command::Logs { name, follow, tail } => daemon::logs(&client, &name, follow, tail),
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
