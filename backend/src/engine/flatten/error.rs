//! Typed flattening errors. Every error names the image, and the layer and
//! path when there is one, so a rejected build says exactly what was wrong.

use std::error::Error as StdError;
use std::fmt;
use std::io;

/// Which configurable limit was hit (see [`super::FlattenOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Uncompressed bytes of all layers of the image, or declared file data.
    TotalBytes,
    /// Uncompressed / compressed bytes of one layer.
    Ratio,
    /// Tar headers of all layers of the image.
    Entries,
    /// Bytes in one path or link target.
    PathLength,
    /// PAX, GNU long-name and global headers in front of one entry.
    MetadataBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::TotalBytes => "total uncompressed bytes",
            Limit::Ratio => "compression ratio",
            Limit::Entries => "number of entries",
            Limit::PathLength => "path length",
            Limit::MetadataBytes => "metadata bytes per entry",
        })
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlattenErrorKind {
    /// The layer blob could not be opened.
    #[error("cannot open the layer: {0}")]
    Open(#[source] io::Error),
    /// Reading the layer blob failed.
    #[error("reading the layer failed: {0}")]
    Read(#[source] io::Error),
    /// A compression kiln does not read (xz, bzip2, lz4).
    #[error(
        "the layer is {0}-compressed; only gzip, zstd and uncompressed tar layers are supported"
    )]
    UnsupportedCompression(&'static str),
    /// The gzip or zstd stream is corrupt.
    #[error("corrupt {compression} stream: {source}")]
    Decompress {
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    /// A malformed tar header or structure.
    #[error("corrupt tar: {0}")]
    CorruptTar(String),
    /// The layer ended inside an entry's data or header.
    #[error("truncated layer: {0}")]
    Truncated(String),
    /// A name is not valid UTF-8 (kiln rejects rather than mangles them).
    #[error("the {0} is not valid UTF-8")]
    NonUtf8(&'static str),
    /// A name contains a NUL byte or is otherwise unusable.
    #[error("invalid {what}: {reason}")]
    InvalidName {
        what: &'static str,
        reason: &'static str,
    },
    /// `..` components climb above the image root.
    #[error("the path escapes the image root")]
    PathEscapes,
    /// A hard-link target climbs above the image root.
    #[error("the hard-link target {target:?} escapes the image root")]
    LinkEscapes { target: String },
    /// A hard link whose target has not been written (yet) by this image.
    #[error("hard link to {target:?}, which is not in the output before it (missing, hidden, dropped, or only in a lower layer)")]
    HardlinkTargetMissing { target: String },
    /// A hard link to a directory.
    #[error("hard link to the directory {target:?}")]
    HardlinkToDirectory { target: String },
    /// A hard link to itself.
    #[error("hard link to itself")]
    HardlinkToSelf,
    /// A whiteout that names nothing (`.wh.`, `.wh..`, `.wh...`).
    #[error("whiteout entry names no file")]
    InvalidWhiteout,
    /// A parent directory of the entry is a non-directory earlier in the
    /// same layer; writing below it would go through a symlink or file.
    #[error("its parent {ancestor:?} is not a directory in the same layer (writing below it could escape through a symlink)")]
    AncestorNotDirectory { ancestor: String },
    /// A non-directory replaces a directory that already has entries below
    /// it in the same layer, so the result would depend on the extractor.
    #[error("a non-directory replaces a directory that already has entries in the same layer")]
    PathConflict,
    /// The image root (`./`) is not a directory.
    #[error("the image root entry is not a directory")]
    RootNotDirectory,
    /// A device node where the role does not allow them.
    #[error("{kind} device {major}:{minor} is not allowed in {role} images (FlattenOptions::allow_devices)")]
    DeviceNotAllowed {
        kind: &'static str,
        major: u32,
        minor: u32,
        role: &'static str,
    },
    /// A tar entry type kiln does not write (sparse, multi-volume, …).
    #[error("unsupported tar entry type {0:?}")]
    UnsupportedEntryType(char),
    /// A PAX record kiln does not implement (PAX sparse files).
    #[error("unsupported PAX record {0:?}")]
    UnsupportedPax(String),
    /// A non-regular entry that carries data.
    #[error("a {kind} entry declares {size} bytes of data")]
    DataOnNonFile { kind: &'static str, size: u64 },
    /// A uid or gid beyond 32 bits.
    #[error("{what} {value} does not fit in 32 bits")]
    IdOutOfRange { what: &'static str, value: u64 },
    /// A configured limit was exceeded.
    #[error("{limit} limit exceeded ({value} > {max})")]
    LimitExceeded { limit: Limit, value: u64, max: u64 },
    /// The destination prefix is not a clean relative path.
    #[error("invalid destination prefix {0:?}")]
    InvalidPrefix(String),
    /// The sink failed.
    #[error("writing the output failed: {0}")]
    Sink(#[source] io::Error),
}

/// A flattening failure with its context.
#[derive(Debug)]
pub struct FlattenError {
    /// The image reference (the `LINUXKIT.source` value).
    pub image: String,
    /// The layer (its digest, or a label) when the error is inside one.
    pub layer: Option<String>,
    /// The entry name as stored in the layer (lossy UTF-8), when known.
    pub path: Option<String>,
    /// What went wrong.
    pub kind: FlattenErrorKind,
}

impl FlattenError {
    pub(crate) fn new(image: &str, kind: FlattenErrorKind) -> Self {
        FlattenError {
            image: image.to_owned(),
            layer: None,
            path: None,
            kind,
        }
    }

    /// The limit hit, if this is a limit error.
    pub fn limit(&self) -> Option<Limit> {
        match self.kind {
            FlattenErrorKind::LimitExceeded { limit, .. } => Some(limit),
            _ => None,
        }
    }
}

impl fmt::Display for FlattenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image {}", self.image)?;
        if let Some(layer) = &self.layer {
            write!(f, ", layer {layer}")?;
        }
        if let Some(path) = &self.path {
            write!(f, ", entry {path:?}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl StdError for FlattenError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.kind.source()
    }
}
