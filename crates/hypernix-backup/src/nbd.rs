//! A small NBD client over a unix socket: enough to read a point-in-time disk export and
//! ask which of its blocks are allocated or dirty (NBD `BLOCK_STATUS`).
//!
//! QEMU's own NBD server exports a running disk, with its dirty bitmaps as the metadata
//! contexts `qemu:dirty-bitmap:NAME`. The session goes in four steps:
//! 1. fixed-newstyle handshake: `NBDMAGIC`, `IHAVEOPT`, flags both ways (no zero padding);
//! 2. `NBD_OPT_STRUCTURED_REPLY`, then `NBD_OPT_SET_META_CONTEXT` with the one context
//!    asked for (`base:allocation` or a dirty bitmap), whose id the server returns;
//! 3. `NBD_OPT_GO` with the export name; the server answers with the size;
//! 4. transmission: `READ` and `BLOCK_STATUS` requests, answered by structured reply
//!    chunks (data, holes, extents, errors) until the chunk flagged `DONE`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{Error, Result};
use crate::image::BlockSource;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;

const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const OPT_SET_META_CONTEXT: u32 = 10;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_META_CONTEXT: u32 = 4;
const INFO_EXPORT: u16 = 0;

const CMD_READ: u16 = 0;
const CMD_DISC: u16 = 2;
const CMD_BLOCK_STATUS: u16 = 7;

const REPLY_FLAG_DONE: u16 = 1;
const REPLY_NONE: u16 = 0;
const REPLY_OFFSET_DATA: u16 = 1;
const REPLY_OFFSET_HOLE: u16 = 2;
const REPLY_BLOCK_STATUS: u16 = 5;
const REPLY_ERROR_BIT: u16 = 1 << 15;

/// The largest read or status request sent at once.
const MAX_REQUEST: u64 = 32 << 20;
/// The largest reply chunk accepted (a read chunk plus its header).
const MAX_CHUNK: u32 = (MAX_REQUEST as u32) + 64;

/// The metadata context of block allocation: bit 0 a hole, bit 1 reads as zeros.
pub const BASE_ALLOCATION: &str = "base:allocation";

/// The metadata context of a QEMU dirty bitmap: bit 0 dirty.
pub fn dirty_bitmap_context(bitmap: &str) -> String {
    format!("qemu:dirty-bitmap:{bitmap}")
}

/// A connected NBD client of one export.
pub struct NbdClient {
    stream: UnixStream,
    name: String,
    size: u64,
    context: Option<u32>,
    cookie: u64,
}

impl std::fmt::Debug for NbdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdClient")
            .field("export", &self.name)
            .field("size", &self.size)
            .finish()
    }
}

