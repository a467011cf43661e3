//! Verifying an image's cosign signatures against the trust policy.
//!
//! The caller fetches what the registry holds for the image digest — the
//! `sha256-<hex>.sig` manifest and any OCI 1.1 referrer signature manifests,
//! each with its layer blobs — and passes the bytes here. Nothing in this
//! module does I/O.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kiln_shared::reference::Reference;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::dsse::describe_keys;
use crate::keyless::{self, KeylessSignature, TrustedRoot};
use crate::policy::{TrustPolicy, TrustRoot};
use crate::simple_signing::{
    SimpleSigning, BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, MEDIA_TYPE, SIGNATURE_ANNOTATION,
};

/// Largest signature manifest parsed.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// One signature manifest as fetched, with the blobs of its layers.
#[derive(Debug, Clone, Default)]
pub struct SignatureManifest {
    /// Where it came from, for messages: `tag sha256-….sig` or
    /// `referrer sha256:…`.
    pub origin: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// Layer blobs by digest (`sha256:…`).
    pub blobs: BTreeMap<String, Vec<u8>>,
}

/// The cosign signature tag of a manifest digest: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// A signature that verified: what the build records for provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedSignature {
    pub image: String,
    pub digest: String,
    /// `sha256:` fingerprint of the key that verified.
    pub key_fingerprint: String,
    /// The trust root (policy entry) the key came from.
    pub trust_root: String,
    /// The payload's `docker-reference`.
    pub docker_reference: String,
    /// Where the signature was found.
    pub origin: String,
}

/// Why an image did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No trust root covers the image.
    NoTrustRoot,
    /// No signature manifest, or one with no signature layers.
    Unsigned,
    /// Signatures exist, but none verifies with a trusted key.
    UntrustedKey(Vec<String>),
    /// A signature by a trusted key names another digest: copied
    /// (replayed) from another image.
    OtherDigest(Vec<String>),
    /// Certificate-based (keyless) signatures, none of which verified
    /// against the trust root's authorities, logs and identities.
    Keyless(Vec<String>),
    /// The signature manifest, payload or encoding is broken.
    Malformed(Vec<String>),
}

impl Reason {
    /// A short name for the reason, for tables and JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoTrustRoot => "no-trust-root",
            Reason::Unsigned => "unsigned",
            Reason::UntrustedKey(_) => "untrusted-key",
            Reason::OtherDigest(_) => "other-digest",
            Reason::Keyless(_) => "keyless-untrusted",
            Reason::Malformed(_) => "malformed-signature",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let details = |d: &Vec<String>| d.join("; ");
        match self {
            Reason::NoTrustRoot => f.write_str("no trust root is configured for it"),
            Reason::Unsigned => f.write_str("no signature (unsigned)"),
            Reason::UntrustedKey(d) => write!(f, "no signature by a trusted key: {}", details(d)),
            Reason::OtherDigest(d) => write!(
                f,
                "the signature is for another digest (copied from another image): {}",
                details(d)
            ),
            Reason::Keyless(d) => write!(
                f,
                "no keyless signature by a trusted identity: {}",
                details(d)
            ),
            Reason::Malformed(d) => write!(f, "malformed signature: {}", details(d)),
        }
    }
}

/// An image that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub image: String,
    pub digest: String,
    pub reason: Reason,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.image, self.digest, self.reason)
    }
}

impl std::error::Error for Rejection {}

enum Outcome {
    Verified(VerifiedSignature),
    Untrusted(String),
    OtherDigest(String),
    Keyless(String),
    Malformed(String),
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Verifies `image` at manifest `digest` against the policy's root for
/// it. `signatures` are the manifests found for the digest (empty when the
/// registry has none).
pub fn verify_image(
    image: &str,
    digest: &str,
    signatures: &[SignatureManifest],
    policy: &TrustPolicy,
) -> Result<VerifiedSignature, Rejection> {
    let root = Reference::parse(image)
        .ok()
        .and_then(|r| policy.root_for(&r))
        .ok_or_else(|| Rejection {
            image: image.to_owned(),
            digest: digest.to_owned(),
            reason: Reason::NoTrustRoot,
        })?;
    verify_with_root(image, digest, signatures, root)
}

/// Verifies against one trust root.
pub fn verify_with_root(
    image: &str,
    digest: &str,
    signatures: &[SignatureManifest],
    root: &TrustRoot,
) -> Result<VerifiedSignature, Rejection> {
    let mut outcomes = Vec::new();
    for sig in signatures {
        check_manifest(image, digest, sig, root, &mut outcomes);
    }
    let mut untrusted = Vec::new();
    let mut other = Vec::new();
    let mut keyless = Vec::new();
    let mut malformed = Vec::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Verified(v) => return Ok(v),
            Outcome::Untrusted(m) => untrusted.push(m),
            Outcome::OtherDigest(m) => other.push(m),
            Outcome::Keyless(m) => keyless.push(m),
            Outcome::Malformed(m) => malformed.push(m),
        }
    }
    let reason = if !other.is_empty() {
        Reason::OtherDigest(other)
    } else if !untrusted.is_empty() {
        Reason::UntrustedKey(untrusted)
    } else if !keyless.is_empty() {
        Reason::Keyless(keyless)
    } else if !malformed.is_empty() {
        Reason::Malformed(malformed)
    } else {
        Reason::Unsigned
    };
    Err(Rejection {
        image: image.to_owned(),
        digest: digest.to_owned(),
        reason,
    })
}

