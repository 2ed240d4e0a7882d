//! Formats whose tables map guest offsets to file offsets (qcow2, VHDX, VMDK sparse), read
//! once from a pipe.
//!
//! The importer keeps a list of *wants*: byte ranges of the file it knows it needs, each a
//! table or the data of a guest range. It reads the stream in order; when a want's bytes
//! have all arrived it is handed to the format's [`Layout`], which parses a table into more
//! wants, or writes the data at its guest offset. Bytes no want covers yet wait in *limbo*
//! until the format says every table is known; a want that points back into limbo is served
//! from there. Limbo and the bytes between a want's start and the stream's position count
//! against the import's budget.

use std::collections::BTreeMap;

use flate2::{Decompress, FlushDecompress, Status};

use super::tables::{Qcow2, TOP, Vhdx, Vmdk};
use super::{Input, Target};
use crate::qcow2::read::{HEADER_BYTES, Header as Qcow2Header};
use crate::vhdx::read::{Metadata, Regions, SECTION};
use crate::vmdk::Header as VmdkHeader;
use crate::vmdk::read::MAX_GD_ENTRIES;
use crate::{Error, Format, Result};

/// The most bytes read from the stream at once when nothing is wanted soon.
const PIECE: u64 = 1 << 20;

/// What a range of the file is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A table; the number tells the layout which.
    Table(u64),
    /// Plain guest bytes at this guest offset.
    Data(u64),
    /// A raw-deflated qcow2 cluster for this guest offset, and the cluster size.
    Deflated(u64, usize),
}

/// A byte range of the file the importer needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Want {
    start: u64,
    len: u64,
    kind: Kind,
}

impl Want {
    /// The `len` bytes from `start`, which are `kind`.
    pub(super) fn new(start: u64, len: u64, kind: Kind) -> Want {
        Want { start, len, kind }
    }
}

/// A format's tables, learnt as the stream goes.
pub(super) trait Layout {
    /// The disk's size.
    fn size(&self) -> u64;
    /// Parses table `which`, read from byte `at`; returns the wants it adds.
    fn table(&mut self, which: u64, at: u64, bytes: &[u8], input: &Input) -> Result<Vec<Want>>;
    /// Whether every table that maps data has been parsed.
    fn complete(&self) -> bool;
    /// What is still missing, for errors.
    fn missing(&self) -> &'static str;
}

/// Imports a qcow2 or VHDX image; returns the disk's size.
pub(super) fn import(input: &mut Input, target: &mut Target) -> Result<u64> {
    match input.format {
        Format::Qcow2 => {
            let mut h = [0u8; HEADER_BYTES];
            input.read_exact(&mut h, "header")?;
            let header = Qcow2Header::parse(&h, &input.name)?;
            let first = Want::new(header.l1_offset, header.l1_size * 8, Kind::Table(TOP));
            let layout = Qcow2 {
                header,
                l1_done: false,
                l2_left: 0,
            };
            run(input, target, layout, h.to_vec(), vec![first])
        }
        _ => {
            let mut section = vec![0u8; SECTION];
            input.read_exact(&mut section, "header section")?;
            let regions = Regions::parse(&section, &input.name, u64::MAX)?;
            let (at, len) = regions.metadata;
            Metadata::checked_len(at, len, &input.name)?;
            let first = Want::new(at, len, Kind::Table(0));
            let layout = Vhdx {
                bat: regions.bat,
                meta: None,
                done: false,
            };
            run(input, target, layout, section, vec![first])
        }
    }
}

