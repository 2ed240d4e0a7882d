//! Hostile and broken clients: error replies or a closed connection, never a crash.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::kit::{disk, run, serve};

const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REQUEST_MAGIC: u32 = 0x2560_9513;

fn connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hello = [0u8; 18];
    (&s).read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");
    s
}

fn option(s: &mut UnixStream, opt: u32, data: &[u8]) {
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend(opt.to_be_bytes());
    b.extend((data.len() as u32).to_be_bytes());
    b.extend(data);
    s.write_all(&b).unwrap();
}

/// Reads option replies up to the ACK (or an error), returning the reply types.
fn replies(s: &mut UnixStream) -> Vec<u32> {
    let mut kinds = Vec::new();
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).unwrap();
        let kind = u32::from_be_bytes(h[12..16].try_into().unwrap());
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut d = vec![0; len as usize];
        s.read_exact(&mut d).unwrap();
        kinds.push(kind);
        if kind == 1 || kind & 0x8000_0000 != 0 {
            return kinds;
        }
    }
}

/// Connects and enters transmission on `vol` with simple replies.
fn go(path: &std::path::Path, vol: &str) -> UnixStream {
    let mut s = connect(path);
    s.write_all(&3u32.to_be_bytes()).unwrap();
    let mut d = (vol.len() as u32).to_be_bytes().to_vec();
    d.extend(vol.as_bytes());
    d.extend(0u16.to_be_bytes());
    option(&mut s, 7, &d);
    assert_eq!(replies(&mut s), [3, 3, 1]);
    s
}

fn request(s: &mut UnixStream, cmd: u16, cookie: u64, offset: u64, len: u32) {
    let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
    b.extend(0u16.to_be_bytes());
    b.extend(cmd.to_be_bytes());
    b.extend(cookie.to_be_bytes());
    b.extend(offset.to_be_bytes());
    b.extend(len.to_be_bytes());
    s.write_all(&b).unwrap();
}

/// Reads a simple reply header: (error, cookie).
fn simple_reply(s: &mut UnixStream) -> (u32, u64) {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(u32::from_be_bytes(h[..4].try_into().unwrap()), 0x6744_6698);
    (
        u32::from_be_bytes(h[4..8].try_into().unwrap()),
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
    )
}

fn closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn garbage_handshakes_close_the_connection() {
    let s = serve(&disk());
    s.store.create_volume("vol", 1 << 20).unwrap();
    // Client flags without fixed newstyle.
    let mut c = connect(&s.socket);
    c.write_all(&0u32.to_be_bytes()).unwrap();
    assert!(closed(&mut c));
    // Random bytes as an option.
    let mut c = connect(&s.socket);
    c.write_all(&3u32.to_be_bytes()).unwrap();
    c.write_all(&[0x5a; 40]).unwrap();
    assert!(closed(&mut c));
    // An oversize option length.
    let mut c = connect(&s.socket);
    c.write_all(&3u32.to_be_bytes()).unwrap();
    option(&mut c, 7, &[]);
    let mut b = IHAVEOPT.to_be_bytes().to_vec();
    b.extend(7u32.to_be_bytes());
    b.extend(u32::MAX.to_be_bytes());
    let _ = c.write_all(&b);
    assert_eq!(replies(&mut c), [0x8000_0003], "empty GO data is invalid");
    assert!(closed(&mut c));
    // Unknown option, unknown export, SET_META_CONTEXT without structured replies.
    let mut c = connect(&s.socket);
    c.write_all(&3u32.to_be_bytes()).unwrap();
    option(&mut c, 99, b"junk");
    assert_eq!(replies(&mut c), [0x8000_0001]);
    option(&mut c, 7, b"\0\0\0\x04nope\0\0");
    assert_eq!(replies(&mut c), [0x8000_0006]);
    option(&mut c, 10, b"\0\0\0\0\0\0\0\0");
    assert_eq!(replies(&mut c), [0x8000_0003]);
    option(&mut c, 2, &[]);
    assert_eq!(replies(&mut c), [1]);
    assert!(closed(&mut c));
    // The server still works.
    run(
        "qemu-io",
        &["-f", "raw", &s.uri("vol"), "-c", "read -P 0 0 4k"],
    );
}