fn check_manifest(
    image: &str,
    digest: &str,
    sig: &SignatureManifest,
    root: &TrustRoot,
    outcomes: &mut Vec<Outcome>,
) {
    if sig.manifest.len() > MAX_MANIFEST_BYTES {
        outcomes.push(Outcome::Malformed(format!(
            "{}: manifest of {} bytes",
            sig.origin,
            sig.manifest.len()
        )));
        return;
    }
    let manifest: Manifest = match serde_json::from_slice(&sig.manifest) {
        Ok(m) => m,
        Err(e) => {
            outcomes.push(Outcome::Malformed(format!("{}: manifest: {e}", sig.origin)));
            return;
        }
    };
    for (i, layer) in manifest.layers.iter().enumerate() {
        let at = format!("{} layer {}", sig.origin, i + 1);
        outcomes.push(check_layer(image, digest, &at, sig, layer, root));
    }
}

fn check_layer(
    image: &str,
    digest: &str,
    at: &str,
    sig: &SignatureManifest,
    layer: &Layer,
    root: &TrustRoot,
) -> Outcome {
    if layer.media_type != MEDIA_TYPE {
        return Outcome::Malformed(format!("{at}: media type `{}`", layer.media_type));
    }
    let Some(payload) = sig.blobs.get(&layer.digest) else {
        return Outcome::Malformed(format!(
            "{at}: payload blob {} was not fetched",
            layer.digest
        ));
    };
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(payload)));
    if actual != layer.digest {
        return Outcome::Malformed(format!(
            "{at}: payload blob is {actual}, the manifest says {}",
            layer.digest
        ));
    }
    let Some(encoded) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
        return Outcome::Malformed(format!("{at}: no `{SIGNATURE_ANNOTATION}` annotation"));
    };
    let signature = match STANDARD.decode(encoded.trim()) {
        Ok(s) => s,
        Err(e) => return Outcome::Malformed(format!("{at}: signature is not base64: {e}")),
    };
    let parsed = match SimpleSigning::parse(payload) {
        Ok(p) => p,
        Err(e) => return Outcome::Malformed(format!("{at}: {e}")),
    };
    let signer = match root
        .keys
        .iter()
        .find(|k| k.verify(payload, &signature).is_ok())
    {
        Some(key) => key.fingerprint().to_owned(),
        None => match layer.annotations.get(CERTIFICATE_ANNOTATION) {
            Some(certificate_pem) => {
                match check_keyless(certificate_pem, layer, payload, &signature, root) {
                    Ok(identity) => identity,
                    Err(message) => return Outcome::Keyless(format!("{at}: {message}")),
                }
            }
            None => {
                return Outcome::Untrusted(format!(
                    "{at}: does not verify with {} of `{}`",
                    describe_keys(&root.keys),
                    root.name
                ))
            }
        },
    };
    if parsed.digest() != digest {
        return Outcome::OtherDigest(format!(
            "{at}: signed by {signer} but the payload names {}",
            parsed.digest()
        ));
    }
    Outcome::Verified(VerifiedSignature {
        image: image.to_owned(),
        digest: digest.to_owned(),
        key_fingerprint: signer,
        trust_root: root.name.clone(),
        docker_reference: parsed.critical.identity.docker_reference.clone(),
        origin: at.to_owned(),
    })
}

/// Checks a certificate-carrying layer against the root's keyless
/// identities; the identity that signed, as the key fingerprint is given
/// for key-based signatures.
fn check_keyless(
    certificate_pem: &str,
    layer: &Layer,
    payload: &[u8],
    signature: &[u8],
    root: &TrustRoot,
) -> Result<String, String> {
    let Some(path) = root
        .trusted_root
        .as_deref()
        .filter(|_| !root.identities.is_empty())
    else {
        return Err(format!(
            "carries a certificate, but the trust root `{}` names no keyless identities",
            root.name
        ));
    };
    let trusted = TrustedRoot::load(path).map_err(|e| e.to_string())?;
    let sig = KeylessSignature {
        certificate_pem,
        rekor_bundle: layer.annotations.get(BUNDLE_ANNOTATION).map(String::as_str),
        payload,
        signature,
    };
    let id = keyless::verify(&sig, &trusted, &root.identities).map_err(|e| e.to_string())?;
    Ok(format!(
        "keyless {} from {} (certificate {}, Rekor entry {})",
        id.subject, id.issuer, id.certificate, id.log_index
    ))
}

/// A cosign signature manifest with one simple-signing layer, and its
/// blobs: what `kiln sign` pushes to the `.sig` tag. Returns the manifest
/// bytes, the config blob and the payload blob.
pub fn signature_manifest(payload: &[u8], signature: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(payload)));
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))
    .unwrap_or_default();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(&config))),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": MEDIA_TYPE,
            "digest": layer_digest,
            "size": payload.len(),
            "annotations": { SIGNATURE_ANNOTATION: STANDARD.encode(signature) },
        }],
    });
    (serde_json::to_vec(&manifest).unwrap_or_default(), config)
}
