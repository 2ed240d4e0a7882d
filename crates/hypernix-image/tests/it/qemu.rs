//! Every reader against images qemu-img made, every writer checked by `qemu-img check` and
//! `qemu-img compare`, and round trips through our own formats.

use std::path::{Path, PathBuf};

use hypernix_image::{Format, Options};

use crate::kit::{check, compare, ours, ours_streamed, qemu_convert, raw_source, run, s, tempdir};

/// 40 MiB plus a few sectors: not a multiple of any cluster, grain or block size.
const SIZE: u64 = (40 << 20) + 7 * 512;

/// The sources qemu-img makes from one raw disk: each format and subformat we read.
fn sources(dir: &Path, raw: &Path) -> Vec<(PathBuf, Format)> {
    let q = |name: &str, f: &str, extra: &[&str]| qemu_convert(raw, dir, name, f, extra);
    let zeroed = q("zeroed.qcow2", "qcow2", &[]);
    // Zero-flag clusters over data, and a cluster of written zeros.
    run(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -z 0 256K",
            "-c",
            "write -P 0 3M 64K",
            &s(&zeroed),
        ],
    );
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -z 0 256K",
            "-c",
            "write -P 0 3M 64K",
            &s(raw),
        ],
    );
    vec![
        (raw.to_path_buf(), Format::Raw),
        (zeroed, Format::Qcow2),
        (
            q("v2.qcow2", "qcow2", &["-o", "compat=0.10"]),
            Format::Qcow2,
        ),
        (q("compressed.qcow2", "qcow2", &["-c"]), Format::Qcow2),
        (
            q(
                "small-clusters.qcow2",
                "qcow2",
                &["-o", "cluster_size=4096"],
            ),
            Format::Qcow2,
        ),
        (
            q(
                "big-clusters.qcow2",
                "qcow2",
                &["-c", "-o", "cluster_size=2M"],
            ),
            Format::Qcow2,
        ),
        (q("sparse.vmdk", "vmdk", &[]), Format::Vmdk),
        (
            q("stream.vmdk", "vmdk", &["-o", "subformat=streamOptimized"]),
            Format::Vmdk,
        ),
        (q("dynamic.vhdx", "vhdx", &[]), Format::Vhdx),
        (
            q("fixed.vhdx", "vhdx", &["-o", "subformat=fixed"]),
            Format::Vhdx,
        ),
    ]
}

#[test]
fn every_qemu_image_converts_to_every_format_and_passes_check_and_compare() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", SIZE);
    for (src, _) in sources(dir.path(), &raw) {
        for format in Format::ALL {
            let name = src.file_name().unwrap().to_string_lossy().to_string();
            let out = dir.path().join(format!("{name}.out.{format}"));
            ours(&src, &out, format, &Options::default());
            check(&out, format);
            compare(&src, &out);
            std::fs::remove_file(&out).unwrap();
        }
        let out = dir.path().join("out-c.qcow2");
        let summary = ours(
            &src,
            &out,
            Format::Qcow2,
            &Options {
                compress: true,
                ..Options::default()
            },
        );
        check(&out, Format::Qcow2);
        compare(&src, &out);
        assert!(
            summary.output_bytes < summary.data_bytes,
            "compression shrank nothing: {summary:?}"
        );
    }
}

#[test]
fn qemu_images_round_trip_through_every_format() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", SIZE);
    for (src, _) in sources(dir.path(), &raw) {
        for format in [Format::Qcow2, Format::Vmdk, Format::Vhdx] {
            let mid = dir.path().join(format!("mid.{format}"));
            let back = dir.path().join("back.raw");
            ours(&src, &mid, format, &Options::default());
            ours(&mid, &back, Format::Raw, &Options::default());
            compare(&src, &back);
        }
    }
}

