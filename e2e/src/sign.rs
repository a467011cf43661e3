//! Cosign-compatible signatures made with openssl only, independent of
//! kiln's signer: an EC P-256 key from `openssl genpkey`, the simple-signing
//! payload, `openssl dgst -sha256 -sign`, and a `sha256-<hex>.sig` manifest
//! pushed with skopeo from an OCI layout.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use base64::Engine;
use tempfile::TempDir;

use crate::oci::{self, Layout};
use crate::registry::Registry;
use crate::tools;

/// Media type of the signature layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation carrying the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// An EC P-256 key pair in PEM files.
#[derive(Debug)]
pub struct KeyPair {
    dir: TempDir,
}

impl KeyPair {
    /// Generates a fresh key with `openssl genpkey`.
    pub fn generate() -> anyhow::Result<KeyPair> {
        let openssl = tools::find("openssl", "openssl")?;
        let dir = tempfile::Builder::new().prefix("kiln-e2e-key-").tempdir()?;
        let key = dir.path().join("key.pem");
        tools::run(
            Command::new(&openssl)
                .args([
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .arg("-out")
                .arg(&key),
        )?;
        tools::run(
            Command::new(&openssl)
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(dir.path().join("pub.pem")),
        )?;
        Ok(KeyPair { dir })
    }

    /// The private key (PKCS#8 PEM).
    pub fn private_key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The public key (SubjectPublicKeyInfo PEM).
    pub fn public_key_path(&self) -> PathBuf {
        self.dir.path().join("pub.pem")
    }

    /// The public key PEM text.
    pub fn public_key_pem(&self) -> anyhow::Result<String> {
        Ok(fs::read_to_string(self.public_key_path())?)
    }

    /// A DER ECDSA-SHA256 signature of `data` (`openssl dgst -sha256 -sign`).
    pub fn sign(&self, data: &[u8]) -> anyhow::Result<Vec<u8>> {
        let work = tempfile::tempdir()?;
        let input = work.path().join("payload");
        let output = work.path().join("sig");
        fs::write(&input, data)?;
        tools::run(
            Command::new(tools::find("openssl", "openssl")?)
                .args(["dgst", "-sha256", "-sign"])
                .arg(self.private_key_path())
                .arg("-out")
                .arg(&output)
                .arg(&input),
        )?;
        Ok(fs::read(output)?)
    }
}

/// Checks `signature` over `payload` with `openssl dgst -sha256 -verify`.
pub fn openssl_verify(public_key: &Path, payload: &[u8], signature: &[u8]) -> anyhow::Result<bool> {
    let work = tempfile::tempdir()?;
    fs::write(work.path().join("payload"), payload)?;
    fs::write(work.path().join("sig"), signature)?;
    let status = Command::new(tools::find("openssl", "openssl")?)
        .args(["dgst", "-sha256", "-verify"])
        .arg(public_key)
        .arg("-signature")
        .arg(work.path().join("sig"))
        .arg(work.path().join("payload"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("cannot run openssl")?;
    Ok(status.success())
}

/// The cosign simple-signing payload for `docker_reference` (`HOST/REPO`)
/// at `digest`.
pub fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    let json = serde_json::json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    serde_json::to_vec(&json).expect("a JSON value serialises")
}

/// The signature tag of a manifest digest: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// What [`sign_image`] pushed.
#[derive(Debug, Clone)]
pub struct Signature {
    /// The signed manifest digest.
    pub digest: String,
    /// The tag the signature manifest went to.
    pub tag: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The DER signature.
    pub signature: Vec<u8>,
}

/// Signs `<repo>@<digest>` in `registry` with `key` and pushes the
/// signature manifest to `<repo>:sha256-<hex>.sig`, replacing any earlier one.
pub fn sign_image(
    registry: &Registry,
    repo: &str,
    digest: &str,
    key: &KeyPair,
) -> anyhow::Result<Signature> {
    if !digest.starts_with("sha256:") {
        bail!("cannot sign {digest}: not a sha256 digest");
    }
    let payload = payload(&format!("{}/{repo}", registry.host()), digest);
    let signature = key.sign(&payload)?;
    let work = tempfile::Builder::new().prefix("kiln-e2e-sig-").tempdir()?;
    let layout = Layout::create(work.path(), 0)?;
    let mut layer = layout.put_blob(SIMPLE_SIGNING, &payload)?;
    layer.annotations = BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(&signature),
    )]);
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{ "created": "0001-01-01T00:00:00Z" }],
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
    });
    let config = layout.put_blob(oci::CONFIG, &serde_json::to_vec(&config)?)?;
    let manifest = layout.write_manifest(config, vec![layer])?;
    layout.set_tags(&[("sig", &manifest)])?;
    let tag = signature_tag(digest);
    registry.push_layout(work.path(), "sig", repo, &tag)?;
    Ok(Signature {
        digest: digest.to_owned(),
        tag,
        payload,
        signature,
    })
}

