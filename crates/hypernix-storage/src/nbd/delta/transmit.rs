//! The proxy's transmission phase, pipelined: each local request becomes zero or more far
//! requests sent at once, and is answered when the far end has answered all of them, so as
//! many requests are in flight as the local client (QEMU's mirror) keeps.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;

use super::{DeltaProxy, Export, Runs};
use crate::nbd::client::{ClientError, NbdClient, Stream};
use crate::nbd::proto::*;

/// A reply to the local client.
struct Reply {
    cookie: u64,
    errno: u32,
    /// Read data (sent only without an error).
    data: Vec<u8>,
}

/// A local request waiting for its far requests.
struct Waiting {
    cookie: u64,
    left: usize,
    errno: u32,
    /// For a read: its length, and the data once it came.
    read: Option<(u32, Vec<u8>)>,
}

/// Far requests in flight: far cookie → local request, and the local requests by id.
#[derive(Default)]
struct InFlight {
    ops: HashMap<u64, u64>,
    waiting: HashMap<u64, Waiting>,
    /// The far end is gone: nothing more is sent.
    closed: bool,
}

/// How long the far end has to answer what is in flight after the local client left.
const DRAIN: Duration = Duration::from_secs(30);

/// One far request: command, flags, offset, length, and the payload's range in the data.
type FarOp = (Command, u16, u64, u32, Option<std::ops::Range<usize>>);

impl DeltaProxy {
    /// Serves requests of export `name` over `r`/`w`, forwarding to `far`, until DISC, the
    /// end of the local stream, or the far end's.
    pub(super) async fn transmit<R, W>(
        &self,
        name: &str,
        far: NbdClient,
        r: &mut R,
        w: &mut W,
    ) -> Result<(), ClientError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let export = &self.exports[name];
        let size = far.size();
        let (stream, fua_ok) = far.into_stream()?;
        let (far_r, mut far_w) = tokio::io::split(stream);
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let (replies, mut to_send) = mpsc::unbounded_channel::<Reply>();
        let mut reader = tokio::spawn(far_replies(far_r, in_flight.clone(), replies.clone()));
        let requests = async {
            let result = self
                .requests(export, size, fua_ok, r, &mut far_w, &in_flight, &replies)
                .await;
            drop(replies);
            // The far end answers what is in flight, then closes: the reader ends.
            let _ = far_w
                .write_all(&header(Command::Disconnect, 0, 0, 0, 0))
                .await;
            let _ = far_w.flush().await;
            if tokio::time::timeout(DRAIN, &mut reader).await.is_err() {
                reader.abort();
            }
            result
        };
        let answers = async {
            while let Some(reply) = to_send.recv().await {
                let mut b = Vec::with_capacity(16 + reply.data.len());
                b.extend(SIMPLE_REPLY_MAGIC.to_be_bytes());
                b.extend(reply.errno.to_be_bytes());
                b.extend(reply.cookie.to_be_bytes());
                if reply.errno == 0 {
                    b.extend(&reply.data);
                }
                w.write_all(&b).await.map_err(local)?;
                w.flush().await.map_err(local)?;
            }
            Ok::<(), ClientError>(())
        };
        let (result, answered) = tokio::join!(requests, answers);
        result.and(answered)
    }

    /// Reads local requests and sends their far requests, until DISC or an error.
    #[allow(clippy::too_many_arguments)]
    async fn requests<R, F>(
        &self,
        export: &Mutex<Export>,
        size: u64,
        fua_ok: bool,
        r: &mut R,
        far_w: &mut F,
        in_flight: &Mutex<InFlight>,
        replies: &mpsc::UnboundedSender<Reply>,
    ) -> Result<(), ClientError>
    where
        R: AsyncRead + Unpin,
        F: AsyncWrite + Unpin,
    {
        let mut next_cookie = 0u64;
        loop {
            let mut head = [0u8; REQUEST_LEN];
            if r.read_exact(&mut head).await.is_err() {
                return Ok(());
            }
            let Ok(req) = Request::parse(&head) else {
                return Ok(());
            };
            let fua = if req.flags & CMD_FLAG_FUA != 0 && fua_ok {
                CMD_FLAG_FUA
            } else {
                0
            };
            let (off, len) = (req.offset, u64::from(req.length));
            let in_range = off.checked_add(len).is_some_and(|end| end <= size);
            let mut data = Vec::new();
            let ops: Result<Vec<FarOp>, u32> = match req.command {
                Command::Write if req.length > MAX_PAYLOAD => return Ok(()),
                Command::Write => {
                    data = vec![0u8; req.length as usize];
                    r.read_exact(&mut data).await.map_err(local)?;
                    if in_range {
                        let runs = self.plan(export, size, off, len, Some(&data));
                        Ok(far_ops(Command::Write, fua, &runs, true))
                    } else {
                        Err(ENOSPC)
                    }
                }
                Command::WriteZeroes if in_range => {
                    let runs = self.plan(export, size, off, len, None);
                    Ok(far_ops(Command::WriteZeroes, fua, &runs, false))
                }
                Command::Trim if in_range => {
                    super::forget(export, off, len);
                    Ok(vec![(Command::Trim, 0, off, req.length, None)])
                }
                Command::Read if in_range && req.length <= MAX_PAYLOAD => {
                    Ok(vec![(Command::Read, 0, off, req.length, None)])
                }
                Command::Flush => Ok(vec![(Command::Flush, 0, 0, 0, None)]),
                Command::Cache if in_range => Ok(Vec::new()),
                Command::Disconnect => return Ok(()),
                _ => Err(EINVAL),
            };
            let ops = match ops {
                Ok(ops) if !ops.is_empty() => ops,
                done => {
                    let errno = done.err().unwrap_or(0);
                    let reply = Reply {
                        cookie: req.cookie,
                        errno,
                        data: Vec::new(),
                    };
                    let _ = replies.send(reply);
                    continue;
                }
            };
            let id = next_cookie;
            let mut wire = Vec::new();
            {
                let mut f = in_flight.lock().expect("in-flight lock");
                if f.closed {
                    let _ = replies.send(Reply {
                        cookie: req.cookie,
                        errno: EIO,
                        data: Vec::new(),
                    });
                    return Ok(());
                }
                let read = (req.command == Command::Read).then(|| (req.length, Vec::new()));
                let waiting = Waiting {
                    cookie: req.cookie,
                    left: ops.len(),
                    errno: 0,
                    read,
                };
                f.waiting.insert(id, waiting);
                for (cmd, flags, at, n, payload) in ops {
                    next_cookie += 1;
                    f.ops.insert(next_cookie, id);
                    wire.extend(header(cmd, flags, next_cookie, at, n));
                    if let Some(range) = payload {
                        wire.extend(&data[range]);
                    }
                }
            }
            next_cookie += 1;
            far_w.write_all(&wire).await.map_err(local)?;
            far_w.flush().await.map_err(local)?;
        }
    }
}

