//! `kernel+squashfs`'s image: the entry stream as a squashfs 4.0
//! filesystem, written by `backhand` with mksquashfs's defaults (gzip level
//! 9, 128 KiB blocks, tail fragments).
//!
//! Entries are collected first, as a tar extraction would leave them (a
//! later entry replaces an earlier one of the same path), with their data
//! spooled to an unlinked scratch file; the tree is then written in path
//! order. Every inode keeps the entry's own mode, owner and mtime, and the
//! superblock's time is fixed, so the same entries give the same bytes.
//! Hard links become files with the target's data and metadata: backhand
//! writes no hard links, and its duplicate detection is off because it
//! trusts a 64-bit non-cryptographic hash.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use backhand::compression::Compressor;
use backhand::{BackhandError, FilesystemCompressor, FilesystemWriter, NodeHeader};

use crate::engine::fs::{Entry, Kind, Sink};

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("`{path}` has extended attributes ({names}); kiln's squashfs writer stores none")]
    Xattrs { path: String, names: String },
    #[error("`{path}` links to `{target}`, which is not an earlier regular file")]
    Hardlink { path: String, target: String },
    #[error("`{path}`: its parent `{parent}` is not a directory")]
    NotADirectory { path: String, parent: String },
    #[error("`{path}`: mtime {mtime} does not fit squashfs's 32-bit times")]
    Mtime { path: String, mtime: u64 },
    #[error("`{path}`: device {major}:{minor} does not fit squashfs's 32-bit device numbers")]
    Device {
        path: String,
        major: u32,
        minor: u32,
    },
    #[error("`{path}`: squashfs cannot store this name: {error}")]
    Name { path: String, error: BackhandError },
    #[error("writing squashfs: {0}")]
    Write(#[from] BackhandError),
    #[error("squashfs scratch data: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Clone)]
enum Node {
    /// Data at an offset of the spool.
    File {
        offset: u64,
        len: u64,
    },
    Dir,
    Symlink(String),
    Char(u32),
    Block(u32),
    Fifo,
}

#[derive(Debug, Clone)]
struct Item {
    node: Node,
    header: NodeHeader,
}

/// Collects entries; [`SquashfsSink::finish`] writes the image.
pub struct SquashfsSink {
    spool: Arc<File>,
    spool_len: u64,
    root: NodeHeader,
    items: BTreeMap<String, Item>,
}

impl SquashfsSink {
    /// `scratch` names the spool file; it is unlinked at once. The root
    /// directory gets `root` (mode 0755, owner 0:0 and this mtime).
    pub fn new(scratch: &Path, mtime: u32) -> io::Result<SquashfsSink> {
        let spool = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(scratch)?;
        fs::remove_file(scratch)?;
        Ok(SquashfsSink {
            spool: Arc::new(spool),
            spool_len: 0,
            root: NodeHeader::new(0o755, 0, 0, mtime),
            items: BTreeMap::new(),
        })
    }

    fn insert(&mut self, path: &str, item: Item) -> Result<(), SquashfsError> {
        let mut parent = path;
        let mut missing = Vec::new();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            match self.items.get(p) {
                Some(Item {
                    node: Node::Dir, ..
                }) => break,
                Some(_) => {
                    return Err(SquashfsError::NotADirectory {
                        path: path.to_owned(),
                        parent: p.to_owned(),
                    })
                }
                None => missing.push(p.to_owned()),
            }
        }
        // Directories a stream never named, as tar extraction creates them.
        for dir in missing {
            self.items.insert(
                dir,
                Item {
                    node: Node::Dir,
                    header: self.root,
                },
            );
        }
        let replaces_dir = matches!(
            self.items.get(path),
            Some(Item {
                node: Node::Dir,
                ..
            })
        );
        if replaces_dir && !matches!(item.node, Node::Dir) {
            let prefix = format!("{path}/");
            self.items.retain(|k, _| !k.starts_with(&prefix));
        }
        self.items.insert(path.to_owned(), item);
        Ok(())
    }

    fn add_entry(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<(), SquashfsError> {
        if !entry.xattrs.is_empty() {
            return Err(SquashfsError::Xattrs {
                path: entry.path.clone(),
                names: entry.xattrs.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let mtime = u32::try_from(entry.mtime).map_err(|_| SquashfsError::Mtime {
            path: entry.path.clone(),
            mtime: entry.mtime,
        })?;
        let header = NodeHeader::new((entry.mode & 0o7777) as u16, entry.uid, entry.gid, mtime);
        let device = |major: u32, minor: u32| {
            // The kernel's new_encode_dev, as mksquashfs stores rdev.
            if major > 0xfff || minor > 0xfffff {
                return Err(SquashfsError::Device {
                    path: entry.path.clone(),
                    major,
                    minor,
                });
            }
            Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
        };
        let node = match &entry.kind {
            Kind::File => {
                let offset = self.spool_len;
                let mut w = io::BufWriter::new(&*self.spool);
                w.seek(io::SeekFrom::Start(offset))?;
                let len = io::copy(&mut data.take(entry.size), &mut w)?;
                w.flush()?;
                if len != entry.size {
                    return Err(SquashfsError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("`{}`: {len} of {} bytes", entry.path, entry.size),
                    )));
                }
                self.spool_len += len;
                Node::File { offset, len }
            }
            Kind::Dir => Node::Dir,
            Kind::Symlink { target } => Node::Symlink(target.clone()),
            // The link shares its target's inode, so its mode and owner too.
            Kind::Hardlink { target } => match self.items.get(target.as_str()) {
                Some(
                    item @ Item {
                        node: Node::File { .. },
                        ..
                    },
                ) => {
                    let item = item.clone();
                    return self.insert(&entry.path, item);
                }
                _ => {
                    return Err(SquashfsError::Hardlink {
                        path: entry.path.clone(),
                        target: target.clone(),
                    })
                }
            },
            Kind::Char { major, minor } => Node::Char(device(*major, *minor)?),
            Kind::Block { major, minor } => Node::Block(device(*major, *minor)?),
            Kind::Fifo => Node::Fifo,
        };
        self.insert(&entry.path, Item { node, header })
    }

    /// Writes the image to `out`; `mtime` is the superblock's time.
    pub fn finish<W: Write + Seek>(self, mtime: u32, out: W) -> Result<W, SquashfsError> {
        let mut fs = FilesystemWriter::default();
        fs.set_time(mtime);
        fs.set_compressor(FilesystemCompressor::new(Compressor::Gzip, None)?);
        fs.set_no_duplicate_files(false);
        fs.set_root_mode(self.root.permissions);
        fs.set_root_uid(self.root.uid);
        fs.set_root_gid(self.root.gid);
        for (path, item) in self.items {
            let header = item.header;
            let pushed = match item.node {
                Node::File { offset, len } => fs.push_file(
                    SpoolReader {
                        spool: Arc::clone(&self.spool),
                        at: offset,
                        end: offset + len,
                    },
                    &path,
                    header,
                ),
                Node::Dir => fs.push_dir(&path, header),
                Node::Symlink(target) => fs.push_symlink(target, &path, header),
                Node::Char(rdev) => fs.push_char_device(rdev, &path, header),
                Node::Block(rdev) => fs.push_block_device(rdev, &path, header),
                Node::Fifo => fs.push_fifo(&path, header),
            };
            pushed.map_err(|error| SquashfsError::Name {
                path: path.clone(),
                error,
            })?;
        }
        let mut out = out;
        fs.write(&mut out)?;
        Ok(out)
    }
}

impl Sink for SquashfsSink {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.add_entry(entry, data).map_err(|e| match e {
            SquashfsError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        })
    }
}

/// One file's bytes in the spool, read by offset so that no file
/// descriptor is held per file.
struct SpoolReader {
    spool: Arc<File>,
    at: u64,
    end: u64,
}

impl Read for SpoolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.at) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.spool.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry::new(path, kind, mode, 1_600_000_000)
    }

    fn image(entries: &[(Entry, &[u8])]) -> Result<Vec<u8>, SquashfsError> {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SquashfsSink::new(&dir.path().join("spool"), 7)?;
        for (e, data) in entries {
            let mut e = e.clone();
            e.size = data.len() as u64;
            sink.add_entry(&e, &mut &data[..])?;
        }
        Ok(sink.finish(7, io::Cursor::new(Vec::new()))?.into_inner())
    }

    #[test]
    fn same_entries_same_bytes_and_later_entries_win() {
        let entries = [
            (entry("etc", Kind::Dir, 0o755), &b""[..]),
            (entry("etc/motd", Kind::File, 0o644), b"old"),
            (entry("etc/motd", Kind::File, 0o600), b"new"),
            (
                entry(
                    "etc/link",
                    Kind::Hardlink {
                        target: "etc/motd".into(),
                    },
                    0o600,
                ),
                b"",
            ),
            (
                entry(
                    "usr/bin/sh",
                    Kind::Symlink {
                        target: "busybox".into(),
                    },
                    0o777,
                ),
                b"",
            ),
        ];
        let a = image(&entries).unwrap();
        assert_eq!(a, image(&entries).unwrap());
        assert_eq!(&a[..4], b"hsqs");
        let mut reordered = entries.clone();
        reordered.swap(3, 4);
        assert_eq!(a, image(&reordered).unwrap());
    }

    #[test]
    fn refuses_what_it_cannot_store() {
        let mut x = entry("bin/ping", Kind::File, 0o755);
        x.xattrs.insert("security.capability".into(), vec![1, 2, 3]);
        assert!(matches!(
            image(&[(x, b"")]),
            Err(SquashfsError::Xattrs { .. })
        ));
        let link = entry(
            "a",
            Kind::Hardlink {
                target: "missing".into(),
            },
            0o644,
        );
        assert!(matches!(
            image(&[(link, b"")]),
            Err(SquashfsError::Hardlink { .. })
        ));
        let under_file = [
            (entry("f", Kind::File, 0o644), &b"x"[..]),
            (entry("f/g", Kind::File, 0o644), b"y"),
        ];
        assert!(matches!(
            image(&under_file),
            Err(SquashfsError::NotADirectory { .. })
        ));
        let mut late = entry("t", Kind::File, 0o644);
        late.mtime = 1 << 33;
        assert!(matches!(
            image(&[(late, b"")]),
            Err(SquashfsError::Mtime { .. })
        ));
    }
}
