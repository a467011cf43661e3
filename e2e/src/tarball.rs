//! Deterministic tar streams and gzip layers.
//!
//! A [`Tree`] is an in-memory file tree. Its tar has entries sorted by path,
//! parents before children, every mtime fixed, uid/gid 0 and no user or
//! group names. [`gzip`] writes a gzip member with mtime 0, no file name and
//! a fixed OS byte, so equal trees give byte-equal layers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use flate2::{Compression, GzBuilder};

/// One node of a [`Tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with its permission bits.
    Dir { mode: u32 },
    /// A regular file.
    File { mode: u32, data: Vec<u8> },
    /// A symbolic link to `target` (stored verbatim).
    Symlink { target: String },
    /// A hard link to the earlier entry `target`.
    Hardlink { target: String },
    /// A character device.
    Char { mode: u32, major: u32, minor: u32 },
    /// A named pipe.
    Fifo { mode: u32 },
    /// A regular file with its own owner.
    Owned {
        mode: u32,
        uid: u64,
        gid: u64,
        data: Vec<u8>,
    },
}

/// How entry names are spelled in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// `bin/busybox`, as image layers spell them.
    Plain,
    /// A `./` entry first, then `./lib/modules/...`, as linuxkit's
    /// `kernel.tar` spells them.
    DotSlash,
}

/// An in-memory file tree that serialises to a deterministic tar.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds (or replaces) `path`, creating missing parent directories 0755.
    /// Leading `/` and `./` are dropped.
    pub fn insert(&mut self, path: &str, node: Node) {
        let path = normalise(path);
        if path.is_empty() {
            return;
        }
        let mut parent = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.nodes
                .entry(parent.clone())
                .or_insert(Node::Dir { mode: 0o755 });
        }
        self.nodes.insert(path, node);
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u32) {
        self.insert(path, Node::Dir { mode });
    }

    /// Adds a regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) {
        self.insert(
            path,
            Node::File {
                mode,
                data: data.into(),
            },
        );
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(
            path,
            Node::Symlink {
                target: target.to_owned(),
            },
        );
    }

    /// Adds a regular file copied from the host, keeping its permission bits.
    pub fn host_file(&mut self, path: &str, host: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let meta = host
            .metadata()
            .with_context(|| format!("cannot stat {}", host.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file", host.display());
        }
        let data =
            std::fs::read(host).with_context(|| format!("cannot read {}", host.display()))?;
        self.file(path, meta.permissions().mode() & 0o7777, data);
        Ok(())
    }

    /// The tree as an uncompressed tar stream.
    pub fn to_tar(&self, names: Names, mtime: u64) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let spell = |path: &str| match names {
            Names::Plain => path.to_owned(),
            Names::DotSlash => format!("./{path}"),
        };
        if names == Names::DotSlash {
            append(&mut builder, "./", &Node::Dir { mode: 0o755 }, mtime)?;
        }
        for (path, node) in &self.nodes {
            let mut name = spell(path);
            if matches!(node, Node::Dir { .. }) {
                name.push('/');
            }
            append(&mut builder, &name, node, mtime)?;
        }
        builder.into_inner().context("cannot finish tar stream")
    }
}

