//! Image probing and parsing on arbitrary bytes: the input is written to a file and opened
//! as each format (and probed), then a few chunks are read. Every input must be refused or
//! read, never panic. The first byte picks a magic to prepend, so headers get explored.
#![no_main]

use std::io::Write;

use hypernix_image::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let magic: &[u8] = match pick % 4 {
        0 => b"QFI\xfb",
        1 => b"KDMV",
        2 => b"vhdxfile",
        _ => b"",
    };
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(magic).unwrap();
    file.write_all(rest).unwrap();
    for format in [None, Some(Format::Qcow2), Some(Format::Vmdk), Some(Format::Vhdx)] {
        if let Ok(mut reader) = hypernix_image::open(file.path(), format) {
            let size = reader.virtual_size();
            let mut buf = vec![0u8; 65536];
            for at in [0, size / 2, size.saturating_sub(1)] {
                let at = at - at % 512;
                let n = (size - at.min(size)).min(buf.len() as u64) as usize;
                let _ = reader.read_at(at, &mut buf[..n]);
            }
        }
    }
});
