//! Parallel gzip: the input is cut into fixed-size chunks, each deflated on
//! a worker thread with a fresh dictionary and ended with a sync flush, and
//! the pieces are joined in order under one gzip header, with the CRC-32s
//! combined. The result is a single gzip member, which matters: the kernel's
//! initramfs unpacker wants every compressed stream to end on a cpio trailer,
//! so an archive must not be split across members.
//!
//! Chunk boundaries depend only on the byte count, so the output is the same
//! whatever the thread timing. Memory is bounded by `2 * workers` chunks in
//! flight.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::DeflateEncoder;
use flate2::Compression;

use super::gzip;

/// Large enough that splitting costs well under 1% of ratio, small enough
/// to keep both cores busy on a small image.
pub const DEFAULT_CHUNK: usize = 4 << 20;

/// A chunk to deflate: its bytes, whether it ends the stream, and where to
/// send the result.
type Job = (Vec<u8>, bool, Sender<io::Result<Piece>>);

/// A deflated chunk and the CRC-32 of its input.
struct Piece {
    deflated: Vec<u8>,
    crc: crc32fast::Hasher,
}

pub struct ParallelGz<W: Write> {
    out: Option<W>,
    chunk: usize,
    buffer: Vec<u8>,
    pending: VecDeque<Receiver<io::Result<Piece>>>,
    crc: crc32fast::Hasher,
    input_len: u64,
    header_written: bool,
    max_pending: usize,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    written: u64,
}

impl<W: Write> ParallelGz<W> {
    pub fn new(out: W, level: u32, chunk: usize, workers: usize) -> Self {
        let workers = workers.max(1);
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..workers)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((data, last, reply)) = job else { return };
                    // Dropped unfinished (an error or a cancelled build):
                    // the queued chunks are not wanted.
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let _ = reply.send(deflate(&data, level, last));
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
            stop,
            written: 0,
            crc: crc32fast::Hasher::new(),
            input_len: 0,
            header_written: false,
        }
    }

    /// Compresses what is still buffered, writes every member in order and
    /// returns the writer with the number of compressed bytes written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        // The last chunk (possibly empty) carries the final deflate block.
        let data = std::mem::take(&mut self.buffer);
        self.dispatch(data, true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        out.write_all(&crc.to_le_bytes())?;
        // ISIZE is the input length modulo 2^32.
        out.write_all(&(self.input_len as u32).to_le_bytes())?;
        out.flush()?;
        Ok((out, self.written + 8))
    }

    fn dispatch(&mut self, data: Vec<u8>, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let (reply, result) = channel();
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((data, last, reply)).is_ok());
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
        let piece = result
            .recv()
            .map_err(|_| io::Error::other("gzip worker stopped"))??;
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip writer already finished"))?;
        if !self.header_written {
            out.write_all(&gzip::HEADER)?;
            self.written += gzip::HEADER.len() as u64;
            self.header_written = true;
        }
        out.write_all(&piece.deflated)?;
        self.written += piece.deflated.len() as u64;
        self.crc.combine(&piece.crc);
        Ok(())
    }
}

impl<W: Write> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.jobs = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Deflates one chunk with a fresh dictionary. A chunk that is not the last
/// ends with a sync flush (byte-aligned, not final), so the next chunk's
/// blocks can follow it directly.
fn deflate(data: &[u8], level: u32, last: bool) -> io::Result<Piece> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(data);
    let mut enc = DeflateEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        Compression::new(level),
    );
    enc.write_all(data)?;
    let deflated = if last {
        enc.finish()?
    } else {
        enc.flush()?;
        std::mem::take(enc.get_mut())
    };
    Ok(Piece { deflated, crc })
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(self.chunk);
        }
        let n = (self.chunk - self.buffer.len()).min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        self.input_len += n as u64;
        if self.buffer.len() == self.chunk {
            let data = std::mem::take(&mut self.buffer);
            self.dispatch(data, false)?;
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
    fn one_member_decompresses_to_the_input() {
        let input = data();
        let out = compress_all(&input, 100_000, 3);
        let mut back = Vec::new();
        // A single-member decoder: the output must not rely on members.
        flate2::read::GzDecoder::new(out.as_slice())
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
        flate2::read::GzDecoder::new(out.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
