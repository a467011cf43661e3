//! Errors of key handling and signing. None of them ever carries key
//! material or a password.

use std::path::PathBuf;

/// What went wrong with a key, a signature or a signed document.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The PEM or DER of a key is not what it should be.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The key is well-formed but of a kind kiln does not use.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// An encrypted key did not decrypt: almost always a wrong password.
    #[error("cannot decrypt the private key: wrong password, or the file is damaged")]
    Decrypt,
    /// No password was given and none could be asked for.
    #[error("no password: set {0} or run on a terminal")]
    NoPassword(String),
    /// The random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// A signature does not verify.
    #[error("the signature does not verify with the key {0}")]
    BadSignature(String),
    /// A signature is not a valid ECDSA signature encoding.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
    /// A payload, envelope or bundle is not well-formed.
    #[error("malformed {what}: {message}")]
    Malformed { what: &'static str, message: String },
    /// A payload, envelope or bundle is well-formed but says something else
    /// than expected.
    #[error("{0}")]
    Mismatch(String),
    /// The signer daemon refused or failed a request.
    #[error("signer daemon: {0}")]
    Daemon(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: &'static str, message: impl ToString) -> Self {
        Error::Malformed {
            what,
            message: message.to_string(),
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
