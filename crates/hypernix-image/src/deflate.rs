//! Deflate on every core: writers that compress collect a batch of chunks, compress them on
//! scoped threads (one reusable compressor each) and then lay them out in guest order. The
//! output is the same as compressing one by one; only the wall time changes. qemu-img
//! compresses qcow2 clusters on a thread pool too, so this keeps the comparison even.

use flate2::{Compress, Compression, FlushCompress, Status};

use crate::CHUNK;

/// Chunks per batch: 4 MiB of guest data in memory, twice (input and output).
const BATCH: usize = 64;

/// The deflate flavour.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flavour {
    /// Raw deflate with a 4 KiB window, output capped one byte short of a chunk (qcow2).
    Qcow2,
    /// A zlib stream (VMDK grains).
    Zlib,
}

/// A batch of chunks waiting to be compressed.
pub(crate) struct Deflater {
    flavour: Flavour,
    workers: Vec<Compress>,
    offsets: Vec<u64>,
    inputs: Vec<Vec<u8>>,
    /// Compressed bytes and their length (`None`: did not fit, store plain).
    outputs: Vec<(Vec<u8>, Option<usize>)>,
}

impl Deflater {
    pub(crate) fn new(flavour: Flavour) -> Deflater {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let workers = (0..threads)
            .map(|_| match flavour {
                // qemu inflates qcow2 clusters with a 4 KiB window (raw deflate, no header).
                Flavour::Qcow2 => Compress::new_with_window_bits(Compression::default(), false, 12),
                Flavour::Zlib => Compress::new(Compression::default(), true),
            })
            .collect();
        Deflater {
            flavour,
            workers,
            offsets: Vec::with_capacity(BATCH),
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Adds a whole chunk at guest `offset`; returns whether the batch is full.
    pub(crate) fn push(&mut self, offset: u64, chunk: &[u8]) -> bool {
        let i = self.offsets.len();
        self.offsets.push(offset);
        if self.inputs.len() <= i {
            self.inputs.push(Vec::with_capacity(CHUNK));
            self.outputs.push((vec![0u8; CHUNK + CHUNK / 8 + 64], None));
        }
        self.inputs[i].clear();
        self.inputs[i].extend_from_slice(chunk);
        self.offsets.len() == BATCH
    }

    /// Compresses the batch and hands each chunk to `place` in guest order as
    /// `(offset, plain chunk, compressed bytes if they fit)`; then empties the batch.
    pub(crate) fn drain<E>(
        &mut self,
        mut place: impl FnMut(u64, &[u8], Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), E> {
        let n = self.offsets.len();
        let per = n.div_ceil(self.workers.len()).max(1);
        let flavour = self.flavour;
        std::thread::scope(|scope| {
            for ((inputs, outputs), worker) in self.inputs[..n]
                .chunks(per)
                .zip(self.outputs[..n].chunks_mut(per))
                .zip(self.workers.iter_mut())
            {
                scope.spawn(move || {
                    for (input, (out, len)) in inputs.iter().zip(outputs) {
                        *len = deflate(worker, flavour, input, out);
                    }
                });
            }
        });
        let result = (0..n).try_for_each(|i| {
            let (out, len) = &self.outputs[i];
            place(self.offsets[i], &self.inputs[i], len.map(|l| &out[..l]))
        });
        self.offsets.clear();
        result
    }
}

/// Compresses `input` into `out`; `None` when a qcow2 cluster does not shrink.
fn deflate(c: &mut Compress, flavour: Flavour, input: &[u8], out: &mut [u8]) -> Option<usize> {
    c.reset();
    let room = match flavour {
        // One byte short of a cluster, as qemu: a cluster that does not shrink is stored plain.
        Flavour::Qcow2 => CHUNK - 1,
        Flavour::Zlib => out.len(),
    };
    match c.compress(input, &mut out[..room], FlushCompress::Finish) {
        Ok(Status::StreamEnd) => Some(c.total_out() as usize),
        _ => None,
    }
}
