//! Sigstore bundles (v0.3) for key-based signatures: a message signature
//! over a blob, or a DSSE envelope. The key is named by a hint (kiln writes
//! the key's fingerprint); verifiers pick the key by it, as sigstore-js
//! does with a key selector. No transparency log entries or timestamps are
//! written.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::dsse::{describe_keys, Envelope};
use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::signer::Signer;

/// Media type of a v0.3 bundle.
pub const MEDIA_TYPE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Older media types, still read.
pub const MEDIA_TYPES_READ: [&str; 3] = [
    MEDIA_TYPE_V03,
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
];
/// Largest bundle kiln parses.
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_signature: Option<MessageSignature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    /// Present in keyless bundles; kiln keeps it but does not verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<serde_json::Value>,
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyIdentifier {
    #[serde(default)]
    pub hint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSignature {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_digest: Option<HashOutput>,
    /// The signature, base64.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashOutput {
    /// `SHA2_256`.
    pub algorithm: String,
    /// The digest, base64.
    pub digest: String,
}

fn material(signer: &dyn Signer) -> VerificationMaterial {
    VerificationMaterial {
        public_key: Some(PublicKeyIdentifier {
            hint: signer.public_key().fingerprint().to_owned(),
        }),
        certificate: None,
        x509_certificate_chain: None,
        tlog_entries: Vec::new(),
        timestamp_verification_data: None,
    }
}

impl Bundle {
    /// Signs `data` (ECDSA-SHA256 over the data itself) into a bundle.
    pub fn sign_blob(signer: &dyn Signer, data: &[u8]) -> Result<Self> {
        let signature = signer.sign(data)?;
        Ok(Bundle {
            media_type: MEDIA_TYPE_V03.to_owned(),
            verification_material: material(signer),
            message_signature: Some(MessageSignature {
                message_digest: Some(HashOutput {
                    algorithm: "SHA2_256".to_owned(),
                    digest: STANDARD.encode(Sha256::digest(data)),
                }),
                signature: STANDARD.encode(signature),
            }),
            dsse_envelope: None,
        })
    }

    /// Signs `payload` as a DSSE envelope inside a bundle.
    pub fn sign_dsse(signer: &dyn Signer, payload_type: &str, payload: &[u8]) -> Result<Self> {
        Ok(Bundle {
            media_type: MEDIA_TYPE_V03.to_owned(),
            verification_material: material(signer),
            message_signature: None,
            dsse_envelope: Some(Envelope::sign(signer, payload_type, payload)?),
        })
    }

    /// Parses a bundle and checks its shape: a known media type, exactly
    /// one of message signature and DSSE envelope, well-formed base64.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return Err(Error::malformed(
                "sigstore bundle",
                format!("{} bytes; at most {MAX_BUNDLE_BYTES}", bytes.len()),
            ));
        }
        let bundle: Bundle =
            serde_json::from_slice(bytes).map_err(|e| Error::malformed("sigstore bundle", e))?;
        if !MEDIA_TYPES_READ.contains(&bundle.media_type.as_str()) {
            return Err(Error::malformed(
                "sigstore bundle",
                format!("unknown mediaType `{}`", bundle.media_type),
            ));
        }
        match (&bundle.message_signature, &bundle.dsse_envelope) {
            (Some(m), None) => {
                STANDARD
                    .decode(&m.signature)
                    .map_err(|e| Error::malformed("sigstore bundle", format!("signature: {e}")))?;
                if let Some(d) = &m.message_digest {
                    STANDARD.decode(&d.digest).map_err(|e| {
                        Error::malformed("sigstore bundle", format!("message digest: {e}"))
                    })?;
                }
            }
            (None, Some(e)) => {
                Envelope::from_json(&e.to_json())?;
            }
            _ => {
                return Err(Error::malformed(
                    "sigstore bundle",
                    "it must hold exactly one of messageSignature and dsseEnvelope",
                ))
            }
        }
        Ok(bundle)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The key hint, if any.
    pub fn key_hint(&self) -> Option<&str> {
        self.verification_material
            .public_key
            .as_ref()
            .map(|k| k.hint.as_str())
            .filter(|h| !h.is_empty())
    }

    fn require_key_based(&self) -> Result<()> {
        let m = &self.verification_material;
        if m.certificate.is_some() || m.x509_certificate_chain.is_some() {
            return Err(Error::Mismatch(
                "the bundle is certificate-based (keyless); kiln verifies key-based bundles only"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Verifies a message-signature bundle over `data` with one of `keys`;
    /// returns the key that verified.
    pub fn verify_blob<'k>(&self, data: &[u8], keys: &'k [PublicKey]) -> Result<&'k PublicKey> {
        self.require_key_based()?;
        let Some(m) = &self.message_signature else {
            return Err(Error::Mismatch(
                "the bundle holds a DSSE envelope, not a message signature".to_owned(),
            ));
        };
        if let Some(d) = &m.message_digest {
            if d.algorithm != "SHA2_256" {
                return Err(Error::Mismatch(format!(
                    "unsupported message digest algorithm `{}`",
                    d.algorithm
                )));
            }
            let stated = STANDARD
                .decode(&d.digest)
                .map_err(|e| Error::malformed("sigstore bundle", format!("message digest: {e}")))?;
            if stated != Sha256::digest(data).as_slice() {
                return Err(Error::Mismatch(
                    "the bundle's message digest is not the SHA-256 of the data".to_owned(),
                ));
            }
        }
        let sig = STANDARD
            .decode(&m.signature)
            .map_err(|e| Error::malformed("sigstore bundle", format!("signature: {e}")))?;
        keys.iter()
            .find(|k| k.verify(data, &sig).is_ok())
            .ok_or_else(|| {
                Error::Mismatch(format!(
                    "the bundle's signature does not verify with {}",
                    describe_keys(keys)
                ))
            })
    }

    /// Verifies a DSSE bundle with one of `keys`; returns the key, the
    /// payload type and the payload.
    pub fn verify_dsse<'k>(
        &self,
        keys: &'k [PublicKey],
    ) -> Result<(&'k PublicKey, String, Vec<u8>)> {
        self.require_key_based()?;
        let Some(e) = &self.dsse_envelope else {
            return Err(Error::Mismatch(
                "the bundle holds a message signature, not a DSSE envelope".to_owned(),
            ));
        };
        let (key, payload) = e.verify(keys)?;
        Ok((key, e.payload_type.clone(), payload))
    }
}
