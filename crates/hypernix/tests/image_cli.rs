//! `hypernix image convert`, `hypernix export` and `hypernix import` as a user runs them:
//! the real binary, pipes through `cat`, checked by `qemu-img check` and `qemu-img compare`.

mod kit;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kit::{bin, hypernix, text};

/// Runs `prog args` and asserts it succeeds; returns stdout and stderr.
fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect("runs");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{prog} {args:?}:\n{all}");
    all
}

/// Runs a shell pipeline and asserts it succeeds.
fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .env("HNX", bin())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A 24 MiB raw disk with data, zeros and holes.
fn source(dir: &Path) -> PathBuf {
    let p = dir.join("src.raw");
    run("qemu-img", &["create", "-f", "raw", &s(&p), "24M"]);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -P 0 4M 1M",
            "-c",
            "write -P 0x3c 9437696 70144",
            "-c",
            "write -P 0x77 25161728 4096",
            &s(&p),
        ],
    );
    p
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hnx-image-cli")
        .tempdir_in("/var/tmp")
        .unwrap()
}

#[test]
fn convert_to_every_format_with_a_json_summary() {
    let dir = tempdir();
    let src = source(dir.path());
    // Every format synced, and every one left to the page cache (--no-sync).
    for (ext, no_sync) in ["raw", "qcow2", "vmdk", "vhdx"]
        .into_iter()
        .flat_map(|e| [(e, false), (e, true)])
    {
        let out = dir.path().join(format!("out.{ext}"));
        let (src_s, out_s) = (s(&src), s(&out));
        let mut args = vec!["image", "convert", &src_s, &out_s, "--json"];
        if no_sync {
            args.push("--no-sync");
        }
        let o = hypernix(&args);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["format"], ext);
        assert_eq!(v["virtual_size"], 24 << 20);
        if ext != "raw" {
            run("qemu-img", &["check", &s(&out)]);
        }
        run("qemu-img", &["compare", &s(&src), &s(&out)]);
    }
}

#[test]
fn qcow2_and_vmdk_stream_through_a_pipe() {
    let dir = tempdir();
    let src = source(dir.path());
    for (fmt, extra) in [("qcow2", ""), ("qcow2", "-c"), ("vmdk", ""), ("raw", "")] {
        let out = dir.path().join(format!("piped{extra}.{fmt}"));
        sh(&format!(
            "\"$HNX\" image convert {} - -O {fmt} {extra} | cat > {}",
            s(&src),
            s(&out)
        ));
        if fmt != "raw" {
            run("qemu-img", &["check", "-f", fmt, &s(&out)]);
        }
        run("qemu-img", &["compare", "-F", fmt, &s(&src), &s(&out)]);
    }
}

#[test]
fn import_from_stdin_and_files_made_by_qemu_img() {
    let dir = tempdir();
    let src = source(dir.path());
    let out = dir.path().join("imported.qcow2");
    sh(&format!(
        "cat {} | \"$HNX\" import - --size 24M -o {}",
        s(&src),
        s(&out)
    ));
    run("qemu-img", &["check", &s(&out)]);
    run("qemu-img", &["compare", &s(&src), &s(&out)]);
    for (fmt, opts) in [
        ("qcow2", "-c"),
        ("vmdk", "-osubformat=streamOptimized"),
        ("vhdx", "-osubformat=dynamic"),
    ] {
        let made = dir.path().join(format!("made.{fmt}"));
        run(
            "qemu-img",
            &["convert", "-O", fmt, opts, &s(&src), &s(&made)],
        );
        let back = dir.path().join(format!("back-{fmt}.raw"));
        run(bin(), &["import", &s(&made), "-o", &s(&back)]);
        run("qemu-img", &["compare", &s(&src), &s(&back)]);
    }
    // More bytes on stdin than --size: refused unless forced.
    let o = Command::new("bash")
        .args([
            "-c",
            &format!(
                "cat {} | \"$HNX\" import - --size 1M -o {}",
                s(&src),
                s(&dir.path().join("cut.raw"))
            ),
        ])
        .env("HNX", bin())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
}

