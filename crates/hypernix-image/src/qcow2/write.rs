//! The qcow2 writer: one pass, v3, 64 KiB clusters, 16-bit refcounts.
//!
//! Layout: `header | data clusters | L2 tables | L1 table | refcount table | refcount
//! blocks`. Data goes out as it arrives (compressed clusters packed byte by byte, as qemu
//! packs them); the metadata follows the data, because only then is it known.
//!
//! To a file the header is written last, at byte 0. To a stream the header must go first,
//! and it names the L1 and refcount table offsets, which depend on how many bytes the data
//! takes. We chose a planning pass over buffering: [`Qcow2Writer::planning`] runs the same
//! writer over the input once with its output dropped, which yields the data's length and
//! the number of L2 tables ([`Plan`]); the real pass then writes the header first and
//! checks at the end that it matched. This reads a seekable input twice (and compresses
//! twice with `-c`) but holds only metadata in memory, where buffering the data to learn its
//! compressed length would hold the whole image.

use std::collections::BTreeMap;

use super::{COMPRESSED, COPIED, MAGIC};
use crate::deflate::{Deflater, Flavour};
use crate::io::whole_chunk;
use crate::sink::Sink;
use crate::{CHUNK, Error, Output, Result, Writer};

/// Cluster size: one pipeline chunk.
const CLUSTER: u64 = CHUNK as u64;
/// log2 of the cluster size.
const CLUSTER_BITS: u32 = 16;
/// L2 entries per table.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const REFS_PER_BLOCK: u64 = CLUSTER / 2;

/// What a planning pass learned: enough to write a stream's header first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The byte after the last data byte.
    data_end: u64,
    /// How many L2 tables hold entries.
    l2_tables: u64,
}

/// Where the metadata goes, given the data's end and the L2 table count.
#[derive(Debug, Clone, Copy)]
struct Layout {
    l2_start: u64,
    l1_offset: u64,
    l1_size: u64,
    rt_offset: u64,
    rt_clusters: u64,
    rb_offset: u64,
    rb_count: u64,
    end: u64,
}

impl Layout {
    fn new(size: u64, plan: Plan) -> Layout {
        let clusters = |bytes: u64| bytes.div_ceil(CLUSTER);
        let l2_start = plan.data_end.next_multiple_of(CLUSTER);
        let l1_size = clusters(size).div_ceil(L2_ENTRIES);
        let l1_clusters = clusters(l1_size * 8).max(1);
        let fixed = l2_start / CLUSTER + plan.l2_tables + l1_clusters;
        let (mut rb_count, mut rt_clusters) = (1, 1);
        // The refcount blocks count themselves: grow until they cover everything.
        loop {
            let total = fixed + rt_clusters + rb_count;
            let rb = total.div_ceil(REFS_PER_BLOCK);
            let rt = clusters(rb * 8).max(1);
            if rb == rb_count && rt == rt_clusters {
                break;
            }
            (rb_count, rt_clusters) = (rb, rt);
        }
        let l1_offset = l2_start + plan.l2_tables * CLUSTER;
        let rt_offset = l1_offset + l1_clusters * CLUSTER;
        let rb_offset = rt_offset + rt_clusters * CLUSTER;
        Layout {
            l2_start,
            l1_offset,
            l1_size,
            rt_offset,
            rt_clusters,
            rb_offset,
            rb_count,
            end: rb_offset + rb_count * CLUSTER,
        }
    }

    /// The v3 header cluster's first bytes.
    fn header(&self, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 112];
        let put32 =
            |h: &mut Vec<u8>, at: usize, v: u32| h[at..at + 4].copy_from_slice(&v.to_be_bytes());
        put32(&mut h, 0, MAGIC);
        put32(&mut h, 4, 3);
        put32(&mut h, 20, CLUSTER_BITS);
        h[24..32].copy_from_slice(&size.to_be_bytes());
        put32(&mut h, 36, self.l1_size as u32);
        h[40..48].copy_from_slice(&self.l1_offset.to_be_bytes());
        h[48..56].copy_from_slice(&self.rt_offset.to_be_bytes());
        put32(&mut h, 56, self.rt_clusters as u32);
        put32(&mut h, 96, 4); // refcount_order: 16-bit refcounts
        put32(&mut h, 100, 104); // header_length; an end-of-extensions marker (zeros) follows
        h
    }
}

