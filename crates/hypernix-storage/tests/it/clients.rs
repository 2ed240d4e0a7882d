//! Real NBD clients against the server: qemu-io, qemu-img, nbdinfo, nbdcopy.

use crate::kit::{disk, run, serve};

const MIB: u64 = 1 << 20;

#[test]
fn qemu_io_writes_and_reads_back_a_pattern() {
    let s = serve(&disk());
    s.store.create_volume("vol", 64 * MIB).unwrap();
    let out = run(
        "qemu-io",
        &[
            "-f",
            "raw",
            &s.uri("vol"),
            "-c",
            "write -P 0xab 0 1M",
            "-c",
            "write -f -P 0xcd 3M 64k",
            "-c",
            "flush",
            "-c",
            "read -P 0xab 0 1M",
            "-c",
            "read -P 0xcd 3M 64k",
            "-c",
            "read -P 0 1M 2M",
        ],
    );
    assert!(!out.contains("fail"), "{out}");
    assert_eq!(out.matches("read ").count(), 3, "{out}");
    let mut buf = vec![0; 4];
    s.store.read("vol", MIB - 2, &mut buf).unwrap();
    assert_eq!(buf, [0xab, 0xab, 0, 0]);
}

#[test]
fn qemu_img_info_and_convert_to_and_from_an_export() {
    let s = serve(&disk());
    s.store.create_volume("img", 8 * MIB).unwrap();
    let info = run("qemu-img", &["info", "--output=json", &s.uri("img")]);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], 8 * MIB);
    let src = s.dir.path().join("src.raw");
    let data: Vec<u8> = (0..8 * MIB).map(|i| ((i / 4096) % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let src = src.to_str().unwrap();
    run(
        "qemu-img",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src,
            &s.uri("img"),
        ],
    );
    let out = s.dir.path().join("out.raw");
    let tcp = format!("nbd://127.0.0.1:{}/img", s.port);
    run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &tcp,
            out.to_str().unwrap(),
        ],
    );
    assert!(std::fs::read(&out).unwrap() == data, "round trip differs");
    run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", src, &s.uri("img")],
    );
}

#[test]
fn nbdinfo_maps_holes_and_data_and_lists_exports() {
    let s = serve(&disk());
    s.store.create_volume("map", 4 * MIB).unwrap();
    s.store.create_volume("other", MIB).unwrap();
    s.store.write("map", 2 * MIB + 10, b"x", false).unwrap();
    let map = run("nbdinfo", &["--map", &s.uri("map")]);
    let rows: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["0", "2097152", "3", "hole,zero"],
            vec!["2097152", "1048576", "0", "data"],
            vec!["3145728", "1048576", "3", "hole,zero"],
        ],
        "{map}"
    );
    let list = run("nbdinfo", &["--list", "--json", &s.uri("")]);
    assert!(
        list.contains("\"map\"") && list.contains("\"other\""),
        "{list}"
    );
}

#[test]
fn nbdcopy_round_trip_keeps_every_byte() {
    let s = serve(&disk());
    s.store.create_volume("copy", 16 * MIB).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let data: Vec<u8> = (0..16 * MIB)
        .map(|i| {
            if (i / MIB) % 3 == 1 {
                return 0;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let src = s.dir.path().join("src.raw");
    std::fs::write(&src, &data).unwrap();
    run("nbdcopy", &[src.to_str().unwrap(), &s.uri("copy")]);
    let back = s.dir.path().join("back.raw");
    let tcp = format!("nbd://127.0.0.1:{}/copy", s.port);
    run("nbdcopy", &[&tcp, back.to_str().unwrap()]);
    let sum = |p: &std::path::Path| run("sha256sum", &[p.to_str().unwrap()])[..64].to_owned();
    assert_eq!(sum(&src), sum(&back));
    // The zero MiBs stayed holes.
    let allocated = s.store.volumes()[0].allocated_extents;
    assert!(allocated <= 11, "{allocated} extents allocated");
}
