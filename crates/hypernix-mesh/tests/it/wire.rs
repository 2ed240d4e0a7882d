//! Wire frames: round trips, and malformed input from the network refused without panics.

use hypernix_mesh::consensus::{Command, Table};
use hypernix_mesh::raft::wire::{
    FrameError, MAX_FRAME_LEN, Request, WIRE_VERSION, read_frame, write_frame,
};
use serde_json::json;

fn frame(version: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(version);
    out.extend_from_slice(body);
    out
}

async fn read(bytes: &[u8]) -> Result<Option<Request>, FrameError> {
    let mut reader = bytes;
    read_frame(&mut reader).await
}

#[tokio::test]
async fn a_request_round_trips() {
    let request = Request::Propose(Command::Put {
        table: Table::VolumeLocations,
        key: "vol-1".into(),
        value: json!(["n1", "n2"]),
    });
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &request).await.unwrap();
    assert_eq!(bytes[4], WIRE_VERSION);
    let back = read(&bytes).await.unwrap().expect("one frame");
    assert_eq!(format!("{back:?}"), format!("{request:?}"));
}

#[tokio::test]
async fn a_closed_connection_reads_as_no_frame() {
    assert!(read(&[]).await.unwrap().is_none());
}

#[tokio::test]
async fn an_oversized_length_is_refused_before_allocating() {
    let bytes = (MAX_FRAME_LEN + 1).to_be_bytes();
    let err = read(&bytes).await.unwrap_err();
    assert!(
        matches!(err, FrameError::TooLarge { len } if len == MAX_FRAME_LEN + 1),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_frame_is_refused() {
    let err = read(&0u32.to_be_bytes()).await.unwrap_err();
    assert!(matches!(err, FrameError::Empty), "{err}");
}

#[tokio::test]
async fn another_version_is_refused() {
    let err = read(&frame(9, b"{}")).await.unwrap_err();
    assert!(matches!(err, FrameError::Version { found: 9 }), "{err}");
    assert!(err.to_string().contains("same hypernix version"), "{err}");
}

#[tokio::test]
async fn bad_json_and_unknown_requests_are_malformed() {
    for body in [
        &b"{not json"[..],
        b"{\"shutdown\":{}}",
        b"{\"read\":{\"table\":\"nope\",\"key\":\"k\"}}",
        b"\xff\xfe",
    ] {
        let err = read(&frame(WIRE_VERSION, body)).await.unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }
}

#[tokio::test]
async fn a_frame_cut_short_is_an_io_error() {
    let mut bytes = frame(
        WIRE_VERSION,
        b"{\"read\":{\"table\":\"units\",\"key\":\"k\"}}",
    );
    bytes.truncate(bytes.len() - 3);
    let err = read(&bytes).await.unwrap_err();
    assert!(matches!(err, FrameError::Io(_)), "{err}");
}

#[test]
fn the_json_of_client_requests_is_pinned() {
    let cas = Request::Propose(Command::CompareAndSwap {
        table: Table::VolumeLocations,
        key: "vol-1".into(),
        expected: None,
        new: Some(json!(["n1"])),
    });
    assert_eq!(
        serde_json::to_value(&cas).unwrap(),
        json!({"propose": {"op": "compareAndSwap", "table": "volumeLocations", "key": "vol-1", "expected": null, "new": ["n1"]}})
    );
    let read = Request::Read {
        table: Table::Revocations,
        key: "r".into(),
    };
    assert_eq!(
        serde_json::to_value(&read).unwrap(),
        json!({"read": {"table": "revocations", "key": "r"}})
    );
}

/// A dialer whose every connection is answered by `peer`, a fake node.
struct FakePeer<F>(F);

impl<F, Fut> hypernix_mesh::raft::Dialer for FakePeer<F>
where
    F: Fn(tokio::io::DuplexStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    type Stream = tokio::io::DuplexStream;

    async fn dial(&self, _addr: &str) -> std::io::Result<tokio::io::DuplexStream> {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        tokio::spawn((self.0)(theirs));
        Ok(ours)
    }
}

fn channel<F, Fut>(peer: F) -> hypernix_mesh::raft::Channel<FakePeer<F>>
where
    F: Fn(tokio::io::DuplexStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    hypernix_mesh::raft::Channel::new(std::sync::Arc::new(FakePeer(peer)), "fake:1")
}

#[tokio::test]
async fn a_peer_answering_garbage_the_wrong_kind_or_nothing_is_an_error() {
    use hypernix_mesh::consensus::ConsensusError;
    use hypernix_mesh::raft::wire::Response;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    let timeout = Duration::from_millis(200);
    let garbage = channel(|mut s| async move {
        let _ = read_frame::<_, Request>(&mut s).await;
        let _ = s.write_all(&frame(WIRE_VERSION, b"[1,2")).await;
    });
    let err = garbage.read(Table::Units, "k", timeout).await.unwrap_err();
    assert!(
        matches!(&err, ConsensusError::Unreachable { addr, reason } if addr == "fake:1" && reason.contains("malformed")),
        "{err}"
    );

    let wrong_kind = channel(|mut s| async move {
        let _ = read_frame::<_, Request>(&mut s).await;
        let _ = write_frame(&mut s, &Response::Read(Ok(None))).await;
    });
    let put = Command::Delete {
        table: Table::Units,
        key: "k".into(),
    };
    let err = wrong_kind.propose(put, timeout).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("answered a propose request with something else"),
        "{err}"
    );

    let silent = channel(|s| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let err = silent.read(Table::Units, "k", timeout).await.unwrap_err();
    assert!(err.to_string().contains("did not answer within"), "{err}");
}
