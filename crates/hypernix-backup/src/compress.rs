//! Groups compressed and sealed on a second thread while the writer reads, hashes and
//! sketches the next chunks (step 6 of the write path, off the reading thread).
//!
//! 1. The writer submits a closed group's plaintext.
//! 2. The worker zstd-compresses it; if the frame is smaller it seals the frame and sends
//!    it back, else it sends the plaintext back for the writer to store raw, chunk by chunk.
//! 3. Results come back in submission order (one worker, one channel each way), so the
//!    writer appends them to the pack in the order it closed the groups.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use crate::crypto::Keys;

/// A group as the worker returns it.
pub(crate) enum Encoded {
    /// The sealed zstd frame of the whole group.
    Sealed(Vec<u8>),
    /// The group's plaintext: it did not compress.
    Raw(Vec<u8>),
}

/// The compression thread of one backup.
pub(crate) struct Compressor {
    jobs: Option<Sender<Vec<u8>>>,
    results: Receiver<std::io::Result<Encoded>>,
    worker: Option<JoinHandle<()>>,
}

impl Compressor {
    /// Starts the worker, compressing at zstd `level` and sealing with `keys`.
    pub(crate) fn new(keys: Keys, level: i32) -> Compressor {
        let (jobs, inbox) = channel::<Vec<u8>>();
        let (outbox, results) = channel();
        let worker = std::thread::spawn(move || {
            for group in inbox {
                let encoded = zstd::bulk::compress(&group, level).map(|frame| {
                    if frame.len() < group.len() {
                        Encoded::Sealed(keys.seal(&frame))
                    } else {
                        Encoded::Raw(group)
                    }
                });
                if outbox.send(encoded).is_err() {
                    break;
                }
            }
        });
        Compressor {
            jobs: Some(jobs),
            results,
            worker: Some(worker),
        }
    }

    /// Hands a closed group to the worker.
    pub(crate) fn submit(&self, group: Vec<u8>) {
        if let Some(jobs) = &self.jobs {
            // A send fails only when the worker has ended; `next` then reports it.
            let _ = jobs.send(group);
        }
    }

    /// The oldest submitted group's result, waiting for it.
    pub(crate) fn next(&self) -> std::io::Result<Encoded> {
        self.results
            .recv()
            .map_err(|_| std::io::Error::other("the compression thread ended"))?
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
