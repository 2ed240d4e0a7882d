//! Random bytes never panic the probe, the parsers or the stream importer.

use std::io::Write;

use hypernix_image::import::import;
use hypernix_image::{Format, Options, Output};
use proptest::prelude::*;

/// Opens `bytes` as `format` and reads a few chunks; any outcome but a panic is fine.
fn poke(bytes: &[u8], format: Option<Format>) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    if let Ok(mut r) = hypernix_image::open(file.path(), format) {
        let size = r.virtual_size();
        let mut buf = vec![0u8; 65536];
        for at in [0, size / 2, size.saturating_sub(1)] {
            let at = at - at % 512;
            let n = (size - at.min(size)).min(buf.len() as u64) as usize;
            let _ = r.read_at(at, &mut buf[..n]);
        }
    }
}

/// Imports `bytes` as a stream of `format`; any outcome but a panic is fine.
fn poke_stream(bytes: Vec<u8>, format: Format) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let output = Output::File {
        file: out.reopen().unwrap(),
        name: "out".into(),
        // The page cache path: what is read back must not depend on the sync.
        sync: false,
    };
    let input = Box::new(std::io::Cursor::new(bytes));
    let _ = import(input, "-", format, output, &Options::default(), 1 << 20);
}

/// A header-sized buffer starting with a format's magic, the rest random.
fn with_magic(magic: &'static [u8], rest: Vec<u8>) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend(rest);
    b
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        poke(&bytes, None);
        for f in [Format::Qcow2, Format::Vmdk, Format::Vhdx] {
            poke(&bytes, Some(f));
        }
    }

    #[test]
    fn random_headers_behind_each_magic_never_panic(
        rest in proptest::collection::vec(any::<u8>(), 0..2048),
        which in 0usize..3,
    ) {
        let magic: &'static [u8] = [&b"QFI\xfb"[..], b"KDMV", b"vhdxfile"][which];
        poke(&with_magic(magic, rest), None);
    }

    #[test]
    fn random_streams_behind_each_magic_never_panic(
        rest in proptest::collection::vec(any::<u8>(), 0..4096),
        which in 0usize..3,
    ) {
        let (magic, format): (&'static [u8], Format) =
            [(&b"QFI\xfb"[..], Format::Qcow2), (b"KDMV", Format::Vmdk), (b"vhdxfile", Format::Vhdx)][which];
        poke_stream(with_magic(magic, rest), format);
    }
}
