//! Block traces in the format of the ARC paper's traces (`../shared/data/block-traces`):
//! one request a line, `start count ignored request_number`, blocks of 512 bytes; the file
//! may be zstd-compressed (`.zst`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A trace that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be opened or decompressed.
    #[error("trace {path}: cannot read it; check the path (and that a .zst file is zstd)")]
    Io {
        /// The trace file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line that is not `start count ...`.
    #[error("trace {path} line {line}: {reason}; each line must be `start count ...` in decimal")]
    Line {
        /// The trace file.
        path: PathBuf,
        /// The line number (from 1).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A trace with no requests.
    #[error("trace {0}: no requests in it")]
    Empty(PathBuf),
}

/// One request: `count` pages from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The first page.
    pub start: u64,
    /// How many pages.
    pub count: u32,
}

/// The most pages one line may ask for (a larger count is taken for garbage).
pub const MAX_PAGES_PER_REQUEST: u32 = 1 << 20;

/// Parses the lines of a trace read from `input`; `path` names it in errors.
pub fn parse(path: &Path, input: impl Read) -> Result<Vec<Request>, TraceError> {
    let mut out = Vec::new();
    let io = |source| TraceError::Io {
        path: path.into(),
        source,
    };
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line = line.map_err(io)?;
        let bad = |reason: String| TraceError::Line {
            path: path.into(),
            line: n as u64 + 1,
            reason,
        };
        let mut fields = line.split_ascii_whitespace();
        let Some(start) = fields.next() else {
            continue;
        };
        let start: u64 = start
            .parse()
            .map_err(|_| bad(format!("start {start:?} is not a block number")))?;
        let count = fields.next().ok_or_else(|| bad("no block count".into()))?;
        let count: u32 = count
            .parse()
            .map_err(|_| bad(format!("count {count:?} is not a number")))?;
        if count == 0 || count > MAX_PAGES_PER_REQUEST {
            return Err(bad(format!(
                "count {count} is outside 1..={MAX_PAGES_PER_REQUEST}"
            )));
        }
        if start.checked_add(u64::from(count)).is_none() {
            return Err(bad(format!("blocks {start}+{count} overflow")));
        }
        out.push(Request { start, count });
    }
    if out.is_empty() {
        return Err(TraceError::Empty(path.into()));
    }
    Ok(out)
}

/// Reads the trace at `path`, decompressing it when its name ends in `.zst`.
pub fn read(path: &Path) -> Result<Vec<Request>, TraceError> {
    let io = |source| TraceError::Io {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "zst") {
        let decoder = zstd::stream::read::Decoder::new(file).map_err(io)?;
        parse(path, decoder)
    } else {
        parse(path, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_rejects_garbage_with_the_line_number() {
        let p = Path::new("t");
        let ok = parse(p, "1 1 0 0\n\n230027 8 0 1\n".as_bytes()).unwrap();
        assert_eq!(
            ok,
            [
                Request { start: 1, count: 1 },
                Request {
                    start: 230027,
                    count: 8
                }
            ]
        );
        for (text, needle) in [
            ("1 1 0 0\nx 1 0 0\n", "line 2"),
            ("5\n", "no block count"),
            ("5 0 0 0\n", "outside"),
            ("5 99999999999 0 0\n", "not a number"),
            ("18446744073709551615 2\n", "overflow"),
            ("\n \n", "no requests"),
        ] {
            let e = parse(p, text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        assert!(parse(p, &[0xff, 0xfe, b'\n'][..]).is_err());
    }
}
