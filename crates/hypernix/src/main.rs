//! `hypernix`: the daemon and the command line. This file only parses arguments, runs
//! the command and prints the error chain once.

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if !serves(&cli.command) {
        restore_sigpipe();
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(output::EXIT_FAILURE)
        }
    }
}

/// Whether the command runs a server or holds a socket open (those must survive a peer
/// that goes away, so they keep Rust's ignored SIGPIPE and see EPIPE as an error).
fn serves(command: &cli::Command) -> bool {
    use cli::Command;
    use commands::backup::BackupCommand;
    use commands::storage::StorageCommand;
    matches!(
        command,
        Command::Serve(_)
            | Command::Console { .. }
            | Command::Storage(StorageCommand::Serve { .. })
            | Command::Backup(BackupCommand::Serve { .. })
    )
}

/// Lets `hypernix units | head` end quietly, as other command-line tools do, instead of
/// panicking in `println!` when the reader closes the pipe.
fn restore_sigpipe() {
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
