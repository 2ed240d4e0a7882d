//! Option haggling (fixed newstyle) up to NBD_OPT_GO or NBD_OPT_EXPORT_NAME.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::proto::*;
use crate::store::Store;

/// What the client chose during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The volume served.
    pub volume: String,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// The `base:allocation` meta context was set.
    pub base_allocation: bool,
}

/// Resolves an export name: the empty name means the only volume, if there is one.
fn resolve(store: &Store, name: &str) -> Option<(String, u64)> {
    if name.is_empty() {
        let vols = store.volumes();
        return match vols.as_slice() {
            [only] => Some((only.name.clone(), only.size)),
            _ => None,
        };
    }
    store
        .volume_size(name)
        .ok()
        .map(|size| (name.to_owned(), size))
}

/// Answers option `opt` with a reply of `kind` carrying `data` (not flushed).
pub(crate) async fn reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    opt: u32,
    kind: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend(REPLY_MAGIC.to_be_bytes());
    b.extend(opt.to_be_bytes());
    b.extend(kind.to_be_bytes());
    b.extend((data.len() as u32).to_be_bytes());
    b.extend(data);
    s.write_all(&b).await
}

/// Greets a client (fixed newstyle, no zeroes) and reads its flags: `None` when it does not
/// speak fixed newstyle or sets flags unknown here, else whether it declined the zeroes.
pub(crate) async fn greet<S>(s: &mut S) -> io::Result<Option<bool>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = Vec::with_capacity(18);
    hello.extend(NBDMAGIC.to_be_bytes());
    hello.extend(IHAVEOPT.to_be_bytes());
    hello.extend((FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello).await?;
    s.flush().await?;
    let client = s.read_u32().await?;
    if client & !u32::from(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) != 0
        || client & u32::from(FLAG_FIXED_NEWSTYLE) == 0
    {
        return Ok(None);
    }
    Ok(Some(client & u32::from(FLAG_NO_ZEROES) != 0))
}

/// Flushes what was answered, then reads the client's next option: its number and data;
/// `None` on a bad magic or an option longer than [`MAX_OPTION_LEN`].
pub(crate) async fn read_option<S>(s: &mut S) -> io::Result<Option<(u32, Vec<u8>)>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    s.flush().await?;
    if s.read_u64().await? != IHAVEOPT {
        return Ok(None);
    }
    let opt = s.read_u32().await?;
    let len = s.read_u32().await?;
    if len > MAX_OPTION_LEN {
        return Ok(None);
    }
    let mut data = vec![0u8; len as usize];
    s.read_exact(&mut data).await?;
    Ok(Some((opt, data)))
}

/// Ends the handshake after NBD_OPT_EXPORT_NAME: the export's size and transmission
/// flags, and 124 zeros unless the client declined them.
pub(crate) async fn export_name_reply<S>(
    s: &mut S,
    size: u64,
    flags: u16,
    no_zeroes: bool,
) -> io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    s.write_all(&size.to_be_bytes()).await?;
    s.write_all(&flags.to_be_bytes()).await?;
    if !no_zeroes {
        s.write_all(&[0u8; 124]).await?;
    }
    s.flush().await
}

/// Runs the handshake; `None` means the client aborted or misbehaved and the connection
/// should be closed.
pub(crate) async fn negotiate<S>(s: &mut S, store: &Store) -> io::Result<Option<Session>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(no_zeroes) = greet(s).await? else {
        return Ok(None);
    };
    let mut structured = false;
    let mut base_allocation = false;
    loop {
        let Some((opt, data)) = read_option(s).await? else {
            return Ok(None);
        };
        let len = data.len();
        match opt {
            OPT_EXPORT_NAME => {
                let Some((volume, size)) = resolve(store, &String::from_utf8_lossy(&data)) else {
                    return Ok(None);
                };
                export_name_reply(s, size, TRANSMISSION_FLAGS, no_zeroes).await?;
                return Ok(Some(Session {
                    volume,
                    structured,
                    base_allocation,
                }));
            }
            OPT_ABORT => {
                // The client may already be gone; the reply is a courtesy.
                let _ = reply(s, opt, REP_ACK, &[]).await;
                let _ = s.flush().await;
                return Ok(None);
            }
            OPT_LIST if len != 0 => reply(s, opt, REP_ERR_INVALID, b"LIST takes no data").await?,
            OPT_LIST => {
                for v in store.volumes() {
                    let mut d = (v.name.len() as u32).to_be_bytes().to_vec();
                    d.extend(v.name.as_bytes());
                    reply(s, opt, REP_SERVER, &d).await?;
                }
                reply(s, opt, REP_ACK, &[]).await?;
            }
            OPT_INFO | OPT_GO => {
                let Some((name, _)) = parse_info_request(&data) else {
                    reply(s, opt, REP_ERR_INVALID, b"malformed INFO/GO request").await?;
                    continue;
                };
                let Some((volume, size)) = resolve(store, &name) else {
                    let msg = format!("no volume named {name:?}; list exports with NBD_OPT_LIST");
                    reply(s, opt, REP_ERR_UNKNOWN, msg.as_bytes()).await?;
                    continue;
                };
                let mut export = INFO_EXPORT.to_be_bytes().to_vec();
                export.extend(size.to_be_bytes());
                export.extend(TRANSMISSION_FLAGS.to_be_bytes());
                reply(s, opt, REP_INFO, &export).await?;
                let mut block = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                block.extend(1u32.to_be_bytes());
                block.extend(4096u32.to_be_bytes());
                block.extend(MAX_PAYLOAD.to_be_bytes());
                reply(s, opt, REP_INFO, &block).await?;
                reply(s, opt, REP_ACK, &[]).await?;
                if opt == OPT_GO {
                    s.flush().await?;
                    return Ok(Some(Session {
                        volume,
                        structured,
                        base_allocation,
                    }));
                }
            }
            OPT_STRUCTURED_REPLY if len != 0 => {
                reply(s, opt, REP_ERR_INVALID, b"STRUCTURED_REPLY takes no data").await?
            }
            OPT_STRUCTURED_REPLY => {
                structured = true;
                reply(s, opt, REP_ACK, &[]).await?;
            }
            OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
                let set = opt == OPT_SET_META_CONTEXT;
                let parsed = parse_meta_request(&data);
                let Some((name, queries)) = parsed.filter(|_| structured || !set) else {
                    reply(s, opt, REP_ERR_INVALID, b"bad meta context request").await?;
                    continue;
                };
                if resolve(store, &name).is_none() {
                    reply(s, opt, REP_ERR_UNKNOWN, b"no such export").await?;
                    continue;
                }
                let matched = queries.iter().any(|q| {
                    q == BASE_ALLOCATION || (!set && (q == "base:" || q == "base:allocation"))
                }) || (!set && queries.is_empty());
                if matched {
                    let mut d = BASE_ALLOCATION_ID.to_be_bytes().to_vec();
                    d.extend(BASE_ALLOCATION.as_bytes());
                    reply(s, opt, REP_META_CONTEXT, &d).await?;
                }
                if set {
                    base_allocation = matched;
                }
                reply(s, opt, REP_ACK, &[]).await?;
            }
            _ => reply(s, opt, REP_ERR_UNSUP, b"unsupported option").await?,
        }
    }
}
