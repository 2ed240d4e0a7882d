//! NBD wire constants and pure parsers for what clients send (fuzzed in `fuzz/`).

/// "NBDMAGIC", the first server bytes.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// "IHAVEOPT", the newstyle magic and each option's prefix.
pub const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
/// The magic of option replies.
pub const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// The magic of a transmission request.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// The magic of a simple reply.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// The magic of a structured reply chunk.
pub const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;

/// Handshake flag: fixed newstyle.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1;
/// Handshake flag: no 124 zero bytes after NBD_OPT_EXPORT_NAME.
pub const FLAG_NO_ZEROES: u16 = 2;

/// Option: NBD_OPT_EXPORT_NAME.
pub const OPT_EXPORT_NAME: u32 = 1;
/// Option: NBD_OPT_ABORT.
pub const OPT_ABORT: u32 = 2;
/// Option: NBD_OPT_LIST.
pub const OPT_LIST: u32 = 3;
/// Option: NBD_OPT_INFO.
pub const OPT_INFO: u32 = 6;
/// Option: NBD_OPT_GO.
pub const OPT_GO: u32 = 7;
/// Option: NBD_OPT_STRUCTURED_REPLY.
pub const OPT_STRUCTURED_REPLY: u32 = 8;
/// Option: NBD_OPT_LIST_META_CONTEXT.
pub const OPT_LIST_META_CONTEXT: u32 = 9;
/// Option: NBD_OPT_SET_META_CONTEXT.
pub const OPT_SET_META_CONTEXT: u32 = 10;

/// Option reply: ACK.
pub const REP_ACK: u32 = 1;
/// Option reply: an export in a LIST.
pub const REP_SERVER: u32 = 2;
/// Option reply: export information.
pub const REP_INFO: u32 = 3;
/// Option reply: a meta context.
pub const REP_META_CONTEXT: u32 = 4;
/// Option error: unsupported option.
pub const REP_ERR_UNSUP: u32 = 0x8000_0001;
/// Option error: invalid option data.
pub const REP_ERR_INVALID: u32 = 0x8000_0003;
/// Option error: unknown export.
pub const REP_ERR_UNKNOWN: u32 = 0x8000_0006;

/// Info type: export size and flags.
pub const INFO_EXPORT: u16 = 0;
/// Info type: block size constraints.
pub const INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flags: has flags, flush, FUA, trim, write zeroes, DF, multi-conn.
pub const TRANSMISSION_FLAGS: u16 = 1 | 4 | 8 | 32 | 64 | 128 | 256;

/// Command flag: force unit access.
pub const CMD_FLAG_FUA: u16 = 1;
/// Command flag: one block status descriptor only.
pub const CMD_FLAG_REQ_ONE: u16 = 8;

/// Structured reply flag: last chunk.
pub const REPLY_FLAG_DONE: u16 = 1;
/// Chunk type: none.
pub const REPLY_NONE: u16 = 0;
/// Chunk type: data at an offset.
pub const REPLY_OFFSET_DATA: u16 = 1;
/// Chunk type: block status.
pub const REPLY_BLOCK_STATUS: u16 = 5;
/// Chunk type: error.
pub const REPLY_ERROR: u16 = 0x8001;

/// Block status flag: hole.
pub const STATE_HOLE: u32 = 1;
/// Block status flag: reads as zeros.
pub const STATE_ZERO: u32 = 2;

/// The id of the `base:allocation` meta context.
pub const BASE_ALLOCATION_ID: u32 = 1;
/// The name of the only meta context served.
pub const BASE_ALLOCATION: &str = "base:allocation";

/// errno: EIO.
pub const EIO: u32 = 5;
/// errno: EINVAL.
pub const EINVAL: u32 = 22;
/// errno: ENOSPC.
pub const ENOSPC: u32 = 28;

/// The largest option payload read; longer options get ERR_TOO_BIG and are skipped.
pub const MAX_OPTION_LEN: u32 = 64 * 1024;
/// The largest READ or WRITE payload (also advertised as the maximum block size).
pub const MAX_PAYLOAD: u32 = 32 * 1024 * 1024;
/// Length of a request header.
pub const REQUEST_LEN: usize = 28;

/// A transmission command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// NBD_CMD_READ.
    Read,
    /// NBD_CMD_WRITE.
    Write,
    /// NBD_CMD_DISC.
    Disconnect,
    /// NBD_CMD_FLUSH.
    Flush,
    /// NBD_CMD_TRIM.
    Trim,
    /// NBD_CMD_CACHE (a no-op here).
    Cache,
    /// NBD_CMD_WRITE_ZEROES.
    WriteZeroes,
    /// NBD_CMD_BLOCK_STATUS.
    BlockStatus,
    /// Anything else, by number.
    Unknown(u16),
}

