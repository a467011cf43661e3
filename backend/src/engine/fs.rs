//! The filesystem entry stream every stage of a build shares.
//!
//! Image layers are flattened into [`Entry`] values pushed into a [`Sink`];
//! output formats (tar, cpio initrd, ...) are sinks. Data flows as a reader
//! per entry, so nothing holds a whole file in memory.

use std::collections::BTreeMap;
use std::io::{self, Read};

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink {
        target: String,
    },
    /// A hard link to an earlier entry, by its (prefixed) path.
    Hardlink {
        target: String,
    },
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

/// One filesystem entry. `path` is relative: no leading `/`, no trailing
/// `/`, no `.` or `..` components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    /// Permission bits, including setuid/setgid/sticky (`0o7777` at most).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
    /// Data length; zero for everything but regular files.
    pub size: u64,
    /// Extended attributes, such as `security.capability`.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Provenance PAX records (`LINUXKIT.source`, `LINUXKIT.location`).
    pub provenance: BTreeMap<String, String>,
}

impl Entry {
    /// A root-owned entry with no data, for directories and links the
    /// builder itself creates.
    pub fn new(path: impl Into<String>, kind: Kind, mode: u32, mtime: u64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            xattrs: BTreeMap::new(),
            provenance: BTreeMap::new(),
        }
    }
}

/// Receives entries in order. `data` yields exactly `entry.size` bytes for
/// regular files and nothing otherwise.
pub trait Sink {
    fn add(&mut self, entry: &Entry, data: &mut dyn Read) -> io::Result<()>;
}

/// The mtime linuxkit gives every entry it creates: 2017-04-18 16:30:00 UTC.
pub const LINUXKIT_EPOCH: u64 = 1_492_533_000;
