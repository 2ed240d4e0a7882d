//! The transmission phase: requests in, replies out, several requests in flight.

use std::io;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinSet;

use super::handshake::Session;
use super::proto::*;
use crate::error::{ErrorKind, StorageError};
use crate::store::Store;

/// Requests handled at once per connection.
const IN_FLIGHT: usize = 64;

/// What a request produced.
enum Outcome {
    /// Success without data.
    Done,
    /// Read data.
    Data(Vec<u8>),
    /// Block status descriptors (length, flags).
    Status(Vec<(u32, u32)>),
    /// An errno and a message.
    Error(u32, String),
}

fn errno(e: &StorageError, writing: bool) -> u32 {
    match (e, e.kind()) {
        (StorageError::OutOfRange { .. }, _) if writing => ENOSPC,
        (_, ErrorKind::NoSpace) => ENOSPC,
        (_, ErrorKind::Io) => EIO,
        _ => EINVAL,
    }
}

/// Runs one request against the store (blocking).
fn execute(store: &Store, session: &Session, req: Request, payload: Vec<u8>) -> Outcome {
    let vol = &session.volume;
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let (off, len) = (req.offset, u64::from(req.length));
    let writing = matches!(
        req.command,
        Command::Write | Command::Trim | Command::WriteZeroes
    );
    let result = match req.command {
        Command::Read if req.length > MAX_PAYLOAD => {
            return Outcome::Error(EINVAL, format!("read of {len} bytes exceeds {MAX_PAYLOAD}"));
        }
        Command::Read => {
            let mut buf = vec![0u8; req.length as usize];
            store.read(vol, off, &mut buf).map(|()| Outcome::Data(buf))
        }
        Command::Write => store.write(vol, off, &payload, fua).map(|()| Outcome::Done),
        Command::Trim | Command::WriteZeroes => {
            store.zero(vol, off, len, fua).map(|()| Outcome::Done)
        }
        Command::Flush => store.flush().map(|()| Outcome::Done),
        Command::Cache => store.block_status(vol, off, len).map(|_| Outcome::Done),
        Command::BlockStatus if !session.base_allocation || len == 0 => {
            return Outcome::Error(
                EINVAL,
                "block status needs base:allocation and a length".into(),
            );
        }
        Command::BlockStatus => store.block_status(vol, off, len).map(|runs| {
            let mut d: Vec<(u32, u32)> = runs
                .iter()
                .map(|r| {
                    let flags = if r.allocated {
                        0
                    } else {
                        STATE_HOLE | STATE_ZERO
                    };
                    // Runs lie inside a u32-long request.
                    (u32::try_from(r.len).unwrap_or(u32::MAX), flags)
                })
                .collect();
            if req.flags & CMD_FLAG_REQ_ONE != 0 {
                d.truncate(1);
            }
            Outcome::Status(d)
        }),
        Command::Disconnect | Command::Unknown(_) => {
            return Outcome::Error(EINVAL, format!("unsupported command {:?}", req.command));
        }
    };
    result.unwrap_or_else(|e| Outcome::Error(errno(&e, writing), e.to_string()))
}

/// Encodes the reply to `req`.
fn encode(session: &Session, req: &Request, outcome: Outcome) -> Vec<u8> {
    let structured =
        session.structured && matches!(req.command, Command::Read | Command::BlockStatus);
    let chunk = |kind: u16, payload: &[u8]| {
        let mut b = Vec::with_capacity(20 + payload.len());
        b.extend(STRUCTURED_REPLY_MAGIC.to_be_bytes());
        b.extend(REPLY_FLAG_DONE.to_be_bytes());
        b.extend(kind.to_be_bytes());
        b.extend(req.cookie.to_be_bytes());
        b.extend((payload.len() as u32).to_be_bytes());
        b.extend(payload);
        b
    };
    let simple = |error: u32, data: &[u8]| {
        let mut b = Vec::with_capacity(16 + data.len());
        b.extend(SIMPLE_REPLY_MAGIC.to_be_bytes());
        b.extend(error.to_be_bytes());
        b.extend(req.cookie.to_be_bytes());
        b.extend(data);
        b
    };
    match (outcome, structured) {
        (Outcome::Data(data), true) => {
            let mut p = Vec::with_capacity(8 + data.len());
            p.extend(req.offset.to_be_bytes());
            p.extend(&data);
            chunk(REPLY_OFFSET_DATA, &p)
        }
        (Outcome::Data(data), false) => simple(0, &data),
        (Outcome::Status(descs), _) => {
            let mut p = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
            for (len, flags) in descs {
                p.extend(len.to_be_bytes());
                p.extend(flags.to_be_bytes());
            }
            chunk(REPLY_BLOCK_STATUS, &p)
        }
        (Outcome::Done, true) => chunk(REPLY_NONE, &[]),
        (Outcome::Done, false) => simple(0, &[]),
        (Outcome::Error(code, msg), true) => {
            let msg = &msg.as_bytes()[..msg.len().min(4096)];
            let mut p = code.to_be_bytes().to_vec();
            p.extend((msg.len() as u16).to_be_bytes());
            p.extend(msg);
            chunk(REPLY_ERROR, &p)
        }
        (Outcome::Error(code, _), false) => simple(code, &[]),
    }
}

/// Serves requests until the client disconnects or sends something unparseable.
pub(crate) async fn transmit<R, W>(
    mut reader: R,
    writer: W,
    store: Arc<Store>,
    session: Session,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let writer = Arc::new(Mutex::new(writer));
    let session = Arc::new(session);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    let result = loop {
        let mut header = [0u8; REQUEST_LEN];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(e),
        }
        let Ok(req) = Request::parse(&header) else {
            break Ok(());
        };
        let mut payload = Vec::new();
        if req.command == Command::Write {
            if req.length > MAX_PAYLOAD {
                // The payload cannot be skipped safely: close, as the protocol allows.
                break Ok(());
            }
            payload.resize(req.length as usize, 0);
            if let Err(e) = reader.read_exact(&mut payload).await {
                break Err(e);
            }
        }
        if req.command == Command::Disconnect {
            break Ok(());
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break Ok(());
        };
        let (store, session, writer) = (store.clone(), session.clone(), writer.clone());
        tasks.spawn(async move {
            let s = session.clone();
            let outcome = tokio::task::spawn_blocking(move || execute(&store, &s, req, payload))
                .await
                .unwrap_or_else(|e| Outcome::Error(EIO, format!("request task failed: {e}")));
            let bytes = encode(&session, &req, outcome);
            let mut w = writer.lock().await;
            let sent = w.write_all(&bytes).await;
            let flushed = w.flush().await;
            drop(permit);
            sent.and(flushed)
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok(Err(e)) = done {
                tasks.abort_all();
                return Err(e);
            }
        }
    };
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    result
}
