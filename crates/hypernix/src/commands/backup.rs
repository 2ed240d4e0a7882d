//! `hypernix backup`: deduplicating, encrypted, incremental-forever backups into a
//! repository directory (format: docs/backup-format.md). Thin wiring over `hypernix_backup`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use hypernix_backup::retention::{GfsCounts, Policy};
use hypernix_backup::{BackupOptions, InitOptions, PruneOptions, Repository, SnapshotKind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::OutputArgs;
use crate::output::{EXIT_FAILURE, json, table};

/// The repository and how to unlock it.
#[derive(Debug, Args)]
pub struct RepoArgs {
    /// The repository directory.
    #[arg(long, value_name = "DIR")]
    repo: PathBuf,
    /// A file holding the password (else `HYPERNIX_BACKUP_PASSWORD`).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// Where repository settings come from: a configuration's
/// `hypervisor.backup.repositories.NAME`, or the schema's defaults.
#[derive(Debug, Args)]
pub struct SettingsArgs {
    /// Configuration files or directories to take the repository's settings from.
    #[arg(long = "config", value_name = "FILE")]
    config: Vec<PathBuf>,
    /// The repository's name under `hypervisor.backup.repositories`.
    #[arg(long, default_value = "default")]
    repository: String,
}

impl SettingsArgs {
    /// The named repository's settings; the defaults without `--config`, or for the
    /// default repository when it is not declared.
    fn load(&self) -> anyhow::Result<Option<hypernix_config::schema::backup::Repository>> {
        if self.config.is_empty() {
            return Ok(None);
        }
        let config = hypernix_config::load_paths(&self.config)?;
        let backup = config.hypervisor.backup;
        match backup.repositories.get(&self.repository) {
            Some(r) => Ok(Some(r.clone())),
            None if self.repository == backup.default_repository => Ok(None),
            None => anyhow::bail!(
                "hypervisor.backup.repositories has no `{}`; declare it or pass --repository NAME",
                self.repository
            ),
        }
    }
}

mod remote;

/// Subcommands of `hypernix backup`.
#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Run a backup source of the daemon's configuration now (through the API).
    Run {
        /// The source's name under `hypervisor.backup.sources`.
        source: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List the snapshots of one of the daemon's repositories (through the API).
    Snapshots {
        /// The repository's name (`backup.defaultRepository` when not given).
        #[arg(long)]
        repository: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Create a repository (encrypted unless --no-encryption).
    Init {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        settings: SettingsArgs,
        /// Store chunks and snapshots unencrypted.
        #[arg(long)]
        no_encryption: bool,
    },
    /// Back up files and directories, or disk images with --image.
    Create {
        #[command(flatten)]
        repo: RepoArgs,
        /// The source name recorded in the snapshot (retention applies per source).
        #[arg(long, default_value = "cli")]
        source: String,
        /// The path is a disk image or block device.
        #[arg(long)]
        image: bool,
        /// What to back up.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List snapshots, or the files of one.
    Ls {
        #[command(flatten)]
        repo: RepoArgs,
        /// A snapshot id, prefix or `latest`.
        snapshot: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Restore a snapshot into a directory (tree) or a file or device (image).
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        /// A snapshot id, prefix or `latest`.
        snapshot: String,
        /// Where to restore.
        #[arg(long)]
        target: PathBuf,
    },
    /// Check the repository's structure; with --read-data, every chunk.
    Check {
        #[command(flatten)]
        repo: RepoArgs,
        /// Decrypt and hash every chunk.
        #[arg(long)]
        read_data: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Rebuild the chunk index from the packs.
    Repair {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Forget snapshots by retention, and collect unreferenced packs in two phases.
    Prune {
        #[command(flatten)]
        repo: RepoArgs,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Hours an unreferenced pack stays marked before deletion.
        #[arg(long, default_value_t = 24)]
        grace_hours: u64,
        #[command(flatten)]
        keep: KeepArgs,
        #[command(flatten)]
        settings: SettingsArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// The paths that differ between two snapshots.
    Diff {
        #[command(flatten)]
        repo: RepoArgs,
        /// The older snapshot.
        from: String,
        /// The newer snapshot.
        to: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Serve an image snapshot read-only over NBD until stopped (instant restore).
    Serve {
        #[command(flatten)]
        repo: RepoArgs,
        /// A snapshot id, prefix or `latest`.
        snapshot: String,
        /// The unix socket to listen on.
        #[arg(long)]
        socket: PathBuf,
        /// The export's name.
        #[arg(long, default_value = "snapshot")]
        export: String,
        /// Also create this qcow2 overlay backed by the export, to take a VM's writes.
        #[arg(long, value_name = "FILE")]
        overlay: Option<PathBuf>,
    },
    /// Repository totals: size, chunks, dedup and delta savings.
    Stats {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// GFS counts; with none given, the configured repository's retention applies (the
/// schema's default progressive policy without `--config`).
#[derive(Debug, Args)]
pub struct KeepArgs {
    /// Keep the newest N.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep one per hour for N hours.
    #[arg(long)]
    keep_hourly: Option<u32>,
    /// Keep one per day for N days.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// Keep one per week for N weeks.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// Keep one per month for N months.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// Keep one per year for N years.
    #[arg(long)]
    keep_yearly: Option<u32>,
}

impl KeepArgs {
    fn policy(&self, configured: Option<&hypernix_config::schema::backup::Repository>) -> Policy {
        let counts = GfsCounts {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
        };
        if counts == GfsCounts::default() {
            match configured {
                Some(r) => Policy::from(&r.retention),
                None => Policy::from(&hypernix_config::schema::backup::Retention::default()),
            }
        } else {
            Policy::Gfs(counts)
        }
    }
}

/// Reads the password from `--password-file` or `HYPERNIX_BACKUP_PASSWORD`.
fn password(args: &RepoArgs) -> anyhow::Result<Vec<u8>> {
    if let Some(file) = &args.password_file {
        let mut text = std::fs::read(file)
            .with_context(|| format!("reading the password file {}", file.display()))?;
        while text.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            text.pop();
        }
        return Ok(text);
    }
    std::env::var("HYPERNIX_BACKUP_PASSWORD")
        .map(String::into_bytes)
        .map_err(|_| {
            anyhow::anyhow!(
                "no password: pass --password-file FILE or set HYPERNIX_BACKUP_PASSWORD"
            )
        })
}

fn open(args: &RepoArgs) -> anyhow::Result<Repository> {
    Ok(Repository::open(&args.repo, &password(args)?)?)
}

/// A byte-counting progress bar on stderr, hidden when stderr is not a terminal.
fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
    } else {
        "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs one `hypernix backup` subcommand; `client` reaches the daemon.
pub fn run(cmd: BackupCommand, client: &hypernix_api::client::Client) -> anyhow::Result<ExitCode> {
    match cmd {
        BackupCommand::Run { source, out } => return remote::run(client, &source, out),
        BackupCommand::Snapshots { repository, out } => {
            return remote::snapshots(client, repository.as_deref(), out);
        }
        BackupCommand::Init {
            repo,
            settings,
            no_encryption,
        } => {
            let mut options = match settings.load()? {
                Some(r) => InitOptions::try_from(&r)?,
                None => InitOptions::default(),
            };
            options.encryption &= !no_encryption;
            let r = Repository::init(&repo.repo, &password(&repo)?, &options)?;
            println!(
                "created repository {} at {}",
                r.config().id,
                repo.repo.display()
            );
        }
        BackupCommand::Create {
            repo,
            source,
            image,
            paths,
            out,
        } => {
            let r = open(&repo)?;
            let kind = if image {
                SnapshotKind::Image
            } else {
                SnapshotKind::Tree
            };
            let progress = bar(None, "backing up");
            let options = BackupOptions {
                source,
                kind,
                paths,
            };
            let snap = hypernix_backup::backup(&r, &options, &mut |n| progress.inc(n))?;
            progress.finish_and_clear();
            if out.json {
                json(&snap.stats)?;
            } else {
                let s = &snap.stats;
                println!(
                    "snapshot {} saved: {} files, {} bytes read ({} in holes), {} new chunks, {} bytes stored, {} deduplicated chunks, {} delta chunks saving {} bytes",
                    snap.id,
                    s.files,
                    s.bytes,
                    s.hole_bytes,
                    s.new_chunks,
                    s.stored_bytes,
                    s.dedup_chunks,
                    s.delta_chunks,
                    s.delta_saved_bytes
                );
            }
        }
        BackupCommand::Ls {
            repo,
            snapshot,
            out,
        } => ls(&open(&repo)?, snapshot.as_deref(), out.json)?,
        BackupCommand::Restore {
            repo,
            snapshot,
            target,
        } => {
            let r = open(&repo)?;
            let snap = r.find_snapshot(&snapshot)?;
            let mut total = 0;
            snap.walk(&mut |_, n| total += n.size);
            let progress = bar(Some(total), "restoring");
            hypernix_backup::restore(&r, &snap, &target, &mut |n| progress.inc(n))?;
            progress.finish_and_clear();
            println!("restored snapshot {} to {}", snap.id, target.display());
        }
        BackupCommand::Serve {
            repo,
            snapshot,
            socket,
            export,
            overlay,
        } => serve(&repo, &snapshot, &socket, &export, overlay.as_deref())?,
        BackupCommand::Check {
            repo,
            read_data,
            out,
        } => {
            let r = open(&repo)?;
            let total = r
                .packs()?
                .iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            let progress = bar(
                Some(total),
                if read_data {
                    "reading data"
                } else {
                    "checking"
                },
            );
            let report = hypernix_backup::check(&r, read_data, &mut |n| progress.inc(n))?;
            progress.finish_and_clear();
            if out.json {
                json(&report)?;
            } else {
                for p in &report.problems {
                    println!("error: {}", p.what);
                    for a in &p.affected {
                        println!("  affects snapshot {} file {}", a.snapshot, a.path);
                    }
                }
                println!(
                    "{} snapshots, {} packs, {} chunks read: {}",
                    report.snapshots,
                    report.packs,
                    report.chunks_read,
                    if report.is_ok() {
                        "no errors"
                    } else {
                        "ERRORS FOUND"
                    }
                );
            }
            if !report.is_ok() {
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        }
        BackupCommand::Repair { repo, out } => {
            let mut r = open(&repo)?;
            let report = hypernix_backup::repair(&mut r)?;
            if out.json {
                json(&report)?;
            } else {
                println!(
                    "indexed {} chunks from {} packs",
                    report.chunks, report.packs
                );
                for s in &report.skipped {
                    println!("skipped: {s}");
                }
            }
        }
        BackupCommand::Prune {
            repo,
            dry_run,
            grace_hours,
            keep,
            settings,
            out,
        } => {
            let configured = settings.load()?;
            let r = open(&repo)?;
            let options = PruneOptions {
                policy: keep.policy(configured.as_ref()),
                now: Utc::now(),
                dry_run,
                grace: Duration::from_secs(grace_hours.saturating_mul(3600)),
            };
            let report = hypernix_backup::prune(&r, &options)?;
            if out.json {
                json(&report)?;
            } else {
                let mut t = table(["SNAPSHOT", "SOURCE", "TIME", "VERDICT", "REASON"]);
                for v in &report.snapshots {
                    let verdict = if v.keep { "keep" } else { "forget" };
                    t.add_row([
                        short(&v.id),
                        &v.source,
                        &v.time.to_rfc3339(),
                        verdict,
                        &v.reason,
                    ]);
                }
                println!("{t}");
                let would = if dry_run { "would be " } else { "" };
                println!(
                    "packs {would}marked: {}, {would}deleted: {} ({} bytes), {would}unmarked: {}",
                    report.marked.len(),
                    report.deleted.len(),
                    report.deleted_bytes,
                    report.unmarked.len()
                );
            }
        }
        BackupCommand::Diff {
            repo,
            from,
            to,
            out,
        } => {
            let r = open(&repo)?;
            let changes = hypernix_backup::diff(&r.find_snapshot(&from)?, &r.find_snapshot(&to)?);
            if out.json {
                json(&changes)?;
            } else {
                for c in &changes {
                    let sign = match c.kind {
                        hypernix_backup::ChangeKind::Added => "+",
                        hypernix_backup::ChangeKind::Removed => "-",
                        hypernix_backup::ChangeKind::Modified => "M",
                    };
                    println!("{sign} {}", c.path);
                }
            }
        }
        BackupCommand::Stats { repo, out } => {
            let s = hypernix_backup::stats(&open(&repo)?)?;
            if out.json {
                json(&s)?;
            } else {
                println!(
                    "{} snapshots, {} logical bytes; {} packs, {} bytes on disk; {} chunks ({} plain bytes); similarity: {} delta chunks saved {} bytes",
                    s.snapshots,
                    s.logical_bytes,
                    s.packs,
                    s.pack_bytes,
                    s.chunks,
                    s.chunk_bytes,
                    s.delta_chunks,
                    s.delta_saved_bytes
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The first eight digits of an id, as people quote them.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `ls`: snapshots, or the files of one.
fn ls(r: &Repository, snapshot: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    let Some(id) = snapshot else {
        let snaps = r.snapshots()?;
        if as_json {
            let rows: Vec<_> = snaps
                .iter()
                .map(|s| serde_json::json!({"id": s.id, "time": s.time, "host": s.host, "source": s.source, "kind": s.kind, "paths": s.paths, "stats": s.stats}))
                .collect();
            return json(&rows);
        }
        let mut t = table(["ID", "TIME", "HOST", "SOURCE", "KIND", "BYTES", "PATHS"]);
        for s in &snaps {
            let kind = if s.kind == SnapshotKind::Image {
                "image"
            } else {
                "tree"
            };
            t.add_row([
                short(&s.id),
                &s.time.to_rfc3339(),
                &s.host,
                &s.source,
                kind,
                &s.stats.bytes.to_string(),
                &s.paths.join(" "),
            ]);
        }
        println!("{t}");
        return Ok(());
    };
    let snap = r.find_snapshot(id)?;
    let mut rows = Vec::new();
    snap.walk(&mut |path, node| rows.push((path.to_string(), node)));
    if as_json {
        let rows: Vec<_> = rows
            .iter()
            .map(|(p, n)| serde_json::json!({"path": p, "type": n.kind, "mode": n.mode, "size": n.size, "mtime": n.mtime}))
            .collect();
        return json(&rows);
    }
    for (path, node) in rows {
        println!(
            "{:o} {:>12} {}",
            node.mode,
            node.size,
            Path::new(&path).display()
        );
    }
    Ok(())
}

/// `backup serve`: binds the socket, creates the overlay if asked, then serves forever.
fn serve(
    repo: &RepoArgs,
    snapshot: &str,
    socket: &Path,
    export: &str,
    overlay: Option<&Path>,
) -> anyhow::Result<()> {
    let r = std::sync::Arc::new(open(repo)?);
    let snap = r.find_snapshot(snapshot)?;
    let reader = hypernix_backup::ImageReader::new(r.clone(), &snap)?;
    let listener = std::os::unix::net::UnixListener::bind(socket).with_context(|| {
        format!(
            "cannot listen on {}; remove a stale socket or choose another path",
            socket.display()
        )
    })?;
    let uri = format!("nbd+unix:///{export}?socket={}", socket.display());
    println!(
        "serving snapshot {} ({} bytes) read-only at {uri}",
        snap.id,
        reader.size()
    );
    if let Some(overlay) = overlay {
        let out = std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-u", "-b", &uri])
            .arg(overlay)
            .arg(reader.size().to_string())
            .output()
            .context("running qemu-img (install qemu-utils)")?;
        anyhow::ensure!(
            out.status.success(),
            "creating the overlay {}: {}",
            overlay.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        println!(
            "overlay {} takes the writes; boot a unit from it with image = \"{}\" while this runs",
            overlay.display(),
            overlay.display()
        );
    }
    hypernix_backup::serve(&listener, &reader, export)
        .with_context(|| format!("serving on {}", socket.display()))?;
    Ok(())
}
