//! `hypernix storage replay|heatmap|stats` as a user runs them: the real binary, a real
//! NBD server and real qemu-io clients, the ARC paper's OLTP trace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

fn hypernix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hypernix"))
        .args(args)
        .output()
        .expect("the hypernix binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn qemu_io(sock: &Path, cmds: &[&str]) {
    let uri = format!("nbd+unix:///v?socket={}", sock.display());
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(&uri).output().expect("qemu-io runs (qemu-utils)");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn heatmap_and_stats_show_what_a_served_volume_saw() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let s = store.to_str().unwrap();
    let out = hypernix(&["storage", "volume", "create", "v", "16Mi", "--store-dir", s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sock = dir.path().join("sock");
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_hypernix"))
            .args(["storage", "serve", "--store-dir", s, "--socket"])
            .arg(&sock)
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    qemu_io(&sock, &["write -P 0xab 0 2M", "write -P 0x11 8M 1M"]);
    for _ in 0..10 {
        qemu_io(&sock, &["read -P 0xab 0 1M"]);
    }
    // Ctrl-C: the server saves its counters and heat on the way out.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(server.0.wait().unwrap().success());

    let png = dir.path().join("h.png");
    let out = hypernix(&[
        "storage",
        "heatmap",
        "v",
        "--store-dir",
        s,
        "--width",
        "8",
        "--png",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    // Extent 0 is the hottest, 1 and 8 were written once, the rest are holes.
    assert!(shown.contains("       0 |█░......|"), "{shown}");
    assert!(shown.contains("       8 |░.......|"), "{shown}");
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (64, 16));

    let out = hypernix(&["storage", "heatmap", "v", "--store-dir", s, "--json"]);
    let heat: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(heat["extents"].as_array().unwrap().len(), 16);
    assert!(
        heat["extents"][0]["reads"].as_f64().unwrap() > 9.0,
        "{heat}"
    );
    assert_eq!(heat["extents"][2]["tier"], serde_json::Value::Null);

    let out = hypernix(&["storage", "stats", "--store-dir", s, "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(stats[0]["reads"].as_u64().unwrap() >= 10, "{stats}");
    assert_eq!(stats[0]["hit_ratio"], 1.0);

    for (args, needle) in [
        (
            vec!["storage", "heatmap", "nope", "--store-dir", s],
            "no volume named \"nope\"",
        ),
        (
            vec![
                "storage",
                "heatmap",
                "v",
                "--store-dir",
                s,
                "--window",
                "2h",
            ],
            "not one of storage.fabric.heatMap.timeWindows",
        ),
    ] {
        let out = hypernix(&args);
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
}

fn trace(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../../shared/data/block-traces/{name}"))
}

#[test]
fn replay_prints_our_hit_ratio_beside_lru_and_arc() {
    let oltp = trace("OLTP.lis.zst");
    let out = hypernix(&[
        "storage",
        "replay",
        oltp.to_str().unwrap(),
        "--tier0",
        "1000",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["requests"], 914_145);
    let t0 = &r["tiers"][0];
    assert_eq!(t0["capacity"], 1000);
    // The ARC paper's LRU figure for OLTP at 1000 pages: 32.83%.
    assert!(
        (t0["lru"].as_f64().unwrap() - 0.3283).abs() < 0.00005,
        "{r}"
    );
    assert!(
        t0["hit_ratio"].as_f64().unwrap() >= t0["arc"].as_f64().unwrap(),
        "{r}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.lis");
    std::fs::write(&bad, "1 1 0 0\n2 x 0 1\n").unwrap();
    let out = hypernix(&["storage", "replay", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    let out = hypernix(&[
        "storage",
        "replay",
        oltp.to_str().unwrap(),
        "--policy",
        "s3fifo",
    ]);
    assert!(
        text(&out.stderr).contains("use lru, arc or tinylfu"),
        "{}",
        text(&out.stderr)
    );
}
