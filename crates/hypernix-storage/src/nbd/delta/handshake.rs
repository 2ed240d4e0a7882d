//! The proxy's side of the handshake: fixed newstyle, up to GO or EXPORT_NAME, which
//! connects to the far end to learn the export's size.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{DeltaProxy, FLAGS};
use crate::nbd::client::NbdClient;
use crate::nbd::proto::*;

impl DeltaProxy {
    /// Runs the handshake; `None` when the client aborted or misbehaved.
    pub(super) async fn handshake<R, W>(
        &self,
        r: &mut R,
        w: &mut W,
    ) -> io::Result<Option<(String, NbdClient)>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut hello = Vec::with_capacity(18);
        hello.extend(NBDMAGIC.to_be_bytes());
        hello.extend(IHAVEOPT.to_be_bytes());
        hello.extend((FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        w.write_all(&hello).await?;
        w.flush().await?;
        let client_flags = r.read_u32().await?;
        if client_flags & u32::from(FLAG_FIXED_NEWSTYLE) == 0 {
            return Ok(None);
        }
        loop {
            let magic = r.read_u64().await?;
            let opt = r.read_u32().await?;
            let len = r.read_u32().await?;
            if magic != IHAVEOPT || len > MAX_OPTION_LEN {
                return Ok(None);
            }
            let mut data = vec![0u8; len as usize];
            r.read_exact(&mut data).await?;
            let name = match opt {
                OPT_GO | OPT_INFO => match parse_info_request(&data) {
                    Some((name, _)) => name,
                    None => {
                        option_reply(w, opt, REP_ERR_INVALID, b"malformed request").await?;
                        continue;
                    }
                },
                OPT_EXPORT_NAME => String::from_utf8_lossy(&data).into_owned(),
                OPT_ABORT => {
                    option_reply(w, opt, REP_ACK, &[]).await?;
                    return Ok(None);
                }
                _ => {
                    option_reply(w, opt, REP_ERR_UNSUP, &[]).await?;
                    continue;
                }
            };
            let far = match self.dial(&name).await {
                Ok(far) => far,
                Err(e) if opt == OPT_EXPORT_NAME => {
                    tracing::debug!("migration proxy: {e}");
                    return Ok(None);
                }
                Err(e) => {
                    option_reply(w, opt, REP_ERR_UNKNOWN, e.to_string().as_bytes()).await?;
                    continue;
                }
            };
            let mut info = Vec::with_capacity(12);
            if opt == OPT_EXPORT_NAME {
                info.extend(far.size().to_be_bytes());
                info.extend(FLAGS.to_be_bytes());
                if client_flags & u32::from(FLAG_NO_ZEROES) == 0 {
                    info.extend([0u8; 124]);
                }
                w.write_all(&info).await?;
                w.flush().await?;
                return Ok(Some((name, far)));
            }
            info.extend(INFO_EXPORT.to_be_bytes());
            info.extend(far.size().to_be_bytes());
            info.extend(FLAGS.to_be_bytes());
            option_reply(w, opt, REP_INFO, &info).await?;
            option_reply(w, opt, REP_ACK, &[]).await?;
            if opt == OPT_GO {
                return Ok(Some((name, far)));
            }
        }
    }
}

async fn option_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
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
    w.write_all(&b).await?;
    w.flush().await
}
