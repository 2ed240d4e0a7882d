//! Broken images: every reader returns an error that names the file, never panics.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hypernix_image::{Format, Reader};

use crate::kit::{qemu_convert, raw_source, run, s, tempdir};

/// Opens `path` as `format` and reads it all; returns the first error's text.
fn failure(path: &Path, format: Format) -> String {
    let read_all = |mut r: Box<dyn Reader>| -> hypernix_image::Result<()> {
        let mut buf = vec![0u8; 1 << 16];
        let size = r.virtual_size();
        let mut at = 0;
        while at < size {
            let n = (size - at).min(buf.len() as u64) as usize;
            r.read_at(at, &mut buf[..n])?;
            at += n as u64;
        }
        Ok(())
    };
    let err = hypernix_image::open(path, Some(format))
        .and_then(read_all)
        .expect_err("a broken image is an error")
        .to_string();
    assert!(err.contains(&s(path)), "the error names the file: {err}");
    err
}

/// A copy of `src` named `name` with `patch` written at `offset`.
fn patched(src: &Path, name: &str, offset: u64, patch: &[u8]) -> PathBuf {
    let out = src.with_file_name(name);
    std::fs::copy(src, &out).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&out)
        .unwrap()
        .write_all_at(patch, offset)
        .unwrap();
    out
}

/// A copy of `src` cut to `len` bytes.
fn truncated(src: &Path, name: &str, len: u64) -> PathBuf {
    let out = src.with_file_name(name);
    std::fs::copy(src, &out).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&out)
        .unwrap()
        .set_len(len)
        .unwrap();
    out
}

#[test]
fn every_reader_rejects_bad_magic_and_truncated_headers() {
    let dir = tempdir();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, vec![0x42u8; 4096]).unwrap();
    for format in [Format::Qcow2, Format::Vmdk, Format::Vhdx] {
        assert!(failure(&junk, format).contains("magic"), "{format}");
    }
    for (magic, format) in [
        (&b"QFI\xfb\0\0\0\x03"[..], Format::Qcow2),
        (b"KDMV\x01\0\0\0", Format::Vmdk),
        (b"vhdxfile", Format::Vhdx),
    ] {
        let short = dir.path().join(format!("short.{format}"));
        std::fs::write(&short, magic).unwrap();
        let err = failure(&short, format);
        assert!(
            err.contains("ends inside") || err.contains("short") || err.contains("valid"),
            "{format}: {err}"
        );
    }
    let unknown = dir.path().join("unknown.dat");
    std::fs::write(&unknown, b"hello").unwrap();
    let err = hypernix_image::open(&unknown, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("-f raw"), "{err}");
}

#[test]
fn qcow2_rejects_absurd_fields_and_unsupported_features() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 16 << 20);
    let good = qemu_convert(&raw, dir.path(), "good.qcow2", "qcow2", &[]);
    let cases: [(&str, u64, Vec<u8>, &str); 6] = [
        (
            "cluster-bits.qcow2",
            20,
            40u32.to_be_bytes().to_vec(),
            "cluster_bits",
        ),
        (
            "size.qcow2",
            24,
            (1u64 << 62).to_be_bytes().to_vec(),
            "absurd",
        ),
        (
            "l1-offset.qcow2",
            40,
            (1u64 << 40).to_be_bytes().to_vec(),
            "L1 table",
        ),
        (
            "backing.qcow2",
            8,
            512u64.to_be_bytes().to_vec(),
            "backing file",
        ),
        (
            "encrypted.qcow2",
            32,
            2u32.to_be_bytes().to_vec(),
            "encryption",
        ),
        (
            "external.qcow2",
            72,
            4u64.to_be_bytes().to_vec(),
            "external data file",
        ),
    ];
    for (name, offset, patch, want) in cases {
        let err = failure(&patched(&good, name, offset, &patch), Format::Qcow2);
        assert!(err.contains(want), "{name}: {err}");
    }
    // The first L1 entry pointed past the end.
    let mut h = [0u8; 8];
    std::fs::File::open(&good)
        .unwrap()
        .read_exact_at(&mut h, 40)
        .unwrap();
    let l1 = u64::from_be_bytes(h);
    let err = failure(
        &patched(
            &good,
            "l2.qcow2",
            l1,
            &((1u64 << 63) | (1 << 40)).to_be_bytes(),
        ),
        Format::Qcow2,
    );
    assert!(err.contains("past the end"), "{err}");
    let len = std::fs::metadata(&good).unwrap().len();
    let err = failure(&truncated(&good, "cut.qcow2", len / 2), Format::Qcow2);
    assert!(
        err.contains("past the end") || err.contains("ends inside"),
        "{err}"
    );
    let compressed = qemu_convert(&raw, dir.path(), "c.qcow2", "qcow2", &["-c"]);
    let clen = std::fs::metadata(&compressed).unwrap().len();
    // Garbage over the compressed data (after the header and tables).
    let garbage = vec![0xffu8; (clen - 3 * 65536) as usize];
    let err = failure(
        &patched(&compressed, "garbage.qcow2", 3 * 65536, &garbage),
        Format::Qcow2,
    );
    assert!(!err.is_empty());
    let backing = dir.path().join("child.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            &s(&good),
            &s(&backing),
        ],
    );
    assert!(failure(&backing, Format::Qcow2).contains("flatten"));
}

