//! Images on a pipe: imported in one pass into a raw file byte for byte; truncated, garbled
//! and random streams are errors (or the right bytes), never panics.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hypernix_image::import::{BUDGET, import};
use hypernix_image::{Format, Options, Output, Summary};

use crate::kit::{compare, ours, qemu_convert, raw_source, s, tempdir};

/// Imports the image in `src`, read as a stream, into the raw file `dst`.
fn import_stream(src: &Path, dst: &Path, budget: usize) -> hypernix_image::Result<Summary> {
    import_bytes(Box::new(File::open(src).unwrap()), &head(src), dst, budget)
}

/// Imports `input`, whose first bytes are `head`, into the raw file `dst`.
fn import_bytes(
    input: Box<dyn Read + Send>,
    head: &[u8],
    dst: &Path,
    budget: usize,
) -> hypernix_image::Result<Summary> {
    let format = Format::from_magic(head).expect("a known magic");
    let out = Output::File {
        file: File::create(dst).unwrap(),
        name: s(dst),
        sync: true,
    };
    import(input, "-", format, out, &Options::default(), budget)
}

/// The first bytes of a file.
fn head(p: &Path) -> Vec<u8> {
    let mut b = Vec::new();
    File::open(p).unwrap().take(8).read_to_end(&mut b).unwrap();
    b
}

/// Images of `raw` made by qemu-img in every format it streams well, and by our writers.
fn images(raw: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = [
        ("a.qcow2", "qcow2", &[][..]),
        ("c.qcow2", "qcow2", &["-c"][..]),
        (
            "v2.qcow2",
            "qcow2",
            &["-o", "compat=0.10,cluster_size=4096"][..],
        ),
        ("big.qcow2", "qcow2", &["-o", "cluster_size=2M"][..]),
        ("so.vmdk", "vmdk", &["-o", "subformat=streamOptimized"][..]),
        ("ms.vmdk", "vmdk", &["-o", "subformat=monolithicSparse"][..]),
        ("d.vhdx", "vhdx", &["-o", "subformat=dynamic"][..]),
        (
            "f.vhdx",
            "vhdx",
            &["-o", "subformat=fixed,block_size=8M"][..],
        ),
    ]
    .iter()
    .map(|(name, fmt, extra)| qemu_convert(raw, dir, name, fmt, extra))
    .collect();
    for (name, format, compress) in [
        ("ours.qcow2", Format::Qcow2, false),
        ("ours-c.qcow2", Format::Qcow2, true),
        ("ours.vmdk", Format::Vmdk, false),
        ("ours.vhdx", Format::Vhdx, false),
    ] {
        let p = dir.join(name);
        let opts = Options {
            compress,
            ..Options::default()
        };
        ours(raw, &p, format, &opts);
        out.push(p);
    }
    out
}

#[test]
fn images_in_every_format_import_from_a_stream_byte_for_byte() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 24 << 20);
    for img in images(&raw, dir.path()) {
        let back = dir.path().join("back.raw");
        let summary = import_stream(&img, &back, BUDGET)
            .unwrap_or_else(|e| panic!("import {}: {e}", img.display()));
        assert_eq!(summary.virtual_size, 24 << 20, "{}", img.display());
        compare(&raw, &back);
        assert!(
            std::fs::read(&raw).unwrap() == std::fs::read(&back).unwrap(),
            "{}: the imported bytes differ",
            img.display()
        );
    }
}

#[test]
fn data_before_its_tables_past_the_budget_asks_for_a_file() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 24 << 20);
    // Our qcow2 writer puts the L2 tables after the data.
    let img = dir.path().join("ours.qcow2");
    ours(&raw, &img, Format::Qcow2, &Options::default());
    let err = import_stream(&img, &dir.path().join("back.raw"), 1 << 20)
        .expect_err("over the budget")
        .to_string();
    assert!(
        err.contains("qcow2") && err.contains("pass the image as a file"),
        "{err}"
    );
}

#[test]
fn truncated_streams_fail_or_give_the_right_bytes() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 16 << 20);
    let want = std::fs::read(&raw).unwrap();
    let back = dir.path().join("back.raw");
    for img in images(&raw, dir.path()) {
        let bytes = std::fs::read(&img).unwrap();
        let len = bytes.len();
        let mut cuts = vec![0, 1, 7, 100, 511, 512, 4096, 65536, 1 << 20, 3 << 20];
        cuts.extend([len / 3, len / 2, len - 4096, len - 512, len - 1]);
        for cut in cuts.into_iter().filter(|&c| c < len) {
            let input = Box::new(std::io::Cursor::new(bytes[..cut].to_vec()));
            let head = &bytes[..8];
            match import_bytes(input, head, &back, BUDGET) {
                Err(e) => assert!(e.to_string().contains('-'), "the error names stdin: {e}"),
                Ok(_) => assert!(
                    std::fs::read(&back).unwrap() == want,
                    "{} cut at {cut} of {len}: imported without an error, but wrong",
                    img.display()
                ),
            }
        }
    }
}

#[test]
fn garbled_streams_never_panic() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 16 << 20);
    let back = dir.path().join("back.raw");
    for img in images(&raw, dir.path()) {
        let bytes = std::fs::read(&img).unwrap();
        // Headers, tables near the start, and a spread over the rest (data, late tables).
        let mut spots = vec![8, 20, 24, 36, 40, 56, 64, 72, 100, 512, 4096];
        spots.extend((65536..3 << 20).step_by(131_071));
        spots.extend((0..bytes.len()).step_by(bytes.len() / 16 + 1));
        for at in spots.into_iter().filter(|&a| a >= 8 && a < bytes.len()) {
            let mut b = bytes.clone();
            b[at] ^= 0xa5;
            b[at + 1..(at + 9).min(bytes.len())].fill(0xff);
            let head = b[..8].to_vec();
            let _ = import_bytes(Box::new(std::io::Cursor::new(b)), &head, &back, 8 << 20);
        }
    }
}
