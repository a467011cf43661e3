//! Who signs: the key in this process, or the signer daemon behind a socket.

use std::path::Path;

use crate::error::Result;
use crate::keys::{Password, PrivateKey, PublicKey};

/// Something that signs payloads with one ECDSA P-256 key without handing
/// the key out.
pub trait Signer: Send + Sync {
    /// The public half of the signing key.
    fn public_key(&self) -> &PublicKey;
    /// An ECDSA-SHA256 signature of `payload`, ASN.1 DER.
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>>;
}

/// Signs in this process (the default).
#[derive(Debug)]
pub struct InProcessSigner {
    key: PrivateKey,
}

impl InProcessSigner {
    pub fn new(key: PrivateKey) -> Self {
        InProcessSigner { key }
    }

    /// Loads a key file, asking `password` only for an encrypted key.
    pub fn load(path: &Path, password: impl FnOnce() -> Result<Password>) -> Result<Self> {
        PrivateKey::load(path, password).map(Self::new)
    }
}

impl Signer for InProcessSigner {
    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        Ok(self.key.sign(payload))
    }
}
