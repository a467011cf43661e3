//! cosign's simple-signing payload: the JSON document a container image
//! signature signs, naming the manifest digest.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Media type of a cosign signature layer (the payload blob).
pub const MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation holding a signing certificate (keyless signatures).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation holding a Rekor bundle (keyless signatures).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// The `critical.type` of an image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// Largest payload kiln parses.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// A parsed simple-signing payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    /// Free-form annotations; cosign writes `null` when there are none.
    #[serde(default)]
    pub optional: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// The payload for `docker_reference` (repository, no tag, as cosign
    /// writes it) at `digest`.
    pub fn new(docker_reference: &str, digest: &str) -> Self {
        SimpleSigning {
            critical: Critical {
                identity: Identity {
                    docker_reference: docker_reference.to_owned(),
                },
                image: Image {
                    docker_manifest_digest: digest.to_owned(),
                },
                kind: SIGNATURE_TYPE.to_owned(),
            },
            optional: None,
        }
    }

    /// The bytes to sign, byte-for-byte as cosign writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a payload and checks its `critical.type`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::malformed(
                "simple-signing payload",
                format!(
                    "{} bytes; at most {MAX_PAYLOAD_BYTES} are accepted",
                    bytes.len()
                ),
            ));
        }
        let payload: SimpleSigning = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed("simple-signing payload", e))?;
        if payload.critical.kind != SIGNATURE_TYPE {
            return Err(Error::malformed(
                "simple-signing payload",
                format!(
                    "critical.type is `{}`, not `{SIGNATURE_TYPE}`",
                    payload.critical.kind
                ),
            ));
        }
        Ok(payload)
    }

    /// The digest the payload names.
    pub fn digest(&self) -> &str {
        &self.critical.image.docker_manifest_digest
    }

    /// Fails unless the payload names exactly `digest`.
    pub fn check_digest(&self, digest: &str) -> Result<()> {
        if self.digest() == digest {
            Ok(())
        } else {
            Err(Error::Mismatch(format!(
                "the payload names {}, not {digest}",
                self.digest()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_match_cosign() {
        let p = SimpleSigning::new("127.0.0.1:5000/kiln-test/x", "sha256:ab");
        assert_eq!(
            String::from_utf8(p.to_bytes()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/kiln-test/x"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#
        );
        let back = SimpleSigning::parse(&p.to_bytes()).unwrap();
        assert_eq!(back, p);
        back.check_digest("sha256:ab").unwrap();
        assert!(back.check_digest("sha256:cd").is_err());
    }

    #[test]
    fn optional_annotations_and_wrong_type() {
        let text = br#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":{"creator":"x"}}"#;
        let p = SimpleSigning::parse(text).unwrap();
        assert_eq!(p.optional.unwrap()["creator"], "x");
        let wrong = br#"{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"other"}}"#;
        assert!(SimpleSigning::parse(wrong).is_err());
        assert!(SimpleSigning::parse(b"{").is_err());
        assert!(SimpleSigning::parse(b"{}").is_err());
    }
}