/// Writes a qcow2 image in one pass.
pub struct Qcow2Writer {
    sink: Sink,
    size: u64,
    deflater: Option<Deflater>,
    /// L2 tables by L1 index.
    l2: BTreeMap<u64, Vec<u64>>,
    /// Refcounts of the data clusters by host cluster index.
    refs: Vec<u16>,
    /// The byte after the last data byte written.
    data_end: u64,
    plan: Option<Plan>,
    planning: bool,
}

impl Qcow2Writer {
    /// A writer for a disk of `size` bytes (rounded up to 512). A stream needs the `plan` of
    /// a planning pass over the same input.
    pub fn new(out: Output, size: u64, compress: bool, plan: Option<Plan>) -> Result<Qcow2Writer> {
        let size = size.next_multiple_of(512);
        let mut w = Qcow2Writer::with_sink(Sink::new(out), size, compress);
        if w.sink.seekable() {
            w.sink.skip_to(CLUSTER)?;
        } else {
            let plan = plan.ok_or_else(|| {
                Error::Usage("qcow2 to a stream needs a planning pass over a seekable input; give a file as input, or write to a file".into())
            })?;
            let layout = Layout::new(size, plan);
            w.sink.write(&layout.header(size))?;
            w.sink.skip_to(CLUSTER)?;
            w.plan = Some(plan);
        }
        Ok(w)
    }

    /// A writer that drops its output and only learns the [`Plan`].
    pub fn planning(size: u64, compress: bool) -> Qcow2Writer {
        let mut w = Qcow2Writer::with_sink(
            Sink::new(Output::Stream(Box::new(std::io::sink()))),
            size,
            compress,
        );
        w.planning = true;
        w.data_end = CLUSTER;
        w
    }

    /// What the writer has laid out so far (after a planning pass: the plan).
    pub fn plan(&mut self) -> Result<Plan> {
        self.flush()?;
        // A compressed cluster's last sector is counted whole.
        Ok(Plan {
            data_end: self.data_end.next_multiple_of(512),
            l2_tables: self.l2.len() as u64,
        })
    }

    fn with_sink(sink: Sink, size: u64, compress: bool) -> Qcow2Writer {
        Qcow2Writer {
            sink,
            size: size.next_multiple_of(512),
            deflater: compress.then(|| Deflater::new(Flavour::Qcow2)),
            l2: BTreeMap::new(),
            refs: Vec::new(),
            data_end: CLUSTER,
            plan: None,
            planning: false,
        }
    }

    /// Counts one reference to each host cluster in `[start, end)`.
    fn reference(&mut self, start: u64, end: u64) {
        let (first, last) = (start / CLUSTER, (end - 1) / CLUSTER);
        if self.refs.len() <= last as usize {
            self.refs.resize(last as usize + 1, 0);
        }
        for c in first..=last {
            self.refs[c as usize] = self.refs[c as usize].saturating_add(1);
        }
    }

    /// Writes `bytes` at `at` (in planning, only counts them).
    fn put(&mut self, at: u64, bytes: &[u8]) -> Result<()> {
        if !self.planning {
            self.sink.skip_to(at)?;
            self.sink.write(bytes)?;
        }
        Ok(())
    }

