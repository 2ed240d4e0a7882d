//! `hypernix image convert`, `hypernix export` and `hypernix import`: streaming disk image
//! conversion (hypernix-image) between files, stdin and stdout.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Cursor, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use hypernix_daemon::layout::Layout;
use hypernix_image::raw::RawStream;
use hypernix_image::{Format, Options, Output, Reader, Summary, import};
use hypernix_vmm::rundir::RunDir;

use crate::cli::{ImageCommand, OutputArgs};
use crate::output;

/// What to convert to, shared by convert, export and import.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The output's virtual size (bytes, or with K, M, G, T); default: the source's.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Shrink with --size even when the part cut off holds data.
    #[arg(long)]
    pub force: bool,
    /// Compress qcow2 clusters with zlib (as `qemu-img convert -c`); VMDK is always compressed.
    #[arg(short = 'c', long)]
    pub compress: bool,
    /// Leave an output file to the page cache instead of syncing it before returning (as
    /// `qemu-img convert` does by default): faster, but not yet on disk when the command ends.
    #[arg(long)]
    pub no_sync: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `hypernix image convert` arguments.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The source image, or `-` for stdin: qcow2, VMDK or VHDX (to a raw file), or raw
    /// (with --size).
    pub input: String,
    /// The output file, or `-` for stdout.
    pub output: String,
    /// The source's format (default: probed from its magic).
    #[arg(short = 'f', long = "from")]
    pub from: Option<Format>,
    /// The output's format (default: from OUTPUT's extension).
    #[arg(short = 'O', long = "to")]
    pub to: Option<Format>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `hypernix export` arguments.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The unit.
    pub unit: String,
    /// The disk (default: the unit's only disk).
    #[arg(long)]
    pub disk: Option<String>,
    /// The output format.
    #[arg(long)]
    pub format: Format,
    /// The output file, or `-` for stdout (the default).
    #[arg(short = 'o', long, default_value = "-")]
    pub output: String,
    /// The daemon's state directory (default: /var/lib/hypernix as root).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Export even though the unit runs: the copy may be inconsistent.
    #[arg(long)]
    pub live: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// `hypernix import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The image to import, or `-` for stdin: qcow2, VMDK or VHDX (to a raw file), or raw
    /// (with --size).
    pub input: String,
    /// The input's format (default: probed from its magic; raw when stdin has none).
    #[arg(long)]
    pub format: Option<Format>,
    /// The file to write.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// The written file's format (default: from its extension, else raw).
    #[arg(short = 'O', long = "to")]
    pub to: Option<Format>,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Runs `hypernix image ...`.
pub fn run(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::TestGuest { dir, out } => super::daemon::image(dir, out),
        ImageCommand::Convert(args) => convert(args),
    }
}

/// `hypernix image convert IN OUT`.
fn convert(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let to = match args.to {
        Some(f) => f,
        None if args.output == "-" => {
            bail!("name the output format with -O when writing to stdout")
        }
        None => Format::from_extension(&args.output).with_context(|| {
            format!(
                "cannot tell the output format from {:?}; name it with -O raw|qcow2|vmdk|vhdx",
                args.output
            )
        })?,
    };
    let source = open_input(&args.input, args.from, args.target.size)?;
    run_conversion(source, &args.input, &args.output, to, &args.target)
}

/// `hypernix export UNIT --format F`.
pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(args.state_dir.clone().unwrap_or_else(Layout::default_root));
    let disk = match &args.disk {
        Some(d) => d.clone(),
        None => only_disk(&layout, &args.unit)?,
    };
    let path = layout.disk(&args.unit, &disk);
    if !path.exists() {
        bail!(
            "unit {} has no disk {disk} at {}; check the unit name, --disk and --state-dir",
            args.unit,
            path.display()
        );
    }
    if let Some(pid) = running(&layout, &args.unit)?
        && !args.live
    {
        bail!(
            "unit {} is running (QEMU pid {pid}); stop it first (`hypernix unit stop {}`), or pass --live to copy a disk that is being written (the copy may be inconsistent)",
            args.unit,
            args.unit
        );
    }
    let name = path.display().to_string();
    let reader = hypernix_image::open(&path, Some(Format::Raw))?;
    run_conversion(
        Source::Reader(reader),
        &name,
        &args.output,
        args.format,
        &args.target,
    )
}

/// `hypernix import IN -o FILE`.
pub fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let output = args.output.display().to_string();
    let to = args
        .to
        .or_else(|| Format::from_extension(&output))
        .unwrap_or(Format::Raw);
    let source = open_input(&args.input, args.format, args.target.size)?;
    run_conversion(source, &args.input, &output, to, &args.target)
}

/// The unit's only disk's name.
fn only_disk(layout: &Layout, unit: &str) -> anyhow::Result<String> {
    let dir = layout.disks(unit);
    let mut disks: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| {
            format!(
                "unit {unit} has no disks at {}; check the unit name and --state-dir",
                dir.display()
            )
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".raw")
                .map(str::to_string)
        })
        .collect();
    disks.sort();
    match disks.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("unit {unit} has no disks in {}", dir.display()),
        many => bail!(
            "unit {unit} has several disks ({}); name one with --disk",
            many.join(", ")
        ),
    }
}