#[test]
fn bad_requests_get_errors_and_bad_framing_closes() {
    let s = serve(&disk());
    s.store.create_volume("vol", 1 << 20).unwrap();
    let mut c = go(&s.socket, "vol");
    request(&mut c, 0, 1, 1 << 20, 1);
    assert_eq!(simple_reply(&mut c), (22, 1), "read past the end: EINVAL");
    request(&mut c, 0, 2, 0, u32::MAX);
    assert_eq!(simple_reply(&mut c), (22, 2), "oversize read: EINVAL");
    request(&mut c, 77, 3, 0, 0);
    assert_eq!(simple_reply(&mut c), (22, 3), "unknown command: EINVAL");
    request(&mut c, 1, 4, u64::MAX - 1, 4);
    c.write_all(&[1, 2, 3, 4]).unwrap();
    assert_eq!(simple_reply(&mut c), (28, 4), "write past the end: ENOSPC");
    request(&mut c, 7, 5, 0, 4096);
    assert_eq!(
        simple_reply(&mut c),
        (22, 5),
        "block status without the context"
    );
    request(&mut c, 4, 6, 4096, 1 << 20);
    assert_eq!(simple_reply(&mut c), (28, 6), "trim past the end: ENOSPC");
    request(&mut c, 0, 7, 0, 4);
    assert_eq!(simple_reply(&mut c), (0, 7));
    let mut data = [9u8; 4];
    c.read_exact(&mut data).unwrap();
    assert_eq!(data, [0; 4]);
    // An oversize write cannot be skipped: the connection closes.
    request(&mut c, 1, 8, 0, u32::MAX);
    assert!(closed(&mut c));
    // A bad request magic closes too.
    let mut c = go(&s.socket, "vol");
    c.write_all(&[0xff; 28]).unwrap();
    assert!(closed(&mut c));
    assert!(s.store.fsck().unwrap().is_clean());
    assert_eq!(s.store.volumes()[0].allocated_extents, 0);
}

/// The fuzz target's body (fuzz/fuzz_targets/nbd_session.rs) on random inputs that start
/// with a valid handshake, so the random part reaches option haggling and transmission.
#[test]
fn random_sessions_never_crash_or_corrupt() {
    use std::sync::Arc;

    use hypernix_storage::nbd::NbdServer;
    use hypernix_storage::{Store, StoreConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut config = StoreConfig::single_disk(8 << 20);
    config.granularity = 64 << 10;
    let store = Arc::new(Store::ephemeral(&config).unwrap());
    store.create_volume("vol", 4 << 20).unwrap();
    store.write("vol", 0, &[1; 4096], false).unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Client flags, then GO on "vol" after STRUCTURED_REPLY and SET_META_CONTEXT.
    let mut prefix = 3u32.to_be_bytes().to_vec();
    for (opt, data) in [
        (8u32, Vec::new()),
        (10, {
            let mut d = 3u32.to_be_bytes().to_vec();
            d.extend(b"vol");
            d.extend(1u32.to_be_bytes());
            d.extend(15u32.to_be_bytes());
            d.extend(b"base:allocation");
            d
        }),
        (7, {
            let mut d = 3u32.to_be_bytes().to_vec();
            d.extend(b"vol\0\0");
            d
        }),
    ] {
        prefix.extend(IHAVEOPT.to_be_bytes());
        prefix.extend(opt.to_be_bytes());
        prefix.extend((data.len() as u32).to_be_bytes());
        prefix.extend(data);
    }
    for case in 0..300u64 {
        let mut input = if case % 3 == 0 {
            Vec::new()
        } else {
            prefix.clone()
        };
        // Random requests with the right magic, plus plain noise.
        for _ in 0..next() % 8 {
            let r = next();
            let mut req = REQUEST_MAGIC.to_be_bytes().to_vec();
            req.extend(((r >> 8) as u16 % 4).to_be_bytes());
            req.extend(((r >> 24) as u16 % 10).to_be_bytes());
            req.extend(next().to_be_bytes());
            let offset = if r % 2 == 0 {
                next() % (5 << 20)
            } else {
                next()
            };
            req.extend(offset.to_be_bytes());
            req.extend(((next() % (1 << 21)) as u32).to_be_bytes());
            input.extend(req);
        }
        input.extend((0..next() % 64).map(|_| next() as u8));
        let server = NbdServer::new(store.clone());
        runtime.block_on(async {
            let (client, conn) = tokio::io::duplex(1 << 16);
            let (mut from_server, mut to_server) = tokio::io::split(client);
            let serving = tokio::spawn(async move { server.connection(conn).await });
            let draining = tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = from_server.read_to_end(&mut sink).await;
            });
            let _ = to_server.write_all(&input).await;
            let _ = to_server.shutdown().await;
            serving.await.expect("connection task panicked");
            draining.await.unwrap();
        });
    }
    let report = store.fsck().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}