/// Imports a VMDK sparse extent without markers whose `header` is `first`.
pub(super) fn import_vmdk(
    input: &mut Input,
    target: &mut Target,
    header: VmdkHeader,
    first: Vec<u8>,
) -> Result<u64> {
    if header.compression != 0 {
        return Err(Error::unsupported(
            &input.name,
            Format::Vmdk,
            "compressed grains without markers",
            "pass the image as a file instead of on stdin",
        ));
    }
    let entries = header
        .capacity
        .div_ceil(header.grain * u64::from(header.gtes_per_gt));
    if entries > MAX_GD_ENTRIES {
        return Err(input.bad(56, format!("a {entries}-entry grain directory is absurd")));
    }
    let gd = Want::new(
        header.gd_offset.saturating_mul(512),
        entries * 4,
        Kind::Table(TOP),
    );
    let layout = Vmdk {
        header,
        gd_done: false,
        gt_left: 0,
    };
    run(input, target, layout, first, vec![gd])
}

/// The wants, limbo and window of one import.
struct State {
    /// Wants by (start, sequence): two table entries may name the same bytes.
    wants: BTreeMap<(u64, u64), Want>,
    seq: u64,
    /// Bytes read but not yet wanted, by file offset.
    limbo: BTreeMap<u64, Vec<u8>>,
    limbo_bytes: usize,
    /// The bytes from `window_at` to the stream's position, kept for the first want.
    window: Vec<u8>,
    window_at: u64,
    inflate: Decompress,
}

/// Runs the import: `first` holds the stream's bytes already read, from 0.
fn run(
    input: &mut Input,
    target: &mut Target,
    mut layout: impl Layout,
    first: Vec<u8>,
    wants: Vec<Want>,
) -> Result<u64> {
    let mut st = State {
        wants: BTreeMap::new(),
        seq: 0,
        limbo: BTreeMap::new(),
        limbo_bytes: 0,
        window: first,
        window_at: 0,
        inflate: Decompress::new_with_window_bits(false, 15),
    };
    st.add(wants, input, target, &mut layout)?;
    while let Some((&key, &want)) = st.wants.first_key_value() {
        let end = want.start + want.len;
        if end > input.pos {
            if want.start > input.pos {
                // Bytes before the want: into limbo while tables are missing, else dropped.
                if st.read_more(input, (want.start - input.pos).min(PIECE), &layout)? {
                    st.trim(input.pos, &layout, input)?;
                    continue;
                }
                return Err(input.bad(
                    input.pos,
                    format!("the stream ends before byte {} it maps", want.start),
                ));
            }
            if st.read_more(input, end - input.pos, &layout)? {
                continue;
            }
            // The stream ended: only a compressed cluster, whose sector count may reach past
            // the file's end, may be short.
            let short = matches!(want.kind, Kind::Deflated(..));
            if !short || want.start >= input.pos {
                return Err(input.bad(
                    want.start,
                    format!(
                        "the stream ends before the {}-byte range at byte {} it maps",
                        want.len, want.start
                    ),
                ));
            }
        }
        st.wants.remove(&key);
        let window = std::mem::take(&mut st.window);
        let lo = (want.start - st.window_at) as usize;
        let hi = (end.min(input.pos) - st.window_at) as usize;
        let more = st.serve(want, &window[lo..hi], input, target, &mut layout);
        st.window = window;
        st.add(more?, input, target, &mut layout)?;
        let keep = st.wants.first_key_value().map_or(input.pos, |(k, _)| k.0);
        st.trim(keep.min(input.pos), &layout, input)?;
    }
    if !layout.complete() {
        return Err(input.bad(input.pos, format!("the stream lacks {}", layout.missing())));
    }
    super::vmdk::drain(input)?;
    Ok(layout.size())
}

impl State {
    /// Reads up to `n` more bytes into the window; false at the stream's end.
    fn read_more(&mut self, input: &mut Input, n: u64, layout: &impl Layout) -> Result<bool> {
        if self.window.is_empty() {
            self.window_at = input.pos;
        }
        let from = self.window.len();
        if from + self.limbo_bytes + n as usize > input.budget + PIECE as usize {
            return Err(input.over_budget(layout.missing()));
        }
        self.window.resize(from + n as usize, 0);
        let got = input.read(&mut self.window[from..])?;
        self.window.truncate(from + got);
        Ok(got > 0)
    }

