//! Helpers: run qemu-img and qemu-io, make source images, convert with the library.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use hypernix_image::{Format, Options, Output, Summary};

/// Runs `prog args`, panicking with its output when it fails.
pub fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog} runs: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{prog} {args:?} failed:\n{text}");
    text
}

/// `qemu-img check` passes on `path` (formats with metadata only).
pub fn check(path: &Path, format: Format) {
    if format != Format::Raw {
        run("qemu-img", &["check", "-f", format.name(), &s(path)]);
    }
}

/// `qemu-img compare` says the two images hold the same guest bytes (exit 0).
pub fn compare(a: &Path, b: &Path) {
    run("qemu-img", &["compare", &s(a), &s(b)]);
}

/// A path as a string.
pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A raw disk of `size` bytes with data at the start, in the middle (odd offsets), explicit
/// zeros (written, so allocated in the file), a hole, and data in its last bytes.
pub fn raw_source(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    run(
        "qemu-img",
        &["create", "-f", "raw", &s(&path), &size.to_string()],
    );
    let tail = size - 4096;
    let writes = [
        "write -P 0xab 0 1M".to_string(),
        "write -P 0x11 3M 300K".to_string(),
        "write -P 0x00 5M 2M".to_string(),
        "write -P 0x5a 9437696 70144".to_string(),
        format!("write -P 0x77 {tail} 4096"),
    ];
    let mut args = vec!["-f", "raw"];
    for w in &writes {
        args.extend(["-c", w.as_str()]);
    }
    let p = s(&path);
    args.push(&p);
    run("qemu-io", &args);
    // Random-looking bytes: a compressor must not shrink every cluster.
    let noise: Vec<u8> = (0u32..256 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::os::unix::fs::FileExt::write_all_at(
        &File::options().write(true).open(&path).unwrap(),
        &noise,
        12 << 20,
    )
    .unwrap();
    path
}

/// `src` converted by qemu-img into `name` with extra options.
pub fn qemu_convert(src: &Path, dir: &Path, name: &str, format: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec!["convert", "-O", format];
    args.extend(extra);
    let (a, b) = (s(src), s(&out));
    args.extend([a.as_str(), b.as_str()]);
    run("qemu-img", &args);
    out
}

/// Converts `src` with the library into `dst` as `format` (to a file).
pub fn ours(src: &Path, dst: &Path, format: Format, opts: &Options) -> Summary {
    let mut reader =
        hypernix_image::open(src, None).unwrap_or_else(|e| panic!("open {}: {e}", src.display()));
    let file = File::create(dst).unwrap();
    let out = Output::File {
        file,
        name: s(dst),
        sync: true,
    };
    hypernix_image::convert(reader.as_mut(), &s(src), out, format, opts, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("convert {} to {format}: {e}", src.display()))
}

/// Converts `src` with the library into `dst` through a non-seekable writer.
pub fn ours_streamed(src: &Path, dst: &Path, format: Format, opts: &Options) -> Summary {
    let mut reader = hypernix_image::open(src, None).unwrap();
    let out = Output::Stream(Box::new(File::create(dst).unwrap()));
    hypernix_image::convert(reader.as_mut(), &s(src), out, format, opts, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("stream {} to {format}: {e}", src.display()))
}

/// A temporary directory under /var/tmp (images are larger than a tmpfs likes).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hnx-image")
        .tempdir_in("/var/tmp")
        .unwrap()
}
