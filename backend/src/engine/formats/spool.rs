//! The entry stream collected as a tar extraction would leave it, for the
//! filesystem-image writers (`squashfs`, the rootfs ISO): a later entry
//! replaces an earlier one of the same path, missing parents are created,
//! hard links resolve to their target. File data goes to an unlinked
//! scratch file and is read back by offset, so nothing holds a whole tree
//! in memory and no file descriptor is held per file.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::engine::fs::{Entry, Kind, Sink};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("`{path}` has extended attributes ({names}); {format} stores none")]
    Xattrs {
        path: String,
        names: String,
        format: &'static str,
    },
    #[error("`{path}` links to `{target}`, which is not an earlier regular file")]
    Hardlink { path: String, target: String },
    #[error("`{path}`: its parent `{parent}` is not a directory")]
    NotADirectory { path: String, parent: String },
    #[error("`{path}`: {got} of {want} bytes")]
    Short { path: String, got: u64, want: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Data at an offset of the spool. Hard links share their target's.
    File {
        offset: u64,
        len: u64,
    },
    Dir,
    Symlink(String),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
}

/// Owner, permission bits (`0o7777`) and mtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub node: Node,
    pub meta: Meta,
}

/// Collects entries into [`Spooled::items`], by path.
pub struct Spooled {
    spool: Arc<File>,
    spool_len: u64,
    /// Given to the root and to parents the stream never named.
    pub dir_meta: Meta,
    pub items: BTreeMap<String, Item>,
    format: &'static str,
}

impl Spooled {
    /// `scratch` names the spool file; it is unlinked at once. `format`
    /// names the writer in errors.
    pub fn new(scratch: &Path, dir_meta: Meta, format: &'static str) -> io::Result<Spooled> {
        let spool = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(scratch)?;
        fs::remove_file(scratch)?;
        Ok(Spooled {
            spool: Arc::new(spool),
            spool_len: 0,
            dir_meta,
            items: BTreeMap::new(),
            format,
        })
    }

    /// A reader of `len` bytes at `offset` of the spool.
    pub fn reader(&self, offset: u64, len: u64) -> SpoolReader {
        SpoolReader {
            spool: Arc::clone(&self.spool),
            at: offset,
            end: offset + len,
        }
    }