/// The far requests for `runs` of a write (with payload) or write-zeroes.
fn far_ops(cmd: Command, flags: u16, runs: &Runs, payload: bool) -> Vec<FarOp> {
    runs.iter()
        .map(|(at, range)| {
            let n = range.len() as u32;
            (cmd, flags, *at, n, payload.then(|| range.clone()))
        })
        .collect()
}

fn header(
    command: Command,
    flags: u16,
    cookie: u64,
    offset: u64,
    length: u32,
) -> [u8; REQUEST_LEN] {
    Request {
        flags,
        command,
        cookie,
        offset,
        length,
    }
    .encode()
}

/// Reads the far end's replies and answers each local request whose far requests are all
/// answered; when the far end breaks or closes, fails what is still waiting with EIO.
async fn far_replies(
    mut far_r: ReadHalf<Box<dyn Stream>>,
    in_flight: Arc<Mutex<InFlight>>,
    replies: mpsc::UnboundedSender<Reply>,
) {
    let broke = loop {
        let mut r = [0u8; 16];
        if let Err(e) = far_r.read_exact(&mut r).await {
            break e;
        }
        let magic = u32::from_be_bytes(r[..4].try_into().expect("4 bytes"));
        let errno = u32::from_be_bytes(r[4..8].try_into().expect("4 bytes"));
        let cookie = u64::from_be_bytes(r[8..16].try_into().expect("8 bytes"));
        let id = in_flight
            .lock()
            .expect("in-flight lock")
            .ops
            .remove(&cookie);
        let Some(id) = id.filter(|_| magic == SIMPLE_REPLY_MAGIC) else {
            break io::Error::other(format!("a malformed far reply (cookie {cookie})"));
        };
        let read_len = in_flight.lock().expect("in-flight lock").waiting[&id]
            .read
            .as_ref()
            .map(|(n, _)| *n);
        let mut data = Vec::new();
        if let Some(n) = read_len.filter(|_| errno == 0) {
            data = vec![0u8; n as usize];
            if let Err(e) = far_r.read_exact(&mut data).await {
                break e;
            }
        }
        let mut f = in_flight.lock().expect("in-flight lock");
        let w = f.waiting.get_mut(&id).expect("registered with its ops");
        w.left -= 1;
        if w.errno == 0 {
            w.errno = errno;
        }
        if let Some((_, d)) = &mut w.read {
            *d = data;
        }
        if w.left == 0 {
            let w = f.waiting.remove(&id).expect("present");
            let data = w.read.map(|(_, d)| d).unwrap_or_default();
            let _ = replies.send(Reply {
                cookie: w.cookie,
                errno: w.errno,
                data,
            });
        }
    };
    if broke.kind() != io::ErrorKind::UnexpectedEof {
        tracing::warn!("migration proxy: the far end broke: {broke}");
    }
    // The mirror sees EIO and fails; the migration with it.
    let mut f = in_flight.lock().expect("in-flight lock");
    f.closed = true;
    for (_, w) in f.waiting.drain() {
        let _ = replies.send(Reply {
            cookie: w.cookie,
            errno: EIO,
            data: Vec::new(),
        });
    }
}

/// An error of the local client's connection.
pub(super) fn local(source: io::Error) -> ClientError {
    ClientError::Io {
        address: "migration proxy client".into(),
        source,
    }
}
