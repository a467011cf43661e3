//! Signing a manifest: a DSSE envelope whose payload is exactly the bytes
//! of `NAME-measurements.json`, so a one-byte change to that file (or to
//! the envelope) fails verification.

use kiln_signer::dsse::Envelope;
use kiln_signer::{PublicKey, Signer};

use super::manifest::{Manifest, ManifestError, PAYLOAD_TYPE};

#[derive(Debug, thiserror::Error)]
pub enum SignedError {
    #[error(transparent)]
    Signer(#[from] kiln_signer::Error),
    #[error("the envelope's payloadType is `{0}`, not `{PAYLOAD_TYPE}`")]
    PayloadType(String),
    #[error("the manifest file differs from the payload the envelope signs")]
    NotThePayload,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Signs the manifest bytes.
pub fn sign(manifest_bytes: &[u8], signer: &dyn Signer) -> Result<Envelope, SignedError> {
    Ok(Envelope::sign(signer, PAYLOAD_TYPE, manifest_bytes)?)
}

/// Verifies `envelope` with one of `keys`; when `manifest_bytes` is given
/// it must be exactly the signed payload. Returns the manifest and the key
/// that verified it.
pub fn verify<'k>(
    envelope: &Envelope,
    manifest_bytes: Option<&[u8]>,
    keys: &'k [PublicKey],
) -> Result<(Manifest, &'k PublicKey), SignedError> {
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(SignedError::PayloadType(envelope.payload_type.clone()));
    }
    let (key, payload) = envelope.verify(keys)?;
    if manifest_bytes.is_some_and(|m| m != payload.as_slice()) {
        return Err(SignedError::NotThePayload);
    }
    Ok((Manifest::parse(&payload)?, key))
}