#[test]
fn import_qcow2_vmdk_and_vhdx_from_stdin_byte_for_byte() {
    let dir = tempdir();
    let src = source(dir.path());
    for (name, fmt, opts) in [
        ("plain.qcow2", "qcow2", "-q"),
        ("packed.qcow2", "qcow2", "-c"),
        ("stream.vmdk", "vmdk", "-osubformat=streamOptimized"),
        ("sparse.vmdk", "vmdk", "-osubformat=monolithicSparse"),
        ("dynamic.vhdx", "vhdx", "-osubformat=dynamic"),
        ("fixed.vhdx", "vhdx", "-osubformat=fixed"),
    ] {
        let made = dir.path().join(name);
        run(
            "qemu-img",
            &["convert", "-O", fmt, opts, &s(&src), &s(&made)],
        );
        let back = dir.path().join(format!("{name}.raw"));
        sh(&format!(
            "cat {} | \"$HNX\" import - -o {}",
            s(&made),
            s(&back)
        ));
        run("qemu-img", &["compare", &s(&src), &s(&back)]);
        run("cmp", &[&s(&src), &s(&back)]);
    }
    // A cut stream fails, names the format and leaves no output behind.
    let made = dir.path().join("stream.vmdk");
    let half = std::fs::metadata(&made).unwrap().len() / 2;
    let cut = dir.path().join("cut.raw");
    let o = Command::new("bash")
        .args([
            "-c",
            &format!(
                "head -c {half} {} | \"$HNX\" import - -o {}",
                s(&made),
                s(&cut)
            ),
        ])
        .env("HNX", bin())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("vmdk") && err.contains("ends"), "{err}");
    assert!(!cut.exists(), "a failed import leaves no output");
    // Only a raw file can take an image arriving on stdin.
    let o = Command::new("bash")
        .args([
            "-c",
            &format!(
                "cat {} | \"$HNX\" import - -o {}",
                s(&made),
                s(&dir.path().join("x.qcow2"))
            ),
        ])
        .env("HNX", bin())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("raw"), "{}", text(&o.stderr));
}

#[test]
fn export_a_stopped_unit_and_refuse_a_running_one() {
    let dir = tempdir();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("disks/web")).unwrap();
    let disk = state.join("disks/web/root.raw");
    std::fs::copy(source(dir.path()), &disk).unwrap();
    let out = dir.path().join("web.vmdk");
    sh(&format!(
        "\"$HNX\" export web --format vmdk --state-dir {} | cat > {}",
        s(&state),
        s(&out)
    ));
    run("qemu-img", &["check", &s(&out)]);
    run("qemu-img", &["compare", &s(&disk), &s(&out)]);
    let file = dir.path().join("web.qcow2");
    run(
        bin(),
        &[
            "export",
            "web",
            "--format",
            "qcow2",
            "-c",
            "-o",
            &s(&file),
            "--state-dir",
            &s(&state),
        ],
    );
    run("qemu-img", &["compare", &s(&disk), &s(&file)]);
    // A live QEMU pid (this test's own process stands in for it).
    std::fs::create_dir_all(state.join("units/web")).unwrap();
    std::fs::write(
        state.join("units/web/qemu.pid"),
        std::process::id().to_string(),
    )
    .unwrap();
    let o = hypernix(&[
        "export",
        "web",
        "--format",
        "raw",
        "-o",
        &s(&dir.path().join("x.raw")),
        "--state-dir",
        &s(&state),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("running") && err.contains("--live"), "{err}");
    run(
        bin(),
        &[
            "export",
            "web",
            "--format",
            "raw",
            "--live",
            "-o",
            &s(&dir.path().join("x.raw")),
            "--state-dir",
            &s(&state),
        ],
    );
    let o = hypernix(&[
        "export",
        "nope",
        "--format",
        "raw",
        "--state-dir",
        &s(&state),
    ]);
    assert!(text(&o.stderr).contains("nope"), "{}", text(&o.stderr));
}

#[test]
fn resize_and_errors_say_what_to_do() {
    let dir = tempdir();
    let src = source(dir.path());
    let grown = dir.path().join("grown.qcow2");
    run(
        bin(),
        &["image", "convert", &s(&src), &s(&grown), "--size", "1G"],
    );
    let info = run("qemu-img", &["info", &s(&grown)]);
    assert!(info.contains("1 GiB"), "{info}");
    run("qemu-img", &["compare", &s(&src), &s(&grown)]);
    let o = hypernix(&[
        "image",
        "convert",
        &s(&src),
        &s(&dir.path().join("small.vhdx")),
        "--size",
        "2M",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--force"), "{}", text(&o.stderr));
    assert!(
        !dir.path().join("small.vhdx").exists(),
        "a refused shrink leaves no output"
    );
    let o = hypernix(&[
        "image",
        "convert",
        &s(&src),
        &s(&dir.path().join("out.xyz")),
    ]);
    assert!(text(&o.stderr).contains("-O"), "{}", text(&o.stderr));
    let bogus = dir.path().join("bogus.qcow2");
    std::fs::write(&bogus, b"not an image").unwrap();
    let o = hypernix(&[
        "image",
        "convert",
        &s(&bogus),
        &s(&dir.path().join("o.raw")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("bogus.qcow2"),
        "{}",
        text(&o.stderr)
    );
    let o = Command::new(bin())
        .args(["image", "convert", &s(&src), "-", "-O", "vhdx"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(text(&o.stderr).contains("seekable"), "{}", text(&o.stderr));
}
