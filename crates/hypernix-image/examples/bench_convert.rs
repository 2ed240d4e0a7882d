//! Conversion throughput against `qemu-img convert`, every output format in one run.
//!
//! Usage: `cargo run --release -p hypernix-image --example bench_convert -- [DIR] [GiB] [RUNS]
//! [OUTPUT...]` where OUTPUT is raw, qcow2, qcow2-c, vmdk or vhdx (default: all five).
//!
//! Makes (once) DIR/bench-source-GIBg.raw, a sparse raw disk of GiB (default 1) GiB laid out like
//! a used VM disk: in each 64 MiB stretch, 16 MiB of incompressible bytes (media, packages),
//! 16 MiB of text-like compressible bytes (logs, configs), 4 MiB of written zeros (freed
//! blocks), the rest holes. Then converts it to each output with hypernix-image and with
//! `qemu-img convert -O FMT` (`-c` for compressed qcow2), checks each of ours with `qemu-img
//! compare`, and prints MB/s of guest bytes (virtual size / wall time) and ratios ours/theirs.
//!
//! Ours `fdatasync`s its output before it returns unless told `--no-sync`; `qemu-img convert`
//! does not (its default cache mode for the output is `unsafe`, which drops flushes). So two
//! like-for-like pairs: ours without the sync against qemu-img's own wall time, and ours
//! synced against qemu-img followed by an `fdatasync` of its output (what `sync -d FILE`
//! does). Each figure is the best
//! of RUNS (default 3) runs, ours and qemu-img alternating, because the machine is shared.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hypernix_image::{Format, Options, Output};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp/hnx-bench".into()));
    let gib: u64 = args
        .next()
        .map_or(1, |s| s.parse().expect("GiB is a number"));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let runs: usize = args
        .next()
        .map_or(3, |s| s.parse().expect("RUNS is a number"));
    let all = [
        ("raw", Format::Raw, false),
        ("qcow2", Format::Qcow2, false),
        ("qcow2-c", Format::Qcow2, true),
        ("vmdk", Format::Vmdk, false),
        ("vhdx", Format::Vhdx, false),
    ];
    let wanted: Vec<String> = args.collect();
    let outputs: Vec<_> = all
        .into_iter()
        .filter(|(label, ..)| wanted.is_empty() || wanted.iter().any(|w| w == label))
        .collect();
    let src = source(&dir, gib << 30);
    let size = gib << 30;
    println!("source {} ({} GiB virtual)", src.display(), gib);
    println!(
        "{:<10} {:>12} {:>18} {:>7} {:>17} {:>18} {:>7}",
        "output",
        "ours --no-sync",
        "qemu-img (no sync)",
        "ratio",
        "ours (synced)",
        "qemu-img+fdatasync",
        "ratio"
    );
    for (label, format, compress) in outputs {
        let ours_out = dir.join(format!("ours.{format}"));
        let qemu_out = dir.join(format!("qemu.{format}"));
        let (mut ours, mut ours_nosync, mut plain, mut synced) =
            (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..runs {
            ours_nosync = ours_nosync.min(time_ours(&src, &ours_out, format, compress, false));
            let (p, s) = time_qemu(&src, &qemu_out, format, compress);
            plain = plain.min(p);
            synced = synced.min(s);
            ours = ours.min(time_ours(&src, &ours_out, format, compress, true));
        }
        let same = Command::new("qemu-img")
            .arg("compare")
            .arg(&src)
            .arg(&ours_out)
            .output()
            .expect("compare");
        assert!(
            same.status.success(),
            "{label}: our output differs from the source"
        );
        let mbs = |secs: f64| size as f64 / 1e6 / secs;
        println!(
            "{label:<10} {:>12.0} {:>18.0} {:>6.2}x {:>17.0} {:>18.0} {:>6.2}x   (on disk: ours {} MB, qemu-img {} MB)",
            mbs(ours_nosync),
            mbs(plain),
            plain / ours_nosync,
            mbs(ours),
            mbs(synced),
            synced / ours,
            on_disk(&ours_out) / 1_000_000,
            on_disk(&qemu_out) / 1_000_000,
        );
        let _ = std::fs::remove_file(&ours_out);
        let _ = std::fs::remove_file(&qemu_out);
    }
}

/// Seconds hypernix-image takes to convert `src` into `out`, syncing it if `sync`.
fn time_ours(src: &Path, out: &Path, format: Format, compress: bool, sync: bool) -> f64 {
    let t = Instant::now();
    let mut reader = hypernix_image::open(src, Some(Format::Raw)).expect("open source");
    let file = File::create(out).expect("create output");
    let output = Output::File {
        file,
        name: out.display().to_string(),
        sync,
    };
    let opts = Options {
        compress,
        ..Options::default()
    };
    hypernix_image::convert(
        reader.as_mut(),
        "source",
        output,
        format,
        &opts,
        &mut |_, _| {},
    )
    .expect("convert");
    t.elapsed().as_secs_f64()
}

/// Seconds `qemu-img convert` takes to convert `src` into `out`, alone and followed by an
/// `fdatasync` of `out`.
fn time_qemu(src: &Path, out: &Path, format: Format, compress: bool) -> (f64, f64) {
    let t = Instant::now();
    let mut qemu = Command::new("qemu-img");
    qemu.args(["convert", "-f", "raw", "-O", format.name()]);
    if format == Format::Vmdk {
        qemu.args(["-o", "subformat=streamOptimized"]);
    }
    if compress {
        qemu.arg("-c");
    }
    let status = qemu.arg(src).arg(out).status().expect("qemu-img runs");
    assert!(status.success(), "qemu-img convert failed");
    let plain = t.elapsed().as_secs_f64();
    File::open(out)
        .and_then(|f| f.sync_data())
        .expect("fdatasync qemu-img's output");
    (plain, t.elapsed().as_secs_f64())
}

/// Bytes a file occupies on disk.
fn on_disk(p: &Path) -> u64 {
    let out = Command::new("du")
        .args(["-B1", "--"])
        .arg(p)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The benchmark's source disk, made once.
fn source(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join(format!("bench-source-{}g.raw", size >> 30));
    if path.exists() {
        return path;
    }
    let file = File::create(&path).expect("create source");
    file.set_len(size).expect("size source");
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let words = [
        "GET",
        "/index.html",
        "200",
        "nginx",
        "kernel:",
        "systemd[1]:",
        "Started",
        "user",
        "session",
        "eth0",
        "link",
        "up",
        "apt",
        "install",
        "ok",
    ];
    let mut text = Vec::with_capacity(16 << 20);
    while text.len() < 16 << 20 {
        let line = format!(
            "2026-11-27T08:{:02}:{:02} host {} {} {}\n",
            next() % 60,
            next() % 60,
            words[(next() % 15) as usize],
            words[(next() % 15) as usize],
            next() % 100_000
        );
        text.extend_from_slice(line.as_bytes());
    }
    text.truncate(16 << 20);
    let stretch = 64u64 << 20;
    for base in (0..size).step_by(stretch as usize) {
        let noise: Vec<u8> = (0..(16 << 20) / 8)
            .flat_map(|_| next().to_le_bytes())
            .collect();
        file.write_all_at(&noise, base).expect("write");
        file.write_all_at(&text, base + (16 << 20)).expect("write");
        file.write_all_at(&vec![0u8; 4 << 20], base + (32 << 20))
            .expect("write");
    }
    file.sync_all().expect("sync");
    path
}
