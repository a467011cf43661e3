//! Errors of the image store. Each names the path, digest or reference it
//! concerns, so a CLI can print it as is.

use std::fmt;
use std::path::PathBuf;

use super::{Digest, DigestError};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `renaming`, …).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Blob content does not hash to its name.
    #[error("blob {expected}: content hashes to {actual}")]
    DigestMismatch {
        /// The digest the blob was written or requested as.
        expected: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// Blob content is shorter or longer than its descriptor says.
    #[error("blob {digest}: expected {expected} bytes, got {actual}{}", if *.actual > *.expected { " or more" } else { "" })]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes actually seen (a lower bound when too long).
        actual: u64,
    },
    /// A manifest or other JSON document is bigger than allowed.
    #[error("{what} {digest} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// What the document is (`manifest`, `config`).
        what: &'static str,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A blob that should be present is not.
    #[error("blob {digest} ({role}) is not in the store")]
    BlobMissing {
        /// The blob.
        digest: Digest,
        /// What it is for.
        role: BlobRole,
    },
    /// A JSON document could not be parsed.
    #[error("{what} {location} is not valid: {source}")]
    Json {
        /// What it is (`index.json`, `manifest`).
        what: &'static str,
        /// Path or digest.
        location: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A manifest of a kind kiln cannot use.
    #[error("{digest}: unsupported manifest media type {media_type:?}")]
    UnsupportedManifest {
        /// The manifest blob.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// No `index.json` entry has this name.
    #[error("image {reference} is not in the store")]
    NotFound {
        /// The name looked up.
        reference: String,
    },
    /// Resolving from the store alone failed for one or more images.
    #[error("{} not available offline: {}", plural(.missing.len()), join(.missing))]
    Missing {
        /// One entry per image that could not be resolved.
        missing: Vec<MissingImage>,
    },
    /// An archive being imported is malformed.
    #[error("archive: {0}")]
    Archive(String),
    /// A digest in a file name or document is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// The role a blob plays in an image, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobRole {
    /// An index or manifest list.
    Index,
    /// An image manifest.
    Manifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
    /// Role not known.
    Blob,
}

impl fmt::Display for BlobRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlobRole::Index => "index",
            BlobRole::Manifest => "manifest",
            BlobRole::Config => "config",
            BlobRole::Layer => "layer",
            BlobRole::Blob => "blob",
        })
    }
}

/// One image that could not be resolved from the store alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingImage {
    /// The reference as requested (expanded).
    pub reference: String,
    /// Why.
    pub reason: MissingReason,
}

/// Why an image could not be resolved from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MissingReason {
    /// No entry with this name.
    NotInStore,
    /// The entry exists but has no manifest for the platform.
    NoPlatform {
        /// The platform asked for (`linux/arm64`).
        wanted: String,
        /// Platforms the entry has.
        available: Vec<String>,
    },
    /// A blob of the image is absent.
    BlobMissing {
        /// The blob.
        digest: Digest,
        /// Its role.
        role: BlobRole,
    },
    /// A manifest or config blob is unreadable or malformed.
    Invalid(String),
}

impl fmt::Display for MissingImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.reference)?;
        match &self.reason {
            MissingReason::NotInStore => f.write_str("not in the store")?,
            MissingReason::NoPlatform { wanted, available } => write!(
                f,
                "no {wanted} manifest; stored: {}",
                if available.is_empty() {
                    "none".to_owned()
                } else {
                    available.join(", ")
                }
            )?,
            MissingReason::BlobMissing { digest, role } => write!(f, "{role} {digest} missing")?,
            MissingReason::Invalid(why) => f.write_str(why)?,
        }
        f.write_str(")")
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 image is".to_owned()
    } else {
        format!("{n} images are")
    }
}

fn join(missing: &[MissingImage]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}
