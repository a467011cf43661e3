//! Errors of pulling images. Every variant names the image reference, and
//! the digest or tag involved, so the message alone says what failed where.

use std::sync::Arc;

use crate::engine::store::{Digest, StoreError};

/// Why pulling failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// No connection to the registry (DNS, refused, TLS, timeout).
    #[error("{reference}: cannot reach registry {registry}: {message}")]
    Unreachable {
        /// The image.
        reference: String,
        /// The registry (or mirror) host.
        registry: String,
        /// The underlying error.
        message: String,
    },
    /// Credentials were refused or a token could not be obtained.
    #[error("{reference}: authentication with {registry} failed: {message}")]
    Auth {
        /// The image.
        reference: String,
        /// The registry (or mirror) host.
        registry: String,
        /// The underlying error.
        message: String,
    },
    /// The registry does not know the tag or manifest digest.
    #[error("{reference}: manifest {target} not found in {registry} (unknown tag or digest)")]
    ManifestNotFound {
        /// The image.
        reference: String,
        /// The tag or digest asked for.
        target: String,
        /// The registry (or mirror) host.
        registry: String,
    },
    /// The registry does not have a blob the manifest names.
    #[error("{reference}: blob {digest} not found in registry {registry}")]
    BlobNotFound {
        /// The image.
        reference: String,
        /// The blob.
        digest: Digest,
        /// The registry (or mirror) host.
        registry: String,
    },
    /// Any other unexpected HTTP status.
    #[error("{reference}: {what} {target}: registry {registry} answered HTTP {status}{}", detail(.message))]
    Http {
        /// The image.
        reference: String,
        /// `manifest` or `blob`.
        what: &'static str,
        /// The tag or digest.
        target: String,
        /// The registry (or mirror) host.
        registry: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        message: String,
    },
    /// A manifest over the size limit.
    #[error("{reference}: manifest {target} is larger than the {limit}-byte limit{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    ManifestTooLarge {
        /// The image.
        reference: String,
        /// The tag or digest.
        target: String,
        /// The limit.
        limit: u64,
        /// The announced size, if the registry sent one.
        size: Option<u64>,
    },
    /// Content does not hash to the digest it was asked for or announced with.
    #[error("{reference}: {what} {expected} has the wrong content: it hashes to {actual}")]
    DigestMismatch {
        /// The image.
        reference: String,
        /// `manifest` or `blob`.
        what: &'static str,
        /// The digest asked for.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// The transfer ended before all bytes arrived.
    #[error("{reference}: blob {digest} is truncated: got {received} of {expected} bytes")]
    Truncated {
        /// The image.
        reference: String,
        /// The blob.
        digest: Digest,
        /// Bytes received.
        received: u64,
        /// Bytes the descriptor promises.
        expected: u64,
    },
    /// More bytes arrived (or were announced) than the descriptor allows.
    #[error("{reference}: blob {digest} is longer than the {expected} bytes its descriptor states{}", announced.map(|s| format!(" (registry announced {s})")).unwrap_or_default())]
    TooLong {
        /// The image.
        reference: String,
        /// The blob.
        digest: Digest,
        /// Bytes the descriptor promises.
        expected: u64,
        /// `Content-Length`, when that is what gave it away.
        announced: Option<u64>,
    },
    /// An index without a manifest for a requested platform.
    #[error("{reference}: index {digest} has no manifest for {wanted}; it has {}", list(.available))]
    PlatformNotFound {
        /// The image.
        reference: String,
        /// The index.
        digest: Digest,
        /// The platforms asked for that are missing.
        wanted: String,
        /// The platforms it has.
        available: Vec<String>,
    },
    /// A manifest kiln cannot use (schema 1, unknown media type, …).
    #[error("{reference}: manifest {target} has unsupported media type {media_type:?}")]
    UnsupportedManifest {
        /// The image.
        reference: String,
        /// The tag or digest.
        target: String,
        /// Its media type.
        media_type: String,
    },
    /// A manifest that is not valid JSON or lacks required fields.
    #[error("{reference}: manifest {target} is invalid: {message}")]
    InvalidManifest {
        /// The image.
        reference: String,
        /// The tag or digest.
        target: String,
        /// What is wrong.
        message: String,
    },
    /// The connection failed mid-transfer for another reason.
    #[error("{reference}: transfer of {target} failed: {message}")]
    Transport {
        /// The image.
        reference: String,
        /// The tag or digest.
        target: String,
        /// The underlying error.
        message: String,
    },
    /// Writing to the store failed.
    #[error("{reference}: {source}")]
    Store {
        /// The image (or the store path, for store-wide failures).
        reference: String,
        /// The store error.
        #[source]
        source: Arc<StoreError>,
    },
    /// The registry settings cannot be used (for example a malformed CA
    /// certificate); no image was attempted.
    #[error("registry settings: {message}")]
    InvalidConfig {
        /// What is wrong.
        message: String,
    },
    /// Several images failed; each error is complete on its own.
    #[error("{} images failed to pull:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Multiple(Vec<PullError>),
    /// A background task died (a bug, reported rather than propagated as a panic).
    #[error("{reference}: internal error: {message}")]
    Internal {
        /// The image.
        reference: String,
        /// What happened.
        message: String,
    },
}

