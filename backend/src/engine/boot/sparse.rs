//! A disk image held as its non-zero blocks only: the filesystem writers
//! seek and write into it, and the container formats (raw, qcow2, VHD,
//! VMDK) read back just the allocated parts, so a 1 GiB disk with a 60 MiB
//! ESP costs 60 MiB of memory and no time for the zeros.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Granularity of allocation. Every container's cluster/grain/block size
/// is a multiple of it.
pub const BLOCK: u64 = 4096;

/// A disk of fixed `len` bytes; unwritten blocks read as zeros. Written
/// blocks are kept even if zero (checking costs more than it saves).
#[derive(Debug, Clone)]
pub struct SparseDisk {
    len: u64,
    blocks: BTreeMap<u64, Box<[u8]>>,
    pos: u64,
}

impl SparseDisk {
    pub fn new(len: u64) -> SparseDisk {
        SparseDisk {
            len,
            blocks: BTreeMap::new(),
            pos: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `data` at `offset`; fails past the end.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset + data.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "write of {} bytes at {offset} past the disk's end ({})",
                    data.len(),
                    self.len
                ),
            ));
        }
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min(data.len() - done);
            let chunk = &data[done..done + n];
            match self.blocks.get_mut(&index) {
                Some(block) => block[within..within + n].copy_from_slice(chunk),
                None => {
                    let mut block = vec![0u8; BLOCK as usize].into_boxed_slice();
                    block[within..within + n].copy_from_slice(chunk);
                    self.blocks.insert(index, block);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Fills `buf` from `offset`; bytes past the end read as zeros.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / BLOCK;
            let within = (at % BLOCK) as usize;
            let n = (BLOCK as usize - within).min(buf.len() - done);
            match self.blocks.get(&index) {
                Some(block) => buf[done..done + n].copy_from_slice(&block[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Whether the `size` bytes at `offset` (a multiple of [`BLOCK`]) hold
    /// anything but zeros.
    pub fn has_data(&self, offset: u64, size: u64) -> bool {
        let first = offset / BLOCK;
        let last = (offset + size).div_ceil(BLOCK);
        self.blocks
            .range(first..last)
            .any(|(_, b)| b.iter().any(|x| *x != 0))
    }

    /// Writes the whole disk to `path`, leaving holes for zero blocks.
    pub fn write_raw(&self, path: &Path) -> io::Result<()> {
        let file = File::create(path)?;
        file.set_len(self.len)?;
        for (index, block) in &self.blocks {
            let at = index * BLOCK;
            let n = (self.len - at).min(BLOCK) as usize;
            file.write_all_at(&block[..n], at)?;
        }
        Ok(())
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        self.read_at(self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SparseDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_at(self.pos, buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// A window of a [`SparseDisk`], e.g. one partition, as its own stream.
#[derive(Debug)]
pub struct Window<'a> {
    disk: &'a mut SparseDisk,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(disk: &'a mut SparseDisk, start: u64, len: u64) -> Window<'a> {
        Window {
            disk,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        self.disk.read_at(self.start + self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        self.disk.write_at(self.start + self.pos, buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_was_written_and_zeros_elsewhere() {
        let mut d = SparseDisk::new(3 * BLOCK + 100);
        d.write_at(BLOCK - 2, &[1, 2, 3, 4]).unwrap();
        let mut buf = [9u8; 6];
        d.read_at(BLOCK - 3, &mut buf);
        assert_eq!(buf, [0, 1, 2, 3, 4, 0]);
        assert!(d.has_data(0, BLOCK));
        assert!(!d.has_data(2 * BLOCK, BLOCK));
        assert!(d.write_at(3 * BLOCK + 99, &[1, 1]).is_err());
        assert_eq!(d.blocks.len(), 2);
    }
}
