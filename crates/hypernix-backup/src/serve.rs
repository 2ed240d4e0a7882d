//! A read-only NBD server of one image snapshot, for instant restore: QEMU (or any NBD
//! client) reads the snapshot straight from the repository, and a qcow2 overlay whose
//! backing file is the export takes the writes.
//!
//! Each connection is served by its own thread, in two steps:
//! 1. handshake (fixed newstyle): `GO`, `INFO` and the old `EXPORT_NAME` accept the
//!    export's name (or the empty default name) and answer with its size and the flags
//!    read-only and multi-connection; `LIST` names the export; `ABORT` ends; any other
//!    option (structured replies among them) is answered "unsupported", so replies stay
//!    simple;
//! 2. transmission: `READ` is answered from the snapshot, `FLUSH` succeeds, writes, trims
//!    and zeroing fail with `EPERM`, anything else with `EINVAL`; `DISC` ends.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use crate::reader::ImageReader;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
/// Transmission flags: has flags, read-only, can serve many connections.
const TX_FLAGS: u16 = 1 | 2 | (1 << 8);

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const REP_ERR_INVALID: u32 = (1 << 31) | 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// The largest option or request payload accepted.
const MAX_PAYLOAD: u32 = 32 << 20;

/// Serves `reader` as export `export` to every client of `listener`, until accepting
/// fails. A connection that breaks the protocol is closed; the others go on.
pub fn serve(listener: &UnixListener, reader: &ImageReader, export: &str) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept()?;
        let (reader, export) = (reader.clone(), export.to_string());
        std::thread::spawn(move || {
            // A client that goes away or misbehaves only ends its own connection.
            let _ = Connection::new(stream, reader, export).and_then(Connection::run);
        });
    }
}

struct Connection {
    input: BufReader<UnixStream>,
    output: BufWriter<UnixStream>,
    reader: ImageReader,
    export: String,
}

impl Connection {
    fn new(stream: UnixStream, reader: ImageReader, export: String) -> io::Result<Connection> {
        Ok(Connection {
            input: BufReader::new(stream.try_clone()?),
            output: BufWriter::new(stream),
            reader,
            export,
        })
    }

    fn run(mut self) -> io::Result<()> {
        if self.handshake()? {
            self.transmit()?;
        }
        Ok(())
    }

    /// Step 1; `true` when the client goes on to transmission.
    fn handshake(&mut self) -> io::Result<bool> {
        self.output.write_all(&NBDMAGIC.to_be_bytes())?;
        self.output.write_all(&IHAVEOPT.to_be_bytes())?;
        self.output
            .write_all(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes())?;
        self.output.flush()?;
        let client_flags = self.u32()?;
        let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
        loop {
            if self.u64()? != IHAVEOPT {
                return Err(invalid("option without IHAVEOPT"));
            }
            let option = self.u32()?;
            let len = self.u32()?;
            if len > MAX_PAYLOAD {
                return Err(invalid("option too long"));
            }
            let mut data = vec![0u8; len as usize];
            self.input.read_exact(&mut data)?;
            match option {
                OPT_EXPORT_NAME => {
                    if !self.known(&data) {
                        return Ok(false);
                    }
                    self.output.write_all(&self.reader.size().to_be_bytes())?;
                    self.output.write_all(&TX_FLAGS.to_be_bytes())?;
                    if !no_zeroes {
                        self.output.write_all(&[0u8; 124])?;
                    }
                    self.output.flush()?;
                    return Ok(true);
                }
                OPT_ABORT => {
                    self.reply(option, REP_ACK, &[])?;
                    return Ok(false);
                }
                OPT_LIST => {
                    let mut body = (self.export.len() as u32).to_be_bytes().to_vec();
                    body.extend_from_slice(self.export.as_bytes());
                    self.reply(option, REP_SERVER, &body)?;
                    self.reply(option, REP_ACK, &[])?;
                }
                OPT_INFO | OPT_GO => {
                    let name = data
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
                        .and_then(|n| data.get(4..4 + n));
                    match name {
                        None => self.reply(option, REP_ERR_INVALID, &[])?,
                        Some(name) if !self.known(name) => {
                            self.reply(option, REP_ERR_UNKNOWN, b"no such export")?
                        }
                        Some(_) => {
                            let mut info = 0u16.to_be_bytes().to_vec();
                            info.extend_from_slice(&self.reader.size().to_be_bytes());
                            info.extend_from_slice(&TX_FLAGS.to_be_bytes());
                            self.reply(option, REP_INFO, &info)?;
                            self.reply(option, REP_ACK, &[])?;
                            if option == OPT_GO {
                                return Ok(true);
                            }
                        }
                    }
                }
                _ => self.reply(option, REP_ERR_UNSUP, &[])?,
            }
        }
    }

    /// Whether `name` names the export (the empty name is the default export).
    fn known(&self, name: &[u8]) -> bool {
        name.is_empty() || name == self.export.as_bytes()
    }

    fn reply(&mut self, option: u32, kind: u32, body: &[u8]) -> io::Result<()> {
        self.output.write_all(&REPLY_MAGIC.to_be_bytes())?;
        self.output.write_all(&option.to_be_bytes())?;
        self.output.write_all(&kind.to_be_bytes())?;
        self.output.write_all(&(body.len() as u32).to_be_bytes())?;
        self.output.write_all(body)?;
        self.output.flush()
    }

    /// Step 2.
    fn transmit(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        loop {
            if self.u32()? != REQUEST_MAGIC {
                return Err(invalid("request without its magic"));
            }
            let _flags = self.u16()?;
            let command = self.u16()?;
            let cookie = self.u64()?;
            let offset = self.u64()?;
            let len = self.u32()?;
            if command == CMD_WRITE {
                if len > MAX_PAYLOAD {
                    return Err(invalid("write too long"));
                }
                io::copy(&mut (&mut self.input).take(u64::from(len)), &mut io::sink())?;
            }
            let error = match command {
                CMD_DISC => return Ok(()),
                CMD_READ if len <= MAX_PAYLOAD => {
                    buf.resize(len as usize, 0);
                    match self.reader.read_at(offset, &mut buf) {
                        Ok(()) => 0,
                        Err(crate::Error::Config(_)) => EINVAL,
                        Err(_) => EIO,
                    }
                }
                CMD_FLUSH => 0,
                CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES => EPERM,
                _ => EINVAL,
            };
            self.output.write_all(&SIMPLE_REPLY_MAGIC.to_be_bytes())?;
            self.output.write_all(&error.to_be_bytes())?;
            self.output.write_all(&cookie.to_be_bytes())?;
            if command == CMD_READ && error == 0 {
                self.output.write_all(&buf)?;
            }
            self.output.flush()?;
        }
    }

    fn u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.input.read_exact(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.input.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.input.read_exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}