fn normalise(path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else {
            break;
        }
    }
    p.trim_end_matches('/').to_owned()
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    name: &str,
    node: &Node,
    mtime: u64,
) -> anyhow::Result<()> {
    // Names are written byte for byte: the tar crate's path setters would
    // drop the `./` prefix and the trailing `/` of directories.
    let name = name.as_bytes();
    if name.len() > 100 {
        let mut long = fixed_header(tar::EntryType::GNULongName, 0o644, 0);
        set_raw(&mut long.as_old_mut().name, b"././@LongLink")?;
        long.set_size(name.len() as u64 + 1);
        long.set_cksum();
        let mut data = name.to_vec();
        data.push(0);
        builder.append(&long, data.as_slice())?;
    }
    let short = &name[..name.len().min(100)];
    let (kind, mode, data, link): (_, u32, &[u8], &str) = match node {
        Node::Dir { mode } => (tar::EntryType::Directory, *mode, &[], ""),
        Node::File { mode, data } | Node::Owned { mode, data, .. } => {
            (tar::EntryType::Regular, *mode, data, "")
        }
        Node::Symlink { target } => (tar::EntryType::Symlink, 0o777, &[], target),
        Node::Hardlink { target } => (tar::EntryType::Link, 0o644, &[], target),
        Node::Char { mode, .. } => (tar::EntryType::Char, *mode, &[], ""),
        Node::Fifo { mode } => (tar::EntryType::Fifo, *mode, &[], ""),
    };
    let mut header = fixed_header(kind, mode, mtime);
    if let Node::Char { major, minor, .. } = node {
        header.set_device_major(*major)?;
        header.set_device_minor(*minor)?;
    }
    if let Node::Owned { uid, gid, .. } = node {
        header.set_uid(*uid);
        header.set_gid(*gid);
    }
    set_raw(&mut header.as_old_mut().name, short)?;
    set_raw(&mut header.as_old_mut().linkname, link.as_bytes())?;
    header.set_size(data.len() as u64);
    header.set_cksum();
    builder
        .append(&header, data)
        .with_context(|| format!("cannot write tar entry {}", String::from_utf8_lossy(name)))
}

fn fixed_header(kind: tar::EntryType, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_size(0);
    header
}

fn set_raw(slot: &mut [u8], value: &[u8]) -> anyhow::Result<()> {
    if value.len() > slot.len() {
        bail!("tar name {} is too long", String::from_utf8_lossy(value));
    }
    slot.fill(0);
    slot[..value.len()].copy_from_slice(value);
    Ok(())
}

/// The deflate level of every layer. Level 1 is 2.5 times faster than the
/// default in the unoptimised test builds, and the level is part of the
/// recipe: changing it changes every digest.
pub const GZIP_LEVEL: u32 = 1;

/// Gzip with a fixed header: mtime 0, no file name, OS byte 255 (unknown).
pub fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(GZIP_LEVEL));
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar: &[u8]) -> Vec<(String, u64, u64, u64)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn tar_is_sorted_with_parents_and_fixed_metadata() {
        let mut tree = Tree::new();
        tree.file("/usr/bin/z", 0o755, "z");
        tree.symlink("bin/sh", "busybox");
        tree.file("a-b", 0o644, "x");
        let tar = tree.to_tar(Names::Plain, 7).unwrap();
        let names: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            ["a-b", "bin/", "bin/sh", "usr/", "usr/bin/", "usr/bin/z"]
        );
        assert!(entries(&tar)
            .iter()
            .all(|e| e.1 == 7 && e.2 == 0 && e.3 == 0));
    }

    #[test]
    fn dot_slash_names_start_with_the_root_entry() {
        let mut tree = Tree::new();
        tree.file("lib/modules/x/a.ko", 0o644, "k");
        let tar = tree.to_tar(Names::DotSlash, 0).unwrap();
        let names: Vec<String> = entries(&tar).into_iter().map(|e| e.0).collect();
        assert_eq!(names[0], "./");
        assert_eq!(names.last().unwrap(), "./lib/modules/x/a.ko");
    }

    #[test]
    fn long_names_survive() {
        let long = format!("lib/{}/file.ko", "d".repeat(150));
        let mut tree = Tree::new();
        tree.file(&long, 0o644, "k");
        let tar = tree.to_tar(Names::Plain, 0).unwrap();
        assert!(entries(&tar).iter().any(|e| e.0 == long));
    }

    #[test]
    fn gzip_header_is_fixed() {
        let gz = gzip(b"hello").unwrap();
        assert_eq!(&gz[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert_eq!(gz[9], 255);
        assert_eq!(gz, gzip(b"hello").unwrap());
    }
}