/// A parsed request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags.
    pub flags: u16,
    /// The command.
    pub command: Command,
    /// The client's cookie, echoed in replies.
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Byte length.
    pub length: u32,
}

/// Why bytes are not a request header; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bad NBD request magic {0:#x}; closing the connection")]
pub struct BadMagic(pub u32);

impl Request {
    /// Parses a 28-byte request header.
    pub fn parse(b: &[u8; REQUEST_LEN]) -> Result<Request, BadMagic> {
        let magic = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        if magic != REQUEST_MAGIC {
            return Err(BadMagic(magic));
        }
        let command = Command::from_code(u16::from_be_bytes([b[6], b[7]]));
        let u64at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(x)
        };
        Ok(Request {
            flags: u16::from_be_bytes([b[4], b[5]]),
            command,
            cookie: u64at(8),
            offset: u64at(16),
            length: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        })
    }

    /// The 28-byte header of this request, as a client sends it.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b[6..8].copy_from_slice(&self.command.code().to_be_bytes());
        b[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

impl Command {
    /// The command numbered `code` on the wire.
    pub fn from_code(code: u16) -> Command {
        match code {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disconnect,
            3 => Command::Flush,
            4 => Command::Trim,
            5 => Command::Cache,
            6 => Command::WriteZeroes,
            7 => Command::BlockStatus,
            n => Command::Unknown(n),
        }
    }

    /// The command's number on the wire.
    pub fn code(self) -> u16 {
        match self {
            Command::Read => 0,
            Command::Write => 1,
            Command::Disconnect => 2,
            Command::Flush => 3,
            Command::Trim => 4,
            Command::Cache => 5,
            Command::WriteZeroes => 6,
            Command::BlockStatus => 7,
            Command::Unknown(n) => n,
        }
    }
}

/// A cursor over option data that fails instead of panicking on short input.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        (self.0.len() >= n).then(|| {
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        })
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.take(n)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// NBD_OPT_INFO / NBD_OPT_GO data: the export name and the info types asked for.
pub fn parse_info_request(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let mut c = Cursor(data);
    let name = c.string()?;
    let n = c.u16()?;
    let infos = (0..n).map(|_| c.u16()).collect::<Option<Vec<_>>>()?;
    c.0.is_empty().then_some((name, infos))
}

/// NBD_OPT_{LIST,SET}_META_CONTEXT data: the export name and the queries.
pub fn parse_meta_request(data: &[u8]) -> Option<(String, Vec<String>)> {
    let mut c = Cursor(data);
    let name = c.string()?;
    let n = c.u32()?;
    let mut queries = Vec::new();
    for _ in 0..n {
        queries.push(c.string()?);
    }
    c.0.is_empty().then_some((name, queries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_refuses_bad_magic() {
        let mut b = [0u8; REQUEST_LEN];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b[8..16].copy_from_slice(&7u64.to_be_bytes());
        b[16..24].copy_from_slice(&4096u64.to_be_bytes());
        b[24..28].copy_from_slice(&512u32.to_be_bytes());
        let r = Request::parse(&b).unwrap();
        assert_eq!(
            (r.command, r.flags, r.cookie, r.offset, r.length),
            (Command::Write, 1, 7, 4096, 512)
        );
        b[6..8].copy_from_slice(&99u16.to_be_bytes());
        assert_eq!(Request::parse(&b).unwrap().command, Command::Unknown(99));
        assert_eq!(
            Request::parse(&r.encode()),
            Ok(r),
            "encode is parse's inverse"
        );
        b[0] = 0;
        assert!(Request::parse(&b).is_err());
    }

    #[test]
    fn option_data_parsers_refuse_short_and_long_input() {
        let mut d = Vec::new();
        d.extend(3u32.to_be_bytes());
        d.extend(b"vol");
        d.extend(1u16.to_be_bytes());
        d.extend(3u16.to_be_bytes());
        assert_eq!(parse_info_request(&d), Some(("vol".into(), vec![3])));
        assert_eq!(parse_info_request(&d[..d.len() - 1]), None);
        d.push(0);
        assert_eq!(parse_info_request(&d), None);
        let mut m = Vec::new();
        m.extend(0u32.to_be_bytes());
        m.extend(1u32.to_be_bytes());
        m.extend(15u32.to_be_bytes());
        m.extend(BASE_ALLOCATION.as_bytes());
        assert_eq!(
            parse_meta_request(&m),
            Some((String::new(), vec![BASE_ALLOCATION.into()]))
        );
        m[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_meta_request(&m), None);
    }
}