#[test]
fn vmdk_rejects_absurd_fields_and_broken_streams() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 16 << 20);
    let sparse = qemu_convert(&raw, dir.path(), "sparse.vmdk", "vmdk", &[]);
    let stream = qemu_convert(
        &raw,
        dir.path(),
        "stream.vmdk",
        "vmdk",
        &["-o", "subformat=streamOptimized"],
    );
    let cases: [(&Path, &str, u64, Vec<u8>, &str); 4] = [
        (
            &sparse,
            "grain.vmdk",
            20,
            3u64.to_le_bytes().to_vec(),
            "grain size",
        ),
        (
            &sparse,
            "gd.vmdk",
            56,
            (1u64 << 40).to_le_bytes().to_vec(),
            "grain directory",
        ),
        (
            &sparse,
            "capacity.vmdk",
            12,
            u64::MAX.to_le_bytes().to_vec(),
            "absurd",
        ),
        (
            &sparse,
            "version.vmdk",
            4,
            9u32.to_le_bytes().to_vec(),
            "version",
        ),
    ];
    for (src, name, offset, patch, want) in cases {
        let err = failure(&patched(src, name, offset, &patch), Format::Vmdk);
        assert!(err.contains(want), "{name}: {err}");
    }
    let len = std::fs::metadata(&stream).unwrap().len();
    let err = failure(&truncated(&stream, "cut.vmdk", len / 2), Format::Vmdk);
    assert!(
        err.contains("past the end") || err.contains("ends inside"),
        "{err}"
    );
    // Garbage over the grains (qemu puts them from sector `overHead` on).
    let mut h = [0u8; 8];
    std::fs::File::open(&stream)
        .unwrap()
        .read_exact_at(&mut h, 64)
        .unwrap();
    let first = u64::from_le_bytes(h) * 512;
    let garbage = vec![0xffu8; (len - 1536 - first) as usize];
    let err = failure(
        &patched(&stream, "grain-data.vmdk", first, &garbage),
        Format::Vmdk,
    );
    assert!(err.contains("grain"), "{err}");
}

#[test]
fn vhdx_rejects_bad_checksums_and_tables_past_the_end() {
    let dir = tempdir();
    let raw = raw_source(dir.path(), "source.raw", 16 << 20);
    let good = qemu_convert(&raw, dir.path(), "good.vhdx", "vhdx", &[]);
    let both = patched(&good, "headers.vhdx", 64 << 10, &[0xff; 16]);
    std::fs::File::options()
        .write(true)
        .open(&both)
        .unwrap()
        .write_all_at(&[0xff; 16], 128 << 10)
        .unwrap();
    assert!(failure(&both, Format::Vhdx).contains("checksum"));
    let regions = patched(&good, "regions.vhdx", 192 << 10, &[0xff; 16]);
    std::fs::File::options()
        .write(true)
        .open(&regions)
        .unwrap()
        .write_all_at(&[0xff; 16], 256 << 10)
        .unwrap();
    assert!(failure(&regions, Format::Vhdx).contains("region table"));
    let len = std::fs::metadata(&good).unwrap().len();
    let err = failure(
        &truncated(&good, "cut.vhdx", len.min(3 << 20)),
        Format::Vhdx,
    );
    assert!(
        err.contains("past the end") || err.contains("ends inside"),
        "{err}"
    );
}
