//! The command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hypernix: virtual machines from Nix configuration.
#[derive(Debug, Parser)]
#[command(name = "hypernix", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check, explain and plan configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate configuration files; exit 1 listing every error.
    Check {
        /// Files or directories (.nix, .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show each resolved field of a unit with the source that set it.
    Explain {
        /// The compute unit.
        unit: String,
        /// Files or directories (.nix, .json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show what changes from one configuration to another, and what needs a restart.
    Plan {
        /// The current configuration (file or directory).
        old: PathBuf,
        /// The new configuration (file or directory).
        new: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
