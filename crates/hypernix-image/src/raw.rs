//! Raw images: the guest's bytes as they are. The reader finds holes with
//! `SEEK_DATA`/`SEEK_HOLE` so sparse regions are not read; a stream reader takes a pipe in
//! order. The writer leaves holes in files and writes zeros into streams.

use std::fs::File;
use std::io::Read;

use rustix::fs::SeekFrom;

use crate::io::{file_len, read_exact_at};
use crate::sink::Sink;
use crate::{Error, Extent, Format, Output, Reader, Result, Writer};

/// A raw image file.
pub struct RawReader {
    file: File,
    name: String,
    size: u64,
    /// The last data region found: asked at `.0`, data from `.1` to `.2`.
    region: Option<(u64, u64, u64)>,
}

impl RawReader {
    /// Opens `file` (named `name`) as a raw image of its length.
    pub fn new(file: File, name: &str) -> Result<RawReader> {
        let size = file_len(&file, name)?;
        Ok(RawReader {
            file,
            name: name.to_string(),
            size,
            region: None,
        })
    }

    /// The data region at or after `off`: `(start, end)`; `start == size` when none.
    fn region(&mut self, off: u64) -> (u64, u64) {
        if let Some((from, start, end)) = self.region
            && off >= from
            && off < end
        {
            return (start, end);
        }
        let (start, end) = match rustix::fs::seek(&self.file, SeekFrom::Data(off)) {
            Ok(start) => {
                let end = rustix::fs::seek(&self.file, SeekFrom::Hole(start)).unwrap_or(self.size);
                (start, end.min(self.size))
            }
            Err(rustix::io::Errno::NXIO) => (self.size, self.size),
            // A file system without SEEK_DATA: everything is data.
            Err(_) => (off, self.size),
        };
        self.region = Some((off, start, end));
        (start, end)
    }
}

impl Reader for RawReader {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn next_data(&mut self, offset: u64) -> u64 {
        self.region(offset).0
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<Extent> {
        let end = offset + buf.len() as u64;
        let (start, _) = self.region(offset);
        if end <= start {
            buf.fill(0);
            return Ok(Extent::Zero);
        }
        read_exact_at(&self.file, &self.name, Format::Raw, buf, offset, "data")?;
        Ok(Extent::Data)
    }
}

/// A raw image arriving on a pipe, read in order; bytes past its end read as zeros.
pub struct RawStream {
    input: Box<dyn Read + Send>,
    size: u64,
    pos: u64,
    eof: bool,
}

impl RawStream {
    /// Reads a raw disk of `size` bytes from `input`.
    pub fn new(input: Box<dyn Read + Send>, size: u64) -> RawStream {
        RawStream {
            input,
            size,
            pos: 0,
            eof: false,
        }
    }
}

impl Reader for RawStream {
    fn virtual_size(&self) -> u64 {
        self.size
    }

    fn sequential(&self) -> bool {
        true
    }

    /// Reads the next bytes; at the end of the stream returns [`Extent::Zero`].
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<Extent> {
        if offset != self.pos {
            return Err(Error::Usage(format!(
                "stdin: a raw stream is read in order; byte {offset} asked at byte {}",
                self.pos
            )));
        }
        let mut done = 0;
        while !self.eof && done < buf.len() {
            match self.input.read(&mut buf[done..]) {
                Ok(0) => self.eof = true,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("stdin", format!("read at byte {}", self.pos), e)),
            }
        }
        buf[done..].fill(0);
        self.pos += buf.len() as u64;
        Ok(if done == 0 {
            Extent::Zero
        } else {
            Extent::Data
        })
    }
}

/// Writes a raw image: holes in a file, zeros on a stream.
pub struct RawWriter {
    sink: Sink,
    size: u64,
}

impl RawWriter {
    /// A raw writer for a disk of `size` bytes.
    pub fn new(out: Output, size: u64) -> Result<RawWriter> {
        Ok(RawWriter {
            sink: Sink::new(out),
            size,
        })
    }
}

impl Writer for RawWriter {
    fn write_chunks(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.sink.skip_to(offset)?;
        self.sink.write(data)
    }

    fn finish(self: Box<Self>) -> Result<u64> {
        self.sink.finish(self.size)
    }
}