/// The outcome of [`verify_with_openssl`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature layer names the digest and verifies with the key.
    Verified,
    /// There is no `sha256-<hex>.sig` manifest.
    Unsigned,
    /// Signatures exist but none verifies; the reasons, one per layer.
    Rejected(Vec<String>),
}

/// Verifies the cosign signature of `<repo>@<digest>` the way an outsider
/// would: plain HTTP for the `.sig` manifest and payload, a check that the
/// payload names the digest and `<host>/<repo>`, and
/// `openssl dgst -sha256 -verify` with `public_key`.
pub fn verify_with_openssl(
    registry: &Registry,
    repo: &str,
    digest: &str,
    public_key: &Path,
) -> anyhow::Result<Verdict> {
    let Some(sig) = registry.manifest(repo, &signature_tag(digest))? else {
        return Ok(Verdict::Unsigned);
    };
    let manifest: serde_json::Value = serde_json::from_slice(&sig.body)?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let mut reasons = Vec::new();
    for layer in &layers {
        let reason = check_layer(registry, repo, digest, public_key, layer)?;
        match reason {
            None => return Ok(Verdict::Verified),
            Some(r) => reasons.push(r),
        }
    }
    if reasons.is_empty() {
        reasons.push("the signature manifest has no layers".to_owned());
    }
    Ok(Verdict::Rejected(reasons))
}

/// `None` when `layer` is a valid signature of `digest`, else why not.
fn check_layer(
    registry: &Registry,
    repo: &str,
    digest: &str,
    public_key: &Path,
    layer: &serde_json::Value,
) -> anyhow::Result<Option<String>> {
    if layer["mediaType"] != SIMPLE_SIGNING {
        return Ok(Some(format!("layer media type {}", layer["mediaType"])));
    }
    let Some(encoded) = layer["annotations"][SIGNATURE_ANNOTATION].as_str() else {
        return Ok(Some("no signature annotation".to_owned()));
    };
    let payload = registry.blob(repo, layer["digest"].as_str().unwrap_or_default())?;
    let json: serde_json::Value =
        serde_json::from_slice(&payload).context("payload is not JSON")?;
    let critical = &json["critical"];
    if critical["image"]["docker-manifest-digest"] != digest {
        return Ok(Some(format!(
            "payload names {}",
            critical["image"]["docker-manifest-digest"]
        )));
    }
    let expected_ref = format!("{}/{repo}", registry.host());
    if critical["identity"]["docker-reference"] != expected_ref.as_str() {
        return Ok(Some(format!(
            "payload identity {}",
            critical["identity"]["docker-reference"]
        )));
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .context("signature annotation is not base64")?;
    if openssl_verify(public_key, &payload, &signature)? {
        Ok(None)
    } else {
        Ok(Some(
            "openssl: signature does not verify with the key".to_owned(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_matches_cosign_shape() {
        let p = payload("127.0.0.1:5000/kiln-test/x", "sha256:ab");
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(
            v["critical"]["identity"]["docker-reference"],
            "127.0.0.1:5000/kiln-test/x"
        );
        assert_eq!(
            v["critical"]["image"]["docker-manifest-digest"],
            "sha256:ab"
        );
        assert_eq!(v["critical"]["type"], "cosign container image signature");
        assert!(v["optional"].is_null());
    }

    #[test]
    fn signature_tag_replaces_the_colon() {
        assert_eq!(signature_tag("sha256:abc"), "sha256-abc.sig");
    }
}
