//! `kernel+squashfs`'s image: the collected tree ([`Spooled`]) as a
//! squashfs 4.0 filesystem, written by `backhand` with mksquashfs's
//! defaults (gzip level 9, 128 KiB blocks, tail fragments).
//!
//! The tree is written in path order; every inode keeps the entry's own
//! mode, owner and mtime, and the superblock's time is fixed, so the same
//! entries give the same bytes. Hard links become files with their
//! target's data and metadata: backhand writes no hard links, and its
//! duplicate detection is off because it trusts a 64-bit non-cryptographic
//! hash.

use std::io::{Seek, Write};

use backhand::compression::Compressor;
use backhand::{BackhandError, FilesystemCompressor, FilesystemWriter, NodeHeader};

use super::spool::{Meta, Node, Spooled};

#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    #[error("`{path}`: mtime {mtime} does not fit squashfs's 32-bit times")]
    Mtime { path: String, mtime: u64 },
    #[error("`{path}`: device {major}:{minor} does not fit squashfs's 32-bit device numbers")]
    Device {
        path: String,
        major: u32,
        minor: u32,
    },
    #[error("`{path}`: a squashfs name is at most 256 bytes")]
    NameTooLong { path: String },
    #[error("`{path}`: squashfs cannot store this name: {error}")]
    Name { path: String, error: BackhandError },
    #[error("writing squashfs: {0}")]
    Write(#[from] BackhandError),
}

fn header(path: &str, meta: Meta) -> Result<NodeHeader, SquashfsError> {
    let mtime = u32::try_from(meta.mtime).map_err(|_| SquashfsError::Mtime {
        path: path.to_owned(),
        mtime: meta.mtime,
    })?;
    Ok(NodeHeader::new(meta.mode as u16, meta.uid, meta.gid, mtime))
}

/// The kernel's `new_encode_dev`, as squashfs stores device numbers.
fn rdev(path: &str, major: u32, minor: u32) -> Result<u32, SquashfsError> {
    if major > 0xfff || minor > 0xfffff {
        return Err(SquashfsError::Device {
            path: path.to_owned(),
            major,
            minor,
        });
    }
    Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// Writes `tree` to `out`; `mtime` is the superblock's time.
pub fn write<W: Write + Seek>(tree: &Spooled, mtime: u32, mut out: W) -> Result<W, SquashfsError> {
    let mut fs = FilesystemWriter::default();
    fs.set_time(mtime);
    fs.set_compressor(FilesystemCompressor::new(Compressor::Gzip, None)?);
    fs.set_no_duplicate_files(false);
    let root = header("", tree.dir_meta)?;
    fs.set_root_mode(root.permissions);
    fs.set_root_uid(root.uid);
    fs.set_root_gid(root.gid);
    for (path, item) in &tree.items {
        if path.rsplit('/').next().is_some_and(|n| n.len() > 256) {
            return Err(SquashfsError::NameTooLong { path: path.clone() });
        }
        let h = header(path, item.meta)?;
        let pushed = match &item.node {
            Node::File { offset, len } => fs.push_file(tree.reader(*offset, *len), path, h),
            Node::Dir => fs.push_dir(path, h),
            Node::Symlink(target) => fs.push_symlink(target, path, h),
            Node::Char { major, minor } => {
                fs.push_char_device(rdev(path, *major, *minor)?, path, h)
            }
            Node::Block { major, minor } => {
                fs.push_block_device(rdev(path, *major, *minor)?, path, h)
            }
            Node::Fifo => fs.push_fifo(path, h),
        };
        pushed.map_err(|error| SquashfsError::Name {
            path: path.clone(),
            error,
        })?;
    }
    fs.write(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fs::{Entry, Kind, Sink};

    fn entry(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry::new(path, kind, mode, 1_600_000_000)
    }

    fn image(entries: &[(Entry, &[u8])]) -> Result<Vec<u8>, SquashfsError> {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 7,
        };
        let mut tree = Spooled::new(&dir.path().join("spool"), meta, "squashfs").unwrap();
        for (e, data) in entries {
            let mut e = e.clone();
            e.size = data.len() as u64;
            tree.add(&e, &mut &data[..]).unwrap();
        }
        Ok(write(&tree, 7, std::io::Cursor::new(Vec::new()))?.into_inner())
    }

    #[test]
    fn same_tree_same_bytes_whatever_the_order() {
        let entries = [
            (entry("etc", Kind::Dir, 0o755), &b""[..]),
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
                entry("dev/null", Kind::Char { major: 1, minor: 3 }, 0o666),
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
    fn refuses_what_squashfs_cannot_store() {
        let mut late = entry("t", Kind::File, 0o644);
        late.mtime = 1 << 33;
        assert!(matches!(
            image(&[(late, b"")]),
            Err(SquashfsError::Mtime { .. })
        ));
        let dev = entry(
            "d",
            Kind::Block {
                major: 1 << 13,
                minor: 0,
            },
            0o600,
        );
        assert!(matches!(
            image(&[(dev, b"")]),
            Err(SquashfsError::Device { .. })
        ));
        assert_eq!(
            rdev("x", 8, 0x12345).unwrap(),
            0x45 | (8 << 8) | (0x12300 << 12)
        );
    }
}
