//! Parallel gzip: the input is cut into fixed-size chunks, each compressed
//! on a worker thread into a gzip member of its own, and the members are
//! written out in order. Concatenated gzip members form one valid gzip file
//! for `zcat` and for the kernel's initramfs unpacker.
//!
//! Chunk boundaries depend only on the byte count, so the output is the same
//! whatever the thread timing. Memory is bounded by `2 * workers` chunks in
//! flight.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::gzip;

/// Large enough that splitting costs well under 1% of ratio, small enough
/// to keep both cores busy on a small image.
pub const DEFAULT_CHUNK: usize = 4 << 20;

type Job = (Vec<u8>, Sender<io::Result<Vec<u8>>>);

pub struct ParallelGz<W: Write> {
    out: Option<W>,
    chunk: usize,
    buffer: Vec<u8>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    written: u64,
}

impl<W: Write> ParallelGz<W> {
    pub fn new(out: W, level: u32, chunk: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let handles = (0..workers)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((data, reply)) = job else { return };
                    let _ = reply.send(compress(&data, level));
                })
            })
            .collect();
        ParallelGz {
            out: Some(out),
            chunk: chunk.max(1),
            buffer: Vec::new(),
            pending: VecDeque::new(),
            max_pending: workers * 2,
            jobs: Some(jobs),
            workers: handles,
            written: 0,
        }
    }

    /// Compresses what is still buffered, writes every member in order and
    /// returns the writer with the number of compressed bytes written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        // An empty input still gives one (empty) member, so the output is
        // always a valid gzip file.
        if !self.buffer.is_empty() || (self.pending.is_empty() && self.written == 0) {
            let data = std::mem::take(&mut self.buffer);
            self.dispatch(data)?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        out.flush()?;
        Ok((out, self.written))
    }

    fn dispatch(&mut self, data: Vec<u8>) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let (reply, result) = channel();
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((data, reply)).is_ok());
        if !sent {
            return Err(io::Error::other("gzip worker pool stopped"));
        }
        self.pending.push_back(result);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(result) = self.pending.pop_front() else {
            return Ok(());
        };
        let member = result
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))??;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        out.write_all(&member)?;
        self.written += member.len() as u64;
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

fn compress(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut enc = gzip::encoder(Vec::with_capacity(data.len() / 3 + 64), level);
    enc.write_all(data)?;
    enc.finish()
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(self.chunk);
        }
        let n = (self.chunk - self.buffer.len()).min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == self.chunk {
            let data = std::mem::take(&mut self.buffer);
            self.dispatch(data)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn compress_all(data: &[u8], chunk: usize, workers: usize) -> Vec<u8> {
        let mut gz = ParallelGz::new(Vec::new(), 6, chunk, workers);
        gz.write_all(data).unwrap();
        gz.finish().unwrap().0
    }

    fn data() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn members_decompress_to_the_input() {
        let input = data();
        let out = compress_all(&input, 100_000, 3);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, input);
    }

    #[test]
    fn output_does_not_depend_on_the_worker_count() {
        let input = data();
        assert_eq!(
            compress_all(&input, 65_536, 1),
            compress_all(&input, 65_536, 4)
        );
    }

    #[test]
    fn empty_input_is_a_valid_gzip_file() {
        let out = compress_all(&[], 1024, 2);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