#[test]
fn streams_without_seeking_pass_check_and_compare() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", SIZE);
    for (format, compress) in [
        (Format::Qcow2, false),
        (Format::Qcow2, true),
        (Format::Vmdk, false),
        (Format::Raw, false),
    ] {
        let out = dir.path().join(format!("streamed-{compress}.{format}"));
        let summary = ours_streamed(
            &raw,
            &out,
            format,
            &Options {
                compress,
                ..Options::default()
            },
        );
        assert_eq!(summary.passes, if format == Format::Qcow2 { 2 } else { 1 });
        check(&out, format);
        compare(&raw, &out);
    }
}

#[test]
fn zeros_are_skipped_and_holes_stay_holes() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", SIZE);
    let out = dir.path().join("out.qcow2");
    let summary = ours(&raw, &out, Format::Qcow2, &Options::default());
    // Written: 1 MiB, 320 KiB (300K spans 5 chunks), 128 KiB, 256 KiB of noise, the last chunk.
    assert!(summary.data_bytes < 2 << 20, "{summary:?}");
    assert_eq!(summary.data_bytes + summary.zero_bytes, SIZE);
    let info = run("qemu-img", &["info", "--output=json", &s(&out)]);
    assert!(info.contains("\"virtual-size\": 41946624"), "{info}");
}

#[test]
fn resize_grows_with_zeros_and_refuses_a_lossy_shrink() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", SIZE);
    for format in Format::ALL {
        let grown = dir.path().join(format!("grown.{format}"));
        ours(
            &raw,
            &grown,
            format,
            &Options {
                size: Some(64 << 20),
                ..Options::default()
            },
        );
        check(&grown, format);
        let info = run("qemu-img", &["info", "--output=json", &s(&grown)]);
        assert!(
            info.contains(&format!("\"virtual-size\": {}", 64 << 20)),
            "{format}: {info}"
        );
        // The first 40 MiB match, the rest is zeros: compare accepts the size difference.
        compare(&raw, &grown);
    }
    let mut reader = hypernix_image::open(&raw, None).unwrap();
    let out = hypernix_image::Output::File {
        file: std::fs::File::create(dir.path().join("x.qcow2")).unwrap(),
        name: "x.qcow2".into(),
        sync: true,
    };
    let err = hypernix_image::convert(
        reader.as_mut(),
        "source.raw",
        out,
        Format::Qcow2,
        &Options {
            size: Some(20 << 20),
            ..Options::default()
        },
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--force") && err.contains("source.raw"),
        "{err}"
    );
    let cut = dir.path().join("cut.qcow2");
    ours(
        &raw,
        &cut,
        Format::Qcow2,
        &Options {
            size: Some(8 << 20),
            force: true,
            ..Options::default()
        },
    );
    check(&cut, Format::Qcow2);
    let head = dir.path().join("head.raw");
    run("qemu-img", &["convert", "-O", "raw", &s(&raw), &s(&head)]);
    run(
        "qemu-img",
        &["resize", "-f", "raw", "--shrink", &s(&head), "8M"],
    );
    compare(&head, &cut);
}

#[test]
fn a_two_tib_sparse_disk_converts_without_reading_its_holes() {
    let dir = tempdir();
    let raw = dir.path().join("big.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(2 << 40)
        .unwrap();
    let end = (2u64 << 40) - (1 << 20);
    run(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0x1 0 64K",
            "-c",
            &format!("write -P 0xcd {end} 1M"),
            &s(&raw),
        ],
    );
    let started = std::time::Instant::now();
    // qcow2 only: qemu-img's own check and compare walk a 2 TiB VMDK or VHDX grain by grain
    // for minutes; those writers share the pipeline that skips the holes.
    for format in [Format::Qcow2, Format::Raw] {
        let out = dir.path().join(format!("out.{format}"));
        let summary = ours(&raw, &out, format, &Options::default());
        assert_eq!(summary.data_bytes, (1 << 20) + (64 << 10));
        check(&out, format);
        compare(&raw, &out);
    }
    assert!(
        started.elapsed().as_secs() < 60,
        "holes were read: {:?}",
        started.elapsed()
    );
}
