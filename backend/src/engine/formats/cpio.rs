//! newc cpio, the initramfs format, written from the entry stream.
//!
//! Entries map one to one as linuxkit maps them: inode numbers count up from
//! 721, directories have two links, device numbers are 3/1, and a hard link
//! becomes a symlink relative to its own directory (the kernel's unpacker
//! only links files it has already seen with the same inode, which a stream
//! that drops duplicates cannot promise).

use std::io::{self, Read, Write};

use cpio::newc::Builder;

use crate::engine::fs::{Entry, Kind, Sink};

const FIRST_INODE: u32 = 721;

const S_IFIFO: u32 = 0o010000;
const S_IFCHR: u32 = 0o020000;
const S_IFDIR: u32 = 0o040000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

pub struct CpioSink<W: Write> {
    out: Option<W>,
    inode: u32,
    written: u64,
}

impl<W: Write> CpioSink<W> {
    pub fn new(out: W) -> Self {
        CpioSink {
            out: Some(out),
            inode: FIRST_INODE,
            written: 0,
        }
    }

    /// Writes the `TRAILER!!!` entry, pads to 512 bytes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        let out = self.take()?;
        let mut counter = Counting {
            inner: out,
            count: self.written,
        };
        counter = cpio::newc::trailer(counter)?;
        let pad = (512 - counter.count % 512) % 512;
        counter.write_all(&vec![0; pad as usize])?;
        Ok(counter.inner)
    }

    fn take(&mut self) -> io::Result<W> {
        self.out
            .take()
            .ok_or_else(|| io::Error::other("cpio writer used after an error"))
    }
}

impl<W: Write> Sink for CpioSink<W> {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        let perm = entry.mode & 0o7777;
        let (kind, nlink, rdev, body): (u32, u32, (u32, u32), Option<String>) = match &entry.kind {
            Kind::File => (S_IFREG, 1, (0, 0), None),
            Kind::Dir => (S_IFDIR, 2, (0, 0), None),
            Kind::Symlink { target } => (S_IFLNK, 1, (0, 0), Some(target.clone())),
            Kind::Hardlink { target } => (
                S_IFLNK,
                1,
                (0, 0),
                Some(relative_target(&entry.path, target)),
            ),
            Kind::Char { major, minor } => (S_IFCHR, 1, (*major, *minor), None),
            Kind::Block { major, minor } => (S_IFBLK, 1, (*major, *minor), None),
            Kind::Fifo => (S_IFIFO, 1, (0, 0), None),
        };
        let size = match &body {
            Some(target) => target.len() as u64,
            None if kind == S_IFREG => entry.size,
            None => 0,
        };
        let size32 = u32::try_from(size).map_err(|_| {
            io::Error::other(format!(
                "{} is {size} bytes; newc cpio holds at most 4 GiB per file",
                entry.path
            ))
        })?;
        let builder = Builder::new(&entry.path)
            .ino(self.inode)
            .mode(kind | perm)
            .uid(entry.uid)
            .gid(entry.gid)
            .nlink(nlink)
            .mtime(u32::try_from(entry.mtime).unwrap_or(u32::MAX))
            .dev_major(3)
            .dev_minor(1)
            .rdev_major(rdev.0)
            .rdev_minor(rdev.1);
        self.inode = self.inode.wrapping_add(1);
        let out = self.take()?;
        let counting = Counting {
            inner: out,
            count: self.written,
        };
        let mut writer = builder.write(counting, size32);
        match body {
            Some(target) => writer.write_all(target.as_bytes())?,
            None if kind == S_IFREG => {
                let copied = io::copy(&mut data.take(size), &mut writer)?;
                if copied != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{}: expected {size} bytes, got {copied}", entry.path),
                    ));
                }
            }
            None => {}
        }
        let counting = writer.finish()?;
        self.written = counting.count;
        self.out = Some(counting.inner);
        Ok(())
    }
}

/// A hard link's target as a symlink relative to the link's directory.
fn relative_target(link: &str, target: &str) -> String {
    let link_dir: Vec<&str> = link.split('/').filter(|s| !s.is_empty()).collect();
    let link_dir = &link_dir[..link_dir.len().saturating_sub(1)];
    let target: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
    let common = link_dir
        .iter()
        .zip(&target)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<&str> = vec![".."; link_dir.len() - common];
    parts.extend(&target[common..]);
    parts.join("/")
}

/// Counts bytes written, for the final 512-byte padding.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_become_relative_symlinks() {
        assert_eq!(relative_target("usr/bin/a", "usr/bin/b"), "b");
        assert_eq!(relative_target("usr/bin/a", "usr/lib/x/b"), "../lib/x/b");
        assert_eq!(relative_target("a", "b/c"), "b/c");
    }

    #[test]
    fn writes_a_newc_archive_the_reader_accepts() {
        let mut sink = CpioSink::new(Vec::new());
        let mut file = Entry::new("bin/sh", Kind::File, 0o755, 7);
        file.size = 4;
        sink.add(&Entry::new("bin", Kind::Dir, 0o755, 7), &mut io::empty())
            .unwrap();
        sink.add(&file, &mut &b"#!sh"[..]).unwrap();
        let link = Entry::new(
            "bin/ash",
            Kind::Hardlink {
                target: "bin/sh".into(),
            },
            0o755,
            7,
        );
        sink.add(&link, &mut io::empty()).unwrap();
        let bytes = sink.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(&bytes[..6], b"070701");

        let mut listing = Vec::new();
        let mut rest = bytes.as_slice();
        loop {
            let mut reader = cpio::newc::Reader::new(rest).unwrap();
            let e = reader.entry();
            if e.is_trailer() {
                break;
            }
            let (name, ino, mode, nlink) = (e.name().to_owned(), e.ino(), e.mode(), e.nlink());
            let mut body = Vec::new();
            reader.read_to_end(&mut body).unwrap();
            listing.push((name, ino, mode, nlink, body));
            rest = reader.finish().unwrap();
        }
        assert_eq!(listing[0], ("bin".into(), 721, 0o040755, 2, vec![]));
        assert_eq!(
            listing[1],
            ("bin/sh".into(), 722, 0o100755, 1, b"#!sh".to_vec())
        );
        assert_eq!(
            listing[2],
            ("bin/ash".into(), 723, 0o120755, 1, b"sh".to_vec())
        );
    }

    #[test]
    fn short_data_is_an_error_not_a_corrupt_archive() {
        let mut sink = CpioSink::new(Vec::new());
        let mut file = Entry::new("f", Kind::File, 0o644, 0);
        file.size = 10;
        assert!(sink.add(&file, &mut &b"abc"[..]).is_err());
    }
}
