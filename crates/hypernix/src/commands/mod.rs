//! One module per command group; each turns arguments into library calls and output.

pub mod backup;
pub mod caps;
pub mod compose;
mod config;
mod console;
mod daemon;
pub mod image;
pub mod mesh;
pub mod monitor;
pub mod storage;

use std::process::ExitCode;

use clap::CommandFactory;

use hypernix_api::client::Client;

use crate::cli::{Cli, Command};

/// The API address when neither `--api` nor the configuration names one.
const DEFAULT_API: &str = "127.0.0.1:7878";

/// `client` sending `token`, else the root credential of `state_dir` (default: the
/// default state directory) when it is readable.
pub(crate) fn authed(
    client: Client,
    token: Option<&str>,
    state_dir: &Option<std::path::PathBuf>,
) -> Client {
    match token {
        Some(t) => client.with_token(t),
        None => {
            let root = state_dir
                .clone()
                .unwrap_or_else(hypernix_daemon::layout::Layout::default_root);
            client.with_token_file(hypernix_daemon::layout::Layout::new(root).root_token())
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let api = cli.api.clone().unwrap_or_else(|| DEFAULT_API.to_string());
    let client = authed(Client::new(api.clone()), cli.token.as_deref(), &None);
    match cli.command {
        Command::Storage(cmd) => storage::run(cmd),
        Command::Config(cmd) => config::run(cmd),
        Command::Compose(cmd) => compose::run(cmd),
        Command::Backup(cmd) => backup::run(cmd, &client),
        Command::Caps(cmd) => caps::run(&client, cmd),
        Command::Audit(cmd) => caps::audit(cmd),
        Command::Monitor(cmd) => monitor::run(cmd, &client),
        Command::Mesh(cmd) => mesh::run(cmd, &client, &api),
        Command::Serve(args) => daemon::serve(&api, args),
        Command::Up {
            files,
            daemon: args,
            timeout,
            out,
        } => daemon::up(
            cli.api.as_deref(),
            cli.token.as_deref(),
            &files,
            args,
            timeout,
            out,
        ),
        Command::Apply { files, out } => {
            daemon::apply(cli.api.as_deref(), cli.token.as_deref(), &files, out)
        }
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
        Command::Image(cmd) => image::run(cmd),
        Command::Export(args) => image::export(args),
        Command::Import(args) => image::import(args),
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