    /// Drops the window's bytes before `keep`: into limbo while tables are missing.
    fn trim(&mut self, keep: u64, layout: &impl Layout, input: &Input) -> Result<()> {
        let n = (keep.saturating_sub(self.window_at) as usize).min(self.window.len());
        if n == 0 {
            return Ok(());
        }
        let rest = self.window.split_off(n);
        let gone = std::mem::replace(&mut self.window, rest);
        if !layout.complete() {
            self.limbo_bytes += gone.len();
            if self.limbo_bytes > input.budget {
                return Err(input.over_budget(layout.missing()));
            }
            self.limbo.insert(self.window_at, gone);
        }
        self.window_at += n as u64;
        if layout.complete() {
            self.limbo.clear();
            self.limbo_bytes = 0;
        }
        Ok(())
    }

    /// Queues `wants`; those behind the window are served from limbo now.
    fn add(
        &mut self,
        wants: Vec<Want>,
        input: &Input,
        target: &mut Target,
        layout: &mut impl Layout,
    ) -> Result<()> {
        let mut queue = wants;
        while let Some(want) = queue.pop() {
            if want
                .start
                .checked_add(want.len)
                .is_none_or(|end| end > 1 << 60)
            {
                return Err(input.bad(
                    want.start,
                    format!(
                        "a table points to a {}-byte range past any file's end",
                        want.len
                    ),
                ));
            }
            if want.start >= self.window_at {
                self.seq += 1;
                self.wants.insert((want.start, self.seq), want);
                if self.wants.len() > input.budget / 64 {
                    return Err(input.over_budget(layout.missing()));
                }
                continue;
            }
            let bytes = self.in_limbo(want).ok_or_else(|| {
                input.bad(
                    want.start,
                    format!(
                        "a table points back to a {}-byte range already passed in the stream",
                        want.len
                    ),
                )
            })?;
            queue.extend(self.serve(want, &bytes, input, target, layout)?);
        }
        Ok(())
    }

    /// The bytes of `want` if limbo holds them all.
    fn in_limbo(&self, want: Want) -> Option<Vec<u8>> {
        let end = want.start + want.len;
        let mut out = Vec::with_capacity(want.len as usize);
        let mut at = want.start;
        let from = self.limbo.range(..=at).next_back().map_or(at, |(k, _)| *k);
        for (&k, piece) in self.limbo.range(from..end) {
            if at == end || k > at {
                break;
            }
            let to = (k + piece.len() as u64).min(end);
            if to > at {
                out.extend_from_slice(&piece[(at - k) as usize..(to - k) as usize]);
                at = to;
            }
        }
        (at == end).then_some(out)
    }

    /// Hands `bytes` of `want` to the layout (a table) or writes them (data).
    fn serve(
        &mut self,
        want: Want,
        bytes: &[u8],
        input: &Input,
        target: &mut Target,
        layout: &mut impl Layout,
    ) -> Result<Vec<Want>> {
        match want.kind {
            Kind::Table(which) => return layout.table(which, want.start, bytes, input),
            Kind::Data(guest) => target.put(guest, bytes, layout.size())?,
            Kind::Deflated(guest, cluster) => {
                let mut out = vec![0u8; cluster];
                self.inflate.reset(false);
                let status = self
                    .inflate
                    .decompress(bytes, &mut out, FlushDecompress::Finish);
                if !matches!(
                    status,
                    Ok(Status::StreamEnd | Status::Ok | Status::BufError)
                ) || self.inflate.total_out() != out.len() as u64
                {
                    return Err(input.bad(
                        want.start,
                        "a compressed cluster does not inflate to a whole cluster",
                    ));
                }
                target.put(guest, &out, layout.size())?;
            }
        }
        Ok(Vec::new())
    }
}