impl PullError {
    /// The individual errors (one, or those inside [`PullError::Multiple`]).
    pub fn errors(&self) -> Vec<&PullError> {
        match self {
            PullError::Multiple(all) => all.iter().collect(),
            one => vec![one],
        }
    }

    /// The image the error is about (`None` for [`PullError::Multiple`]).
    pub fn reference(&self) -> Option<&str> {
        match self {
            PullError::Unreachable { reference, .. }
            | PullError::Auth { reference, .. }
            | PullError::ManifestNotFound { reference, .. }
            | PullError::BlobNotFound { reference, .. }
            | PullError::Http { reference, .. }
            | PullError::ManifestTooLarge { reference, .. }
            | PullError::DigestMismatch { reference, .. }
            | PullError::Truncated { reference, .. }
            | PullError::TooLong { reference, .. }
            | PullError::PlatformNotFound { reference, .. }
            | PullError::UnsupportedManifest { reference, .. }
            | PullError::InvalidManifest { reference, .. }
            | PullError::Transport { reference, .. }
            | PullError::Store { reference, .. }
            | PullError::Internal { reference, .. } => Some(reference),
            PullError::Multiple(_) | PullError::InvalidConfig { .. } => None,
        }
    }

    /// The same error about another image (a failure shared by several
    /// images, such as an unreachable registry or a bad shared blob).
    pub(crate) fn retarget(&self, image: &str) -> PullError {
        let mut e = self.clone();
        match &mut e {
            PullError::Unreachable { reference, .. }
            | PullError::Auth { reference, .. }
            | PullError::ManifestNotFound { reference, .. }
            | PullError::BlobNotFound { reference, .. }
            | PullError::Http { reference, .. }
            | PullError::ManifestTooLarge { reference, .. }
            | PullError::DigestMismatch { reference, .. }
            | PullError::Truncated { reference, .. }
            | PullError::TooLong { reference, .. }
            | PullError::PlatformNotFound { reference, .. }
            | PullError::UnsupportedManifest { reference, .. }
            | PullError::InvalidManifest { reference, .. }
            | PullError::Transport { reference, .. }
            | PullError::Store { reference, .. }
            | PullError::Internal { reference, .. } => *reference = image.to_owned(),
            PullError::Multiple(_) | PullError::InvalidConfig { .. } => {}
        }
        e
    }

    /// Combines per-image errors into one.
    pub(crate) fn combine(mut errors: Vec<PullError>) -> Option<PullError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(PullError::Multiple(errors)),
        }
    }
}

fn detail(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
