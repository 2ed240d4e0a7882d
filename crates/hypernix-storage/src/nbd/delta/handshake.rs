//! The proxy's side of the handshake, on the server's greeting and option framing: up to
//! GO or EXPORT_NAME, which connects to the far end to learn the export's size.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{DeltaProxy, FLAGS};
use crate::nbd::client::NbdClient;
use crate::nbd::handshake::{export_name_reply, greet, read_option, reply};
use crate::nbd::proto::*;

impl DeltaProxy {
    /// Runs the handshake; `None` when the client aborted or misbehaved.
    pub(super) async fn handshake<S>(&self, s: &mut S) -> io::Result<Option<(String, NbdClient)>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(no_zeroes) = greet(s).await? else {
            return Ok(None);
        };
        loop {
            let Some((opt, data)) = read_option(s).await? else {
                return Ok(None);
            };
            let name = match opt {
                OPT_GO | OPT_INFO => match parse_info_request(&data) {
                    Some((name, _)) => name,
                    None => {
                        reply(s, opt, REP_ERR_INVALID, b"malformed request").await?;
                        continue;
                    }
                },
                OPT_EXPORT_NAME => String::from_utf8_lossy(&data).into_owned(),
                OPT_ABORT => {
                    reply(s, opt, REP_ACK, &[]).await?;
                    s.flush().await?;
                    return Ok(None);
                }
                _ => {
                    reply(s, opt, REP_ERR_UNSUP, &[]).await?;
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
                    reply(s, opt, REP_ERR_UNKNOWN, e.to_string().as_bytes()).await?;
                    continue;
                }
            };
            if opt == OPT_EXPORT_NAME {
                export_name_reply(s, far.size(), FLAGS, no_zeroes).await?;
                return Ok(Some((name, far)));
            }
            let mut info = INFO_EXPORT.to_be_bytes().to_vec();
            info.extend(far.size().to_be_bytes());
            info.extend(FLAGS.to_be_bytes());
            reply(s, opt, REP_INFO, &info).await?;
            reply(s, opt, REP_ACK, &[]).await?;
            if opt == OPT_GO {
                s.flush().await?;
                return Ok(Some((name, far)));
            }
        }
    }
}