    fn insert(&mut self, path: &str, item: Item) -> Result<(), SpoolError> {
        let mut parent = path;
        let mut missing = Vec::new();
        while let Some((p, _)) = parent.rsplit_once('/') {
            parent = p;
            match self.items.get(p) {
                Some(Item {
                    node: Node::Dir, ..
                }) => break,
                Some(_) => {
                    return Err(SpoolError::NotADirectory {
                        path: path.to_owned(),
                        parent: p.to_owned(),
                    })
                }
                None => missing.push(p.to_owned()),
            }
        }
        for dir in missing {
            self.items.insert(
                dir,
                Item {
                    node: Node::Dir,
                    meta: self.dir_meta,
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
        if replaces_dir && item.node != Node::Dir {
            let prefix = format!("{path}/");
            self.items.retain(|k, _| !k.starts_with(&prefix));
        }
        self.items.insert(path.to_owned(), item);
        Ok(())
    }

    fn add_entry(&mut self, entry: &Entry, data: &mut dyn Read) -> Result<(), io::Error> {
        let invalid = |e: SpoolError| io::Error::new(io::ErrorKind::InvalidData, e);
        if !entry.xattrs.is_empty() {
            return Err(invalid(SpoolError::Xattrs {
                path: entry.path.clone(),
                names: entry.xattrs.keys().cloned().collect::<Vec<_>>().join(", "),
                format: self.format,
            }));
        }
        let meta = Meta {
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
        };
        if entry.path.is_empty() {
            return match entry.kind {
                Kind::Dir => {
                    self.dir_meta = meta;
                    Ok(())
                }
                _ => Err(invalid(SpoolError::NotADirectory {
                    path: "/".into(),
                    parent: "/".into(),
                })),
            };
        }
        let node = match &entry.kind {
            Kind::File => {
                let offset = self.spool_len;
                let mut w = io::BufWriter::new(&*self.spool);
                w.seek(io::SeekFrom::Start(offset))?;
                let len = io::copy(&mut data.take(entry.size), &mut w)?;
                w.flush()?;
                if len != entry.size {
                    return Err(invalid(SpoolError::Short {
                        path: entry.path.clone(),
                        got: len,
                        want: entry.size,
                    }));
                }
                self.spool_len += len;
                Node::File { offset, len }
            }
            Kind::Dir => Node::Dir,
            Kind::Symlink { target } => Node::Symlink(target.clone()),
            // The link is its target's inode, so has its mode and owner too.
            Kind::Hardlink { target } => match self.items.get(target.as_str()) {
                Some(
                    item @ Item {
                        node: Node::File { .. },
                        ..
                    },
                ) => {
                    let item = item.clone();
                    return self.insert(&entry.path, item).map_err(invalid);
                }
                _ => {
                    return Err(invalid(SpoolError::Hardlink {
                        path: entry.path.clone(),
                        target: target.clone(),
                    }))
                }
            },
            Kind::Char { major, minor } => Node::Char {
                major: *major,
                minor: *minor,
            },
            Kind::Block { major, minor } => Node::Block {
                major: *major,
                minor: *minor,
            },
            Kind::Fifo => Node::Fifo,
        };
        self.insert(&entry.path, Item { node, meta })
            .map_err(invalid)
    }
}

impl Sink for Spooled {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()> {
        self.add_entry(entry, data)
    }
}

/// One file's bytes in the spool.
pub struct SpoolReader {
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

    fn spooled(entries: &[(Entry, &[u8])]) -> io::Result<Spooled> {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        let mut s = Spooled::new(&dir.path().join("spool"), meta, "test")?;
        for (e, data) in entries {
            let mut e = e.clone();
            e.size = data.len() as u64;
            s.add(&e, &mut &data[..])?;
        }
        Ok(s)
    }

    fn inner(e: io::Error) -> SpoolError {
        *e.into_inner().unwrap().downcast::<SpoolError>().unwrap()
    }

    #[test]
    fn later_entries_win_and_links_share_their_target() {
        let s = spooled(&[
            (entry("etc/motd", Kind::File, 0o644), &b"old"[..]),
            (entry("etc/motd", Kind::File, 0o600), b"new"),
            (
                entry(
                    "etc/link",
                    Kind::Hardlink {
                        target: "etc/motd".into(),
                    },
                    0o777,
                ),
                b"",
            ),
            (entry("d/x", Kind::File, 0o644), b"x"),
            (
                entry(
                    "d",
                    Kind::Symlink {
                        target: "etc".into(),
                    },
                    0o777,
                ),
                b"",
            ),
        ])
        .unwrap();
        let paths: Vec<&str> = s.items.keys().map(String::as_str).collect();
        assert_eq!(paths, ["d", "etc", "etc/link", "etc/motd"]);
        assert_eq!(s.items["etc/link"].node, s.items["etc/motd"].node);
        assert_eq!(s.items["etc/link"].meta.mode, 0o600);
        let Node::File { offset, len } = s.items["etc/motd"].node else {
            panic!()
        };
        let mut data = String::new();
        s.reader(offset, len).read_to_string(&mut data).unwrap();
        assert_eq!(data, "new");
    }

    #[test]
    fn refuses_what_no_image_can_hold() {
        let mut x = entry("bin/ping", Kind::File, 0o755);
        x.xattrs.insert("security.capability".into(), vec![1]);
        let err = inner(spooled(&[(x, b"")]).err().unwrap());
        assert!(matches!(err, SpoolError::Xattrs { .. }));
        let link = entry(
            "a",
            Kind::Hardlink {
                target: "missing".into(),
            },
            0o644,
        );
        let err = inner(spooled(&[(link, b"")]).err().unwrap());
        assert!(matches!(err, SpoolError::Hardlink { .. }));
        let err = inner(
            spooled(&[
                (entry("f", Kind::File, 0o644), &b"x"[..]),
                (entry("f/g", Kind::File, 0o644), b"y"),
            ])
            .err()
            .unwrap(),
        );
        assert!(matches!(err, SpoolError::NotADirectory { .. }));
    }
}