/// The QEMU pid of a running unit, if it runs.
fn running(layout: &Layout, unit: &str) -> anyhow::Result<Option<u32>> {
    let run = RunDir::new(layout.unit_dir(unit));
    let pid = run
        .read_pid()
        .with_context(|| format!("reading {}", run.pid_file().display()))?;
    Ok(pid.filter(|pid| Path::new(&format!("/proc/{pid}")).exists()))
}

/// What is converted: an image to read at will, or a non-raw image arriving on stdin.
enum Source {
    /// A file, or raw bytes on stdin.
    Reader(Box<dyn Reader>),
    /// A qcow2, VMDK or VHDX image on stdin, imported in one pass.
    Stream(Box<dyn Read + Send>, Format),
}

/// The source `input` names (`-`: stdin, raw of `size` bytes or probed from its magic).
fn open_input(input: &str, format: Option<Format>, size: Option<u64>) -> anyhow::Result<Source> {
    if input != "-" {
        return Ok(Source::Reader(hypernix_image::open(
            Path::new(input),
            format,
        )?));
    }
    let mut stdin = std::io::stdin();
    let mut head = Vec::new();
    if format != Some(Format::Raw) {
        (&mut stdin)
            .take(8)
            .read_to_end(&mut head)
            .context("cannot read stdin")?;
    }
    let format = format
        .or_else(|| Format::from_magic(&head))
        .unwrap_or(Format::Raw);
    let stream: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(stdin));
    if format != Format::Raw {
        return Ok(Source::Stream(stream, format));
    }
    let size = size.context(
        "stdin is read as raw (--format raw, or no qcow2, VMDK or VHDX magic), whose size is not known in advance; pass --size",
    )?;
    Ok(Source::Reader(Box::new(RawStream::new(stream, size))))
}

/// Converts `source` into `output` (`-`: stdout) and reports.
fn run_conversion(
    source: Source,
    name: &str,
    output: &str,
    format: Format,
    target: &TargetArgs,
) -> anyhow::Result<ExitCode> {
    if let Source::Stream(_, from) = &source
        && (format != Format::Raw || output == "-")
    {
        bail!(
            "a {from} image on stdin is imported into a raw file only (its tables may follow its data); write a .raw file, or pass the image as a file to make {format}"
        );
    }
    let out = if output == "-" {
        if std::io::stdout().is_terminal() {
            bail!("refusing to write a disk image to a terminal; redirect stdout or pass a file");
        }
        Output::Stream(Box::new(BufWriter::with_capacity(
            1 << 20,
            std::io::stdout(),
        )))
    } else {
        if name != "-" && same_file(Path::new(name), Path::new(output)) {
            bail!("{output} is the input; write to another file");
        }
        let file: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(output)
            .with_context(|| format!("cannot create {output}"))?;
        Output::File {
            file,
            name: output.to_string(),
            sync: !target.no_sync,
        }
    };
    let opts = Options {
        size: target.size,
        force: target.force,
        compress: target.compress,
    };
    let bar = bar(&format!("{name} → {format}"));
    let started = Instant::now();
    let summary = match source {
        Source::Reader(mut reader) => hypernix_image::convert(
            reader.as_mut(),
            name,
            out,
            format,
            &opts,
            &mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        ),
        Source::Stream(input, from) => {
            import::import(input, name, from, out, &opts, import::BUDGET)
        }
    };
    bar.finish_and_clear();
    if summary.is_err() && output != "-" {
        // A half-written image must not pass for a good one.
        let _ = std::fs::remove_file(output);
    }
    let summary = summary?;
    report(&summary, output, started.elapsed(), target.out.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the summary: on stdout, or on stderr when stdout carries the image.
fn report(s: &Summary, output: &str, took: Duration, as_json: bool) -> anyhow::Result<()> {
    let secs = took.as_secs_f64();
    let value = json!({
        "output": output,
        "format": s.format.name(),
        "virtual_size": s.virtual_size,
        "data_bytes": s.data_bytes,
        "zero_bytes": s.zero_bytes,
        "output_bytes": s.output_bytes,
        "passes": s.passes,
        "seconds": secs,
    });
    let text = if as_json {
        serde_json::to_string_pretty(&value)?
    } else {
        format!(
            "{output}: {} image, {} bytes virtual, {} bytes of data, {} bytes written in {secs:.2}s",
            s.format, s.virtual_size, s.data_bytes, s.output_bytes
        )
    };
    if output == "-" {
        eprintln!("{text}");
    } else if as_json {
        output::json(&value)?;
    } else {
        println!("{text}");
    }
    Ok(())
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A byte progress bar on stderr, hidden when stderr is not a terminal.
fn bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// Parses `1024`, `64K`, `10M`, `2G`, `1T` (binary units; `KiB`, `GB` and so on too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 2G, 512M, 1048576)"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}