impl NbdClient {
    /// Connects to export `export` at `socket`, asking for metadata context `context`.
    pub fn connect(socket: &Path, export: &str, context: Option<&str>) -> Result<NbdClient> {
        let name = format!("{}:{export}", socket.display());
        let stream = UnixStream::connect(socket).map_err(|e| Error::Nbd {
            export: name.clone(),
            what: format!("cannot connect: {e}; is the NBD server running?"),
        })?;
        let mut c = NbdClient {
            stream,
            name,
            size: 0,
            context: None,
            cookie: 0,
        };
        c.handshake(export, context)?;
        Ok(c)
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fail(&self, what: impl Into<String>) -> Error {
        Error::Nbd {
            export: self.name.clone(),
            what: what.into(),
        }
    }

    fn io(&self, e: std::io::Error) -> Error {
        self.fail(format!("connection failed: {e}"))
    }

    fn handshake(&mut self, export: &str, context: Option<&str>) -> Result<()> {
        let mut head = [0u8; 18];
        self.stream.read_exact(&mut head).map_err(|e| self.io(e))?;
        let flags = u16::from_be_bytes([head[16], head[17]]);
        if be64(&head[0..8]) != NBDMAGIC
            || be64(&head[8..16]) != IHAVEOPT
            || flags & FLAG_FIXED_NEWSTYLE == 0
        {
            return Err(self.fail("not a fixed-newstyle NBD server"));
        }
        let client_flags = u32::from(FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES));
        self.send(&client_flags.to_be_bytes())?;
        if let Some(context) = context {
            self.option(OPT_STRUCTURED_REPLY, &[])?;
            self.expect_ack(OPT_STRUCTURED_REPLY, |_, _, _| Ok(()))?;
            let mut data = Vec::new();
            put_str32(&mut data, export);
            data.extend_from_slice(&1u32.to_be_bytes());
            put_str32(&mut data, context);
            self.option(OPT_SET_META_CONTEXT, &data)?;
            let mut id = None;
            self.expect_ack(OPT_SET_META_CONTEXT, |_, kind, body| {
                if kind == REP_META_CONTEXT && body.len() >= 4 {
                    id = Some(u32::from_be_bytes([body[0], body[1], body[2], body[3]]));
                }
                Ok(())
            })?;
            self.context = Some(id.ok_or_else(|| {
                self.fail(format!(
                    "the server does not offer metadata context `{context}`"
                ))
            })?);
        }
        let mut data = Vec::new();
        put_str32(&mut data, export);
        data.extend_from_slice(&0u16.to_be_bytes());
        self.option(OPT_GO, &data)?;
        let mut size = None;
        self.expect_ack(OPT_GO, |_, kind, body| {
            if kind == REP_INFO && body.len() >= 12 && be16(&body[0..2]) == INFO_EXPORT {
                size = Some(be64(&body[2..10]));
            }
            Ok(())
        })?;
        self.size = size.ok_or_else(|| self.fail("the server sent no export size"))?;
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).map_err(|e| self.io(e))
    }

    fn option(&mut self, option: u32, data: &[u8]) -> Result<()> {
        let mut msg = Vec::with_capacity(16 + data.len());
        msg.extend_from_slice(&IHAVEOPT.to_be_bytes());
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        self.send(&msg)
    }

    /// Reads option replies until `ACK`, passing the others to `each`.
    fn expect_ack(
        &mut self,
        option: u32,
        mut each: impl FnMut(u32, u32, &[u8]) -> Result<()>,
    ) -> Result<()> {
        loop {
            let mut head = [0u8; 20];
            self.stream.read_exact(&mut head).map_err(|e| self.io(e))?;
            let (magic, opt, kind, len) = (
                be64(&head[0..8]),
                be32(&head[8..12]),
                be32(&head[12..16]),
                be32(&head[16..20]),
            );
            if magic != REPLY_MAGIC || opt != option || len > 1 << 20 {
                return Err(self.fail(format!("bad reply to option {option}")));
            }
            let mut body = vec![0u8; len as usize];
            self.stream.read_exact(&mut body).map_err(|e| self.io(e))?;
            if kind & (1 << 31) != 0 {
                return Err(self.fail(format!(
                    "option {option} refused (error {kind:#x}): {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            if kind == REP_ACK {
                return Ok(());
            }
            each(opt, kind, &body)?;
        }
    }

    fn request(&mut self, kind: u16, offset: u64, len: u32) -> Result<u64> {
        self.cookie += 1;
        let mut msg = Vec::with_capacity(28);
        msg.extend_from_slice(&REQUEST_MAGIC.to_be_bytes());
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&kind.to_be_bytes());
        msg.extend_from_slice(&self.cookie.to_be_bytes());
        msg.extend_from_slice(&offset.to_be_bytes());
        msg.extend_from_slice(&len.to_be_bytes());
        self.send(&msg)?;
        Ok(self.cookie)
    }

    /// Reads the reply chunks of request `cookie`, passing each `(type, payload)` on.
    fn replies(
        &mut self,
        cookie: u64,
        simple_data: Option<&mut [u8]>,
        mut each: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        loop {
            let mut magic = [0u8; 4];
            self.stream.read_exact(&mut magic).map_err(|e| self.io(e))?;
            match u32::from_be_bytes(magic) {
                SIMPLE_REPLY_MAGIC => {
                    let mut rest = [0u8; 12];
                    self.stream.read_exact(&mut rest).map_err(|e| self.io(e))?;
                    let error = be32(&rest[0..4]);
                    if be64(&rest[4..12]) != cookie {
                        return Err(self.fail("reply for another request"));
                    }
                    if error != 0 {
                        return Err(self.fail(format!("request failed with error {error}")));
                    }
                    if let Some(buf) = simple_data {
                        self.stream.read_exact(buf).map_err(|e| self.io(e))?;
                    }
                    return Ok(());
                }
                STRUCTURED_REPLY_MAGIC => {
                    let mut rest = [0u8; 16];
                    self.stream.read_exact(&mut rest).map_err(|e| self.io(e))?;
                    let (flags, kind, len) =
                        (be16(&rest[0..2]), be16(&rest[2..4]), be32(&rest[12..16]));
                    if be64(&rest[4..12]) != cookie || len > MAX_CHUNK {
                        return Err(self.fail("malformed structured reply"));
                    }
                    let mut body = vec![0u8; len as usize];
                    self.stream.read_exact(&mut body).map_err(|e| self.io(e))?;
                    if kind & REPLY_ERROR_BIT != 0 {
                        let code = if body.len() >= 4 {
                            be32(&body[0..4])
                        } else {
                            0
                        };
                        let msg = body
                            .get(6..)
                            .map(String::from_utf8_lossy)
                            .unwrap_or_default();
                        return Err(self.fail(format!("request failed with error {code}: {msg}")));
                    }
                    each(kind, &body)?;
                    if flags & REPLY_FLAG_DONE != 0 {
                        return Ok(());
                    }
                }
                _ => return Err(self.fail("not an NBD reply")),
            }
        }
    }

    /// Fills `buf` from `offset`.
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        for (i, piece) in buf.chunks_mut(MAX_REQUEST as usize).enumerate() {
            let at = offset + (i as u64) * MAX_REQUEST;
            let cookie = self.request(CMD_READ, at, piece.len() as u32)?;
            if self.context.is_none() {
                self.replies(cookie, Some(piece), |_, _| Ok(()))?;
                continue;
            }
            let len = piece.len() as u64;
            let mut bad = None;
            self.replies(cookie, None, |kind, body| {
                let place = |rel: u64, n: u64| (rel + n <= len).then_some(rel as usize);
                match kind {
                    REPLY_OFFSET_DATA if body.len() >= 8 => {
                        let rel = be64(&body[0..8]).wrapping_sub(at);
                        let data = &body[8..];
                        match place(rel, data.len() as u64) {
                            Some(r) => piece[r..r + data.len()].copy_from_slice(data),
                            None => bad = Some("data outside the request"),
                        }
                    }
                    REPLY_OFFSET_HOLE if body.len() >= 12 => {
                        let rel = be64(&body[0..8]).wrapping_sub(at);
                        let n = u64::from(be32(&body[8..12]));
                        match place(rel, n) {
                            Some(r) => piece[r..r + n as usize].fill(0),
                            None => bad = Some("hole outside the request"),
                        }
                    }
                    REPLY_NONE => {}
                    _ => bad = Some("unexpected reply to a read"),
                }
                Ok(())
            })?;
            if let Some(what) = bad {
                return Err(self.fail(what));
            }
        }
        Ok(())
    }

    /// The ranges `[start, end)` whose status has any of `flags` set, over the whole
    /// export, in the metadata context negotiated at connect.
    pub fn ranges_with(&mut self, flags: u32) -> Result<Vec<(u64, u64)>> {
        let Some(context) = self.context else {
            return Err(self.fail("no metadata context was negotiated"));
        };
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut pos = 0;
        while pos < self.size {
            let len = (self.size - pos).min(MAX_REQUEST) as u32;
            let cookie = self.request(CMD_BLOCK_STATUS, pos, len)?;
            let mut next = pos;
            self.replies(cookie, None, |kind, body| {
                if kind != REPLY_BLOCK_STATUS || body.len() < 4 || be32(&body[0..4]) != context {
                    return Ok(());
                }
                for d in body[4..].chunks_exact(8) {
                    let (n, status) = (u64::from(be32(&d[0..4])), be32(&d[4..8]));
                    if status & flags != 0 {
                        match out.last_mut() {
                            Some(last) if last.1 == next => last.1 = next + n,
                            _ => out.push((next, next + n)),
                        }
                    }
                    next += n;
                }
                Ok(())
            })?;
            if next <= pos {
                return Err(self.fail("block status made no progress"));
            }
            pos = next.min(self.size);
        }
        if let Some(last) = out.last_mut() {
            last.1 = last.1.min(self.size);
        }
        Ok(out)
    }

    /// The ranges that hold data (neither a hole nor reading as zeros), in `base:allocation`.
    pub fn allocated(&mut self) -> Result<Vec<(u64, u64)>> {
        let zero = self.ranges_with(2)?;
        Ok(complement(&zero, self.size))
    }
}

impl Drop for NbdClient {
    fn drop(&mut self) {
        // A polite goodbye; the server copes with a plain close as well.
        let _ = self.request(CMD_DISC, 0, 0);
    }
}

impl BlockSource for NbdClient {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.read(offset, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// The ranges of `[0, size)` not in `ranges` (sorted, disjoint).
fn complement(ranges: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &(s, e) in ranges {
        if s > pos {
            out.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < size {
        out.push((pos, size));
    }
    out
}

fn put_str32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[0..8].try_into().unwrap_or_default())
}
