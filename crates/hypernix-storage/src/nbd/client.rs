//! A small NBD client: fixed newstyle handshake, `NBD_OPT_GO`, simple replies, one request
//! at a time. Enough to read another server's export (QEMU's, ours) and to hand a
//! negotiated connection to the migration proxy, which pipelines its own requests.
//!
//! Written here rather than taken from a crate: the crates.io NBD clients are synchronous
//! or bind libnbd (C); the migration proxy needs an async client on tokio.

use std::io;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use super::proto::*;

/// Where an NBD server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP `host:port`.
    Tcp(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// What went wrong talking to an NBD server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or broke.
    #[error("NBD server {address}: {source}")]
    Io {
        /// The server.
        address: String,
        /// The cause.
        source: io::Error,
    },
    /// The server broke the protocol or refused.
    #[error("NBD server {address}: {message}")]
    Protocol {
        /// The server.
        address: String,
        /// What it did.
        message: String,
    },
    /// A request got an error reply.
    #[error("NBD server {address}: {command} at {offset} failed with errno {errno}")]
    Request {
        /// The server.
        address: String,
        /// The command.
        command: &'static str,
        /// Its offset.
        offset: u64,
        /// The server's errno.
        errno: u32,
    },
}

/// A connection's byte stream.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A connection to one export of an NBD server.
pub struct NbdClient {
    stream: BufReader<Box<dyn Stream>>,
    address: String,
    size: u64,
    flags: u16,
    cookie: u64,
}

/// Transmission flag: the server accepts FUA.
const SEND_FUA: u16 = 8;

impl NbdClient {
    /// Connects to `export` at `address`.
    pub async fn connect(address: &Address, export: &str) -> Result<NbdClient, ClientError> {
        let name = address.to_string();
        let io = |source| ClientError::Io {
            address: name.clone(),
            source,
        };
        let stream: Box<dyn Stream> = match address {
            Address::Unix(p) => Box::new(UnixStream::connect(p).await.map_err(io)?),
            Address::Tcp(a) => {
                let s = TcpStream::connect(a).await.map_err(io)?;
                s.set_nodelay(true).map_err(io)?;
                Box::new(s)
            }
        };
        let mut client = NbdClient {
            stream: BufReader::with_capacity(256 * 1024, stream),
            address: name,
            size: 0,
            flags: 0,
            cookie: 0,
        };
        client.handshake(export).await?;
        Ok(client)
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            address: self.address.clone(),
            source,
        }
    }

    fn protocol(&self, message: impl Into<String>) -> ClientError {
        ClientError::Protocol {
            address: self.address.clone(),
            message: message.into(),
        }
    }

    async fn handshake(&mut self, export: &str) -> Result<(), ClientError> {
        let mut hello = [0u8; 18];
        self.stream
            .read_exact(&mut hello)
            .await
            .map_err(|e| self.io(e))?;
        let magic = u64::from_be_bytes(hello[..8].try_into().expect("8 bytes"));
        let opt = u64::from_be_bytes(hello[8..16].try_into().expect("8 bytes"));
        let flags = u16::from_be_bytes([hello[16], hello[17]]);
        if magic != NBDMAGIC || opt != IHAVEOPT || flags & FLAG_FIXED_NEWSTYLE == 0 {
            return Err(self.protocol("not a fixed-newstyle NBD server"));
        }
        let ours = u32::from(FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES));
        let mut go = Vec::new();
        go.extend(ours.to_be_bytes());
        go.extend(IHAVEOPT.to_be_bytes());
        go.extend(OPT_GO.to_be_bytes());
        go.extend((4 + export.len() as u32 + 2).to_be_bytes());
        go.extend((export.len() as u32).to_be_bytes());
        go.extend(export.as_bytes());
        go.extend(0u16.to_be_bytes());
        self.stream.write_all(&go).await.map_err(|e| self.io(e))?;
        self.stream.flush().await.map_err(|e| self.io(e))?;
        loop {
            let mut head = [0u8; 20];
            self.stream
                .read_exact(&mut head)
                .await
                .map_err(|e| self.io(e))?;
            let magic = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
            let kind = u32::from_be_bytes(head[12..16].try_into().expect("4 bytes"));
            let len = u32::from_be_bytes(head[16..20].try_into().expect("4 bytes"));
            if magic != REPLY_MAGIC || len > MAX_OPTION_LEN {
                return Err(self.protocol("a malformed option reply"));
            }
            let mut data = vec![0u8; len as usize];
            self.stream
                .read_exact(&mut data)
                .await
                .map_err(|e| self.io(e))?;
            match kind {
                REP_ACK => break,
                REP_INFO if data.len() >= 12 && data[..2] == INFO_EXPORT.to_be_bytes() => {
                    self.size = u64::from_be_bytes(data[2..10].try_into().expect("8 bytes"));
                    self.flags = u16::from_be_bytes([data[10], data[11]]);
                }
                REP_INFO => {}
                k if k & 0x8000_0000 != 0 => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    return Err(
                        self.protocol(format!("export {export:?} refused (error {k:#x}) {text}"))
                    );
                }
                k => return Err(self.protocol(format!("unexpected option reply {k}"))),
            }
        }
        Ok(())
    }

    async fn request(
        &mut self,
        command: Command,
        offset: u64,
        length: u32,
    ) -> Result<(), ClientError> {
        self.cookie += 1;
        let head = Request {
            flags: 0,
            command,
            cookie: self.cookie,
            offset,
            length,
        }
        .encode();
        let s = self.stream.get_mut();
        let sent = async {
            s.write_all(&head).await?;
            s.flush().await
        };
        sent.await.map_err(|e| self.io(e))
    }

    async fn reply(&mut self, command: &'static str, offset: u64) -> Result<(), ClientError> {
        let mut r = [0u8; 16];
        self.stream
            .read_exact(&mut r)
            .await
            .map_err(|e| self.io(e))?;
        let magic = u32::from_be_bytes(r[..4].try_into().expect("4 bytes"));
        let errno = u32::from_be_bytes(r[4..8].try_into().expect("4 bytes"));
        let cookie = u64::from_be_bytes(r[8..16].try_into().expect("8 bytes"));
        if magic != SIMPLE_REPLY_MAGIC || cookie != self.cookie {
            return Err(self.protocol(format!("a malformed reply to {command}")));
        }
        if errno != 0 {
            return Err(ClientError::Request {
                address: self.address.clone(),
                command,
                offset,
                errno,
            });
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub async fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ClientError> {
        let len = u32::try_from(buf.len()).map_err(|_| self.protocol("read too long"))?;
        self.request(Command::Read, offset, len).await?;
        self.reply("read", offset).await?;
        self.stream.read_exact(buf).await.map_err(|e| self.io(e))?;
        Ok(())
    }

    /// The connection itself, for a caller that pipelines requests (the handshake is done),
    /// and whether the server takes FUA.
    pub(crate) fn into_stream(self) -> Result<(Box<dyn Stream>, bool), ClientError> {
        if !self.stream.buffer().is_empty() {
            return Err(self.protocol("data after the handshake"));
        }
        let fua = self.flags & SEND_FUA != 0;
        Ok((self.stream.into_inner(), fua))
    }

    /// Says goodbye; the server closes the connection.
    pub async fn disconnect(mut self) -> Result<(), ClientError> {
        self.request(Command::Disconnect, 0, 0).await
    }
}
