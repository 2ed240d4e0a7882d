//! The command-line grammar.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// hypernix: virtual machines from Nix configuration.
#[derive(Debug, Parser)]
#[command(name = "hypernix", version, about, propagate_version = true)]
pub struct Cli {
    /// The daemon's API address (host:port); default: `api.listen` of the configuration
    /// given to `up`/`apply`, else 127.0.0.1:7878.
    #[arg(long, global = true, env = "HYPERNIX_API")]
    pub api: Option<String>,
    /// The capability token to send (default: the root credential of the local state
    /// directory, when readable).
    #[arg(long, global = true, env = "HYPERNIX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tiered volumes served over NBD.
    #[command(subcommand)]
    Storage(crate::commands::storage::StorageCommand),
    /// Check, explain and plan configurations.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Compose guests from components and blueprints: render, graph, check.
    #[command(subcommand)]
    Compose(crate::commands::compose::ComposeCommand),
    /// Deduplicating, encrypted, incremental-forever backups.
    #[command(subcommand)]
    Backup(crate::commands::backup::BackupCommand),
    /// Capability tokens: issue, attenuate, inspect, revoke, break-glass.
    #[command(subcommand)]
    Caps(crate::commands::caps::CapsCommand),
    /// The audit log: show, verify.
    #[command(subcommand)]
    Audit(crate::commands::caps::AuditCommand),
    /// Anomaly detection and forecasting: evaluate the detector on NAB, backtest forecasts.
    #[command(subcommand)]
    Monitor(crate::commands::monitor::MonitorCommand),
    /// The cluster: status, roles, join tokens, join, leave.
    #[command(subcommand)]
    Mesh(crate::commands::mesh::MeshCommand),
    /// Run the daemon.
    Serve(ServeArgs),
    /// Start (or reach) the daemon, apply FILE, wait for the units, print their status.
    Up {
        /// Configuration files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        daemon: DaemonArgs,
        /// Seconds to wait for the units to be ready.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Apply a configuration to the running daemon; print the plan.
    Apply {
        /// Configuration files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List the units: state, vCPUs, memory, uptime, accelerator.
    Units {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show, start, stop, restart, pause or resume a unit.
    Unit {
        /// What to do.
        action: UnitVerb,
        /// The unit.
        name: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Attach to a unit's serial console (Ctrl-] detaches).
    Console {
        /// The unit.
        name: String,
    },
    /// Print a unit's console log.
    Logs {
        /// The unit.
        name: String,
        /// Keep printing what the guest writes.
        #[arg(short, long)]
        follow: bool,
        /// Bytes from the end to start with.
        #[arg(long, default_value_t = 65536)]
        tail: u64,
        /// Print `{"unit", "log"}` as JSON (not with --follow).
        #[arg(long, conflicts_with = "follow")]
        json: bool,
    },
    /// Print the event log.
    Events {
        /// Only events after this id.
        #[arg(long)]
        after: Option<u64>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Stop the units and the daemon.
    Down {
        /// Leave the units running; stop only the daemon.
        #[arg(long)]
        keep_units: bool,
    },
    /// The GraphQL API.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Build and convert images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Write a stopped unit's disk as raw, qcow2, VMDK or VHDX to a file or stdout.
    Export(crate::commands::image::ExportArgs),
    /// Convert an image (a file, or qcow2, VMDK, VHDX or raw on stdin) into a disk file.
    Import(crate::commands::image::ImportArgs),
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

/// Where the daemon keeps its state and how it runs VMs.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The state directory (default: /var/lib/hypernix as root).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Force an accelerator instead of probing (kvm or tcg).
    #[arg(long)]
    pub accel: Option<AccelArg>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// The API address to listen on (default: the --api address).
    #[arg(long)]
    pub listen: Option<String>,
    /// Publish and subscribe to events on this NATS JetStream server (nats://HOST:PORT)
    /// instead of what `hypervisor.events` says.
    #[arg(long)]
    pub nats: Option<String>,
    /// Join a cluster with this node's settings: a configuration whose `hypervisor.mesh`
    /// describes the node (enable = true, node.id, roles...).
    #[arg(long, requires = "mesh_listen")]
    pub node: Option<PathBuf>,
    /// Where the node serves Raft (TCP) and gossip (UDP); joins on the next port.
    #[arg(long, requires = "node")]
    pub mesh_listen: Option<String>,
    /// The mesh address of a node of the cluster (repeatable); none bootstraps a new cluster.
    #[arg(long, requires = "node")]
    pub join: Vec<String>,
    /// The join token for a first start with --join (`hypernix mesh token`).
    #[arg(long, env = "HYPERNIX_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AccelArg {
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum UnitVerb {
    /// Print the unit's status (with its forwarded ports).
    Show,
    Start,
    Stop,
    Restart,
    Pause,
    Resume,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the test guest (Debian's kernel and a busybox initramfs) into a cache.
    TestGuest {
        /// The cache directory (default: STATE/images/test-guest).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Convert IN to OUT between raw, qcow2, VMDK and VHDX, streaming (`-` is stdin/stdout).
    Convert(crate::commands::image::ConvertArgs),
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Print the GraphQL schema (SDL).
    Schema,
}
