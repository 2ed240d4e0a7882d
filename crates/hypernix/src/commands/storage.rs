//! `hypernix storage`: tiered volumes in a local store, served over NBD.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::IsTerminal;

use hypernix_config::schema::storage::Storage;
use hypernix_config::{Duration, Size};
use hypernix_storage::cache::PolicyKind;
use hypernix_storage::nbd::NbdServer;
use hypernix_storage::replay::{self, ReplaySetup};
use hypernix_storage::{Store, StoreConfig, StoreOptions, TierMedium, TierSpec};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::OutputArgs;
use crate::output::{self, table};

/// Tiered volumes served over NBD.
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Create, list, remove and resize volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Per tier: level, capacity, bytes used, extents, reads served and hit ratio (a memory
    /// tier is the read cache: its hits), extents moved in.
    Stats {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Check the extent map against the tier files; exit 1 on a problem.
    Fsck {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Serve every volume as an NBD export (export name = volume name) until Ctrl-C.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Unix socket to listen on.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// TCP address to listen on (keep it on loopback: NBD has no authentication here).
        #[arg(long)]
        tcp: Option<String>,
    },
    /// Replay a block trace through the heat map, the memory-tier cache and the placement
    /// engine in simulated time; print per-tier hit ratios beside LRU and ARC.
    Replay(ReplayArgs),
    /// Show a volume's heat per extent in the terminal (and as a PNG with --png).
    Heatmap(HeatmapArgs),
}

/// `hypernix storage heatmap`.
#[derive(Debug, Args)]
pub struct HeatmapArgs {
    /// The volume.
    pub volume: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Also write the heat map as a PNG picture to this file (8x8 pixels per extent).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Shade by the accesses in this time window (one of heatMap.timeWindows, e.g. 1h)
    /// instead of the decayed count.
    #[arg(long)]
    pub window: Option<String>,
    /// Extents per row.
    #[arg(long, default_value_t = 64)]
    pub width: usize,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `hypernix storage replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace: lines of `start count ...` (512-byte blocks), zstd-compressed if `.zst`.
    pub trace: PathBuf,
    /// Configuration files whose `hypervisor.storage` gives the tiers (default: a memory
    /// tier over one disk tier).
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    /// Memory-tier capacity in pages (one page stands for one extent); overrides the
    /// configuration.
    #[arg(long)]
    pub tier0: Option<usize>,
    /// The memory tier's policy: lru, arc or tinylfu (default: the configuration's).
    #[arg(long)]
    pub policy: Option<String>,
    /// Heat half-life in simulated time, e.g. 2h (default: storage.fabric.heatMap.halfLife).
    #[arg(long)]
    pub half_life: Option<String>,
    /// Page requests per simulated second.
    #[arg(long, default_value_t = 1)]
    pub rate: u64,
    /// Simulated seconds between placement rounds.
    #[arg(long, default_value_t = 60)]
    pub round: u32,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `hypernix storage volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create an empty, thin-provisioned volume.
    Create {
        /// The volume's name (also its NBD export name).
        name: String,
        /// Its size, e.g. 20Gi.
        size: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the volumes.
    Ls {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Remove a volume and free its extents.
    Rm {
        /// The volume.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Grow or shrink a volume (shrinking discards the data past the new end).
    Resize {
        /// The volume.
        name: String,
        /// The new size, e.g. 40Gi.
        size: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Which store, with which tiers.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The store directory.
    #[arg(
        long,
        env = "HYPERNIX_STORAGE_DIR",
        default_value = "/var/lib/hypernix/storage"
    )]
    pub store_dir: PathBuf,
    /// Configuration files whose `hypervisor.storage` gives the tiers (default: one
    /// directory tier in the store directory).
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Store> {
        Ok(self.open_with_options()?.0)
    }

    fn open_with_options(&self) -> anyhow::Result<(Store, StoreOptions)> {
        let (config, options) = if self.config.is_empty() {
            (StoreConfig::single_disk(1 << 40), StoreOptions::default())
        } else {
            let storage = load_storage(&self.config)?;
            (
                StoreConfig::from_config(&storage)?,
                StoreOptions::from_config(&storage)?,
            )
        };
        let store = Store::open_with(&self.store_dir, &config, &options).with_context(|| {
            format!(
                "opening the store in {}; if `hypernix storage serve` runs on it, stop it or pass another --store-dir",
                self.store_dir.display()
            )
        })?;
        Ok((store, options))
    }
}

fn size(s: &str) -> anyhow::Result<u64> {
    s.parse::<Size>()
        .map(Size::bytes)
        .map_err(|()| anyhow::anyhow!("size {s:?} is not a size; write it like 512Mi or 20Gi"))
}

/// Runs a `hypernix storage` command.
pub fn run(cmd: StorageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StorageCommand::Volume(v) => volume(v),
        StorageCommand::Stats { store, out } => {
            let stats = store.open()?.tier_stats();
            if out.json {
                output::json(&stats)?;
            } else {
                let mut t = table([
                    "TIER",
                    "LEVEL",
                    "DURABLE",
                    "CAPACITY",
                    "USED",
                    "EXTENTS",
                    "READS",
                    "HIT RATIO",
                    "MOVES IN",
                ]);
                for s in stats {
                    t.add_row([
                        s.name,
                        s.level.to_string(),
                        s.durable.to_string(),
                        Size(s.capacity).to_string(),
                        Size(s.used).to_string(),
                        s.extents.to_string(),
                        s.reads.to_string(),
                        format!("{:.1}%", s.hit_ratio * 100.0),
                        s.moves_in.to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        StorageCommand::Fsck { store, out } => {
            let report = store.open()?.fsck()?;
            if out.json {
                output::json(&report)?;
            } else {
                println!(
                    "{} volumes, {} extents, {} free slots: {}",
                    report.volumes,
                    report.extents,
                    report.free_slots,
                    if report.is_clean() {
                        "clean"
                    } else {
                        "PROBLEMS"
                    }
                );
                for p in &report.problems {
                    println!("  {p}");
                }
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(output::EXIT_FAILURE)
            })
        }
        StorageCommand::Serve { store, socket, tcp } => serve(&store, socket.as_deref(), tcp),
        StorageCommand::Replay(args) => replay(&args),
        StorageCommand::Heatmap(args) => heatmap(&args),
    }
}

fn policy(name: &str) -> anyhow::Result<PolicyKind> {
    Ok(match name {
        "lru" => PolicyKind::Lru,
        "arc" => PolicyKind::Arc,
        "tinylfu" => PolicyKind::Tinylfu,
        other => {
            anyhow::bail!("cache policy {other:?} is not implemented; use lru, arc or tinylfu")
        }
    })
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let (config, options) = if args.config.is_empty() {
        let mut c = StoreConfig::single_disk(1 << 40);
        c.tiers.insert(
            0,
            TierSpec {
                name: "memory".into(),
                level: 0,
                medium: TierMedium::Memory,
                capacity: 1000 * c.granularity,
                promote: None,
                demote: None,
            },
        );
        (c, StoreOptions::default())
    } else {
        let storage = load_storage(&args.config)?;
        (
            StoreConfig::from_config(&storage)?,
            StoreOptions::from_config(&storage)?,
        )
    };
    let policy = args
        .policy
        .as_deref()
        .map_or(Ok(options.cache.policy), policy)?;
    let mut setup = ReplaySetup::from_store_config(&config, policy).ok_or_else(|| {
        anyhow::anyhow!(
            "storage.tiers needs a memory tier (the cache) and a directory tier to replay a trace"
        )
    })?;
    if let Some(pages) = args.tier0 {
        anyhow::ensure!(pages > 0, "--tier0 must be at least 1 page");
        setup.cache.1 = pages;
    }
    if let Some(h) = &args.half_life {
        let d: Duration = h.parse().map_err(|()| {
            anyhow::anyhow!("--half-life {h:?} is not a duration; write it like 90m or 2h")
        })?;
        anyhow::ensure!(!d.std().is_zero(), "--half-life must be longer than 0");
        setup.half_life = d.std().as_secs_f64();
    }
    setup.windows = options.windows;
    setup.rate = args.rate.max(1);
    setup.round = args.round.max(1);
    let trace = replay::trace::read(&args.trace)?;
    let bar = progress(&args.trace.display().to_string());
    let report = replay::replay(&setup, &trace, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    if args.out.json {
        output::json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} page requests, {} distinct pages, {} simulated seconds, {} moves; memory tier policy {:?}; \
         heat metadata {:.1} bytes per extent",
        report.requests,
        report.unique_pages,
        report.simulated_secs,
        report.moves,
        report.policy,
        report.heat_bytes_per_extent
    );
    let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.2}%", r * 100.0));
    let mut t = table([
        "TIER",
        "CAPACITY",
        "HIT RATIO",
        "THIS OR FASTER",
        "LRU",
        "ARC",
    ]);
    for tier in report.tiers {
        t.add_row([
            tier.name,
            tier.capacity.map_or("(rest)".into(), |c| c.to_string()),
            pct(Some(tier.hit_ratio)),
            pct(Some(tier.cumulative)),
            pct(tier.lru),
            pct(tier.arc),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// A progress bar of page requests on stderr, hidden when stderr is not a terminal.
fn progress(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} pages eta {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Shades from cold to hot; holes print as `.`.
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

fn heatmap(args: &HeatmapArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.width > 0, "--width must be at least 1 extent");
    let heat = args.store.open()?.volume_heat(&args.volume)?;
    let window = match &args.window {
        None => None,
        Some(w) => {
            let secs = w
                .parse::<Duration>()
                .map_err(|()| {
                    anyhow::anyhow!("--window {w:?} is not a duration; write it like 1h")
                })?
                .std()
                .as_secs();
            let i = heat.windows.iter().position(|&x| u64::from(x) == secs);
            Some(i.ok_or_else(|| {
                anyhow::anyhow!(
                    "--window {w}: not one of storage.fabric.heatMap.timeWindows ({} s)",
                    heat.windows
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?)
        }
    };
    let levels = heat.levels(window);
    if let Some(path) = &args.png {
        write_png(path, &levels, args.width)
            .with_context(|| format!("writing the heat map picture {}", path.display()))?;
    }
    if args.out.json {
        output::json(&heat)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "volume {}: {} extents of {}; shade = {} (log scale, relative to the hottest); . = hole",
        heat.volume,
        heat.extents.len(),
        Size(heat.granularity),
        args.window
            .as_deref()
            .map_or("decayed accesses".to_string(), |w| format!(
                "accesses in the last {w}"
            )),
    );
    for (row, chunk) in levels.chunks(args.width).enumerate() {
        let line: String = chunk
            .iter()
            .map(|l| match l {
                None => '.',
                Some(l) => SHADES[((l * 4.0).round() as usize).min(4)],
            })
            .collect();
        println!("{:>8} |{line}|", row * args.width);
    }
    Ok(ExitCode::SUCCESS)
}

/// Colour of a heat level: holes dark grey, then black through red and yellow to white.
fn colour(level: Option<f64>) -> [u8; 3] {
    let Some(l) = level else {
        return [48, 48, 48];
    };
    let l = l.clamp(0.0, 1.0) * 3.0;
    let ramp = |x: f64| (x.clamp(0.0, 1.0) * 255.0) as u8;
    [ramp(l), ramp(l - 1.0), ramp(l - 2.0)]
}

fn write_png(path: &Path, levels: &[Option<f64>], width: usize) -> anyhow::Result<()> {
    const CELL: usize = 8;
    let cols = width.min(levels.len()).max(1);
    let rows = levels.len().div_ceil(cols).max(1);
    let (w, h) = (cols * CELL, rows * CELL);
    let mut pixels = vec![0u8; w * h * 3];
    for (i, &level) in levels.iter().enumerate() {
        let (cx, cy) = (i % cols * CELL, i / cols * CELL);
        let c = colour(level);
        for y in cy..cy + CELL {
            for x in cx..cx + CELL {
                pixels[(y * w + x) * 3..][..3].copy_from_slice(&c);
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut enc = png::Encoder::new(file, u32::try_from(w)?, u32::try_from(h)?);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&pixels)?;
    Ok(())
}

fn load_storage(paths: &[PathBuf]) -> anyhow::Result<Storage> {
    let loaded = hypernix_config::load_paths(paths).map_err(|e| {
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    Ok(loaded.hypervisor.storage)
}

fn volume(cmd: VolumeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VolumeCommand::Create {
            name,
            size: s,
            store,
        } => {
            let v = store.open()?.create_volume(&name, size(&s)?)?;
            println!("created volume {} ({})", v.name, Size(v.size));
        }
        VolumeCommand::Ls { store, out } => {
            let store = store.open()?;
            let vols = store.volumes();
            if out.json {
                output::json(&vols)?;
            } else {
                let mut t = table(["VOLUME", "SIZE", "ALLOCATED"]);
                for v in vols {
                    let used = Size(v.allocated_extents * store.granularity());
                    t.add_row([v.name, Size(v.size).to_string(), used.to_string()]);
                }
                println!("{t}");
            }
        }
        VolumeCommand::Rm { name, store } => {
            store.open()?.remove_volume(&name)?;
            println!("removed volume {name}");
        }
        VolumeCommand::Resize {
            name,
            size: s,
            store,
        } => {
            let bytes = size(&s)?;
            store.open()?.resize_volume(&name, bytes)?;
            println!("resized volume {name} to {}", Size(bytes));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(
    store: &StoreArgs,
    socket: Option<&Path>,
    tcp: Option<String>,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        socket.is_some() || tcp.is_some(),
        "nothing to listen on; pass --socket PATH and/or --tcp 127.0.0.1:10809"
    );
    let (opened, options) = store.open_with_options()?;
    let opened = Arc::new(opened);
    // Placement runs beside the server; its moves are crash-safe, so Ctrl-C may cut one.
    opened.spawn_placement(options.movement);
    let server = NbdServer::new(opened.clone());
    let runtime = hypernix_storage::nbd::runtime()?;
    runtime.block_on(async {
        let unix = match socket {
            Some(path) => {
                // A socket left by a previous run would make bind fail.
                let _ = std::fs::remove_file(path);
                let l = tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("listening on {}", path.display()))?;
                eprintln!("serving NBD on unix socket {}", path.display());
                Some(l)
            }
            None => None,
        };
        let tcp = match tcp {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(&addr)
                    .await
                    .with_context(|| format!("listening on {addr}"))?;
                eprintln!("serving NBD on tcp {addr}");
                Some(l)
            }
            None => None,
        };
        let (s1, s2) = (server.clone(), server);
        tokio::select! {
            r = async move { match unix { Some(l) => s1.serve_unix(l).await, None => std::future::pending().await } } => r?,
            r = async move { match tcp { Some(l) => s2.serve_tcp(l).await, None => std::future::pending().await } } => r?,
            r = tokio::signal::ctrl_c() => r?,
        }
        anyhow::Ok(())
    })?;
    opened.save_counters()?;
    Ok(ExitCode::SUCCESS)
}