    /// Lays out the clusters at guest `offset`: one compressed cluster when given and it
    /// fits, else `plain`, one or more clusters stored as they are, one after the other.
    fn place(&mut self, offset: u64, plain: &[u8], compressed: Option<&[u8]>) -> Result<()> {
        let index = offset / CLUSTER;
        match compressed {
            Some(bytes) => {
                let at = self.data_end;
                let len = bytes.len() as u64;
                self.put(at, bytes)?;
                // Sectors beyond the one holding `at`; the last is counted whole.
                let sectors = (at + len - 1) / 512 - at / 512;
                self.reference(at, (at / 512 + sectors + 1) * 512);
                self.data_end = at + len;
                self.map(index, COMPRESSED | (sectors << 54) | at);
            }
            None => {
                let at = self.data_end.next_multiple_of(CLUSTER);
                self.put(at, plain)?;
                // A short last cluster's tail reads as zeros: a hole, or the metadata's gap.
                let end = at + (plain.len() as u64).next_multiple_of(CLUSTER);
                self.reference(at, end);
                self.data_end = end;
                for (i, host) in (at..end).step_by(CLUSTER as usize).enumerate() {
                    self.map(index + i as u64, COPIED | host);
                }
            }
        }
        Ok(())
    }

    /// Sets the L2 entry of guest cluster `index`.
    fn map(&mut self, index: u64, entry: u64) {
        let table = self
            .l2
            .entry(index / L2_ENTRIES)
            .or_insert_with(|| vec![0; L2_ENTRIES as usize]);
        table[(index % L2_ENTRIES) as usize] = entry;
    }

    /// Compresses and lays out the clusters waiting in the deflater.
    fn flush(&mut self) -> Result<()> {
        if let Some(mut d) = self.deflater.take() {
            let r = d.drain(|offset, plain, compressed| self.place(offset, plain, compressed));
            self.deflater = Some(d);
            r?;
        }
        Ok(())
    }
}

impl Writer for Qcow2Writer {
    fn write_chunks(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if self.deflater.is_none() {
            return self.place(offset, data, None);
        }
        let mut pad = Vec::new();
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let cluster = whole_chunk(chunk, &mut pad);
            let at = offset + (i * CHUNK) as u64;
            if self.deflater.as_mut().is_some_and(|d| d.push(at, cluster)) {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        let plan = self.plan()?;
        if let Some(expected) = self.plan
            && expected != plan
        {
            return Err(Error::Usage(format!(
                "{}: the input changed between the planning pass and the write ({expected:?} then {plan:?}); the stream is unusable, convert again from a stable input",
                self.sink.name()
            )));
        }
        let layout = Layout::new(self.size, plan);
        self.sink.skip_to(layout.l2_start)?;
        let mut l1 = vec![0u8; (layout.rt_offset - layout.l1_offset) as usize];
        let mut table = vec![0u8; CLUSTER as usize];
        for (i, (l1_index, entries)) in self.l2.iter().enumerate() {
            let at = layout.l2_start + i as u64 * CLUSTER;
            let e = (*l1_index * 8) as usize;
            l1[e..e + 8].copy_from_slice(&(COPIED | at).to_be_bytes());
            for (slot, entry) in table.chunks_exact_mut(8).zip(entries) {
                slot.copy_from_slice(&entry.to_be_bytes());
            }
            self.sink.write(&table)?;
        }
        self.sink.write(&l1)?;
        let mut rt = vec![0u8; (layout.rt_clusters * CLUSTER) as usize];
        for b in 0..layout.rb_count {
            let at = layout.rb_offset + b * CLUSTER;
            rt[(b * 8) as usize..(b * 8 + 8) as usize].copy_from_slice(&at.to_be_bytes());
        }
        self.sink.write(&rt)?;
        let total = layout.end / CLUSTER;
        let data_clusters = layout.l2_start / CLUSTER;
        for b in 0..layout.rb_count {
            let mut block = vec![0u8; CLUSTER as usize];
            for (slot, c) in block.chunks_exact_mut(2).zip(b * REFS_PER_BLOCK..total) {
                let r = match c {
                    0 => 1,
                    c if c < data_clusters => self.refs.get(c as usize).copied().unwrap_or(0),
                    _ => 1,
                };
                slot.copy_from_slice(&r.to_be_bytes());
            }
            self.sink.write(&block)?;
        }
        if self.sink.seekable() {
            self.sink.write_at(&layout.header(self.size), 0)?;
        }
        self.sink.finish(layout.end)
    }
}
