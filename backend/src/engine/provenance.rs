//! SLSA provenance v1 for a build, as an in-toto statement: what was built
//! (each output and its sha256), from what (the spec and every image's
//! digests), how (formats, architecture) and which signatures were checked.
//! Nothing that depends on the host or the clock goes in, so the same build
//! gives the same statement, byte for byte.

use std::path::Path;

use kiln_signer::dsse::{Statement, Subject};
use kiln_signer::verify::VerifiedSignature;
use serde_json::{json, Value};

use super::build::plan::Images;
use super::build::Artifact;

/// `predicateType` of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// The build type: a LinuxKit spec built by kiln.
pub const BUILD_TYPE: &str = "https://kiln.dev/build-types/linuxkit/v1";
/// The builder id when the caller names none.
pub const DEFAULT_BUILDER_ID: &str = "https://kiln.dev/builders/cli";

/// Whether image signatures were checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentTrust {
    /// Checked as the spec and policy demand (which may be for no image).
    Enforced,
    /// Skipped with `--disable-content-trust`, as the policy allowed.
    Disabled,
}

/// What the statement records.
#[derive(Debug)]
pub struct BuildRecord<'a> {
    pub builder_id: &'a str,
    /// The spec digest ([`crate::engine::build::spec_digest`]), hex.
    pub spec_sha256: &'a str,
    pub name: &'a str,
    pub formats: &'a [String],
    pub arch: &'a str,
    pub images: &'a Images,
    pub verified: &'a [VerifiedSignature],
    pub content_trust: ContentTrust,
    pub artifacts: &'a [Artifact],
}

/// The provenance statement of a build. Subjects are the outputs' file
/// names, sorted.
pub fn statement(record: &BuildRecord<'_>) -> Statement {
    let mut subjects: Vec<Subject> = record
        .artifacts
        .iter()
        .map(|a| Subject::sha256(&file_name(&a.path), &a.sha256))
        .collect();
    subjects.sort_by(|a, b| a.name.cmp(&b.name));

    let mut images: Vec<(&String, _)> = record.images.iter().collect();
    images.sort_by(|a, b| a.0.cmp(b.0));
    let dependencies: Vec<Value> = images
        .iter()
        .map(|(written, resolved)| {
            json!({
                "name": written,
                "uri": format!("oci://{}", resolved.reference),
                "digest": { "sha256": hex(&resolved.root.digest.to_string()) },
                "annotations": {
                    "platformManifest": resolved.manifest.digest.to_string(),
                },
            })
        })
        .collect();

    let mut verified: Vec<&VerifiedSignature> = record.verified.iter().collect();
    verified.sort_by(|a, b| (&a.image, &a.digest).cmp(&(&b.image, &b.digest)));
    let signatures: Vec<Value> = verified
        .iter()
        .map(|v| {
            json!({
                "image": v.image,
                "digest": v.digest,
                "keyFingerprint": v.key_fingerprint,
                "trustRoot": v.trust_root,
                "origin": v.origin,
            })
        })
        .collect();

    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "spec": { "digest": { "sha256": record.spec_sha256 } },
                "name": record.name,
                "formats": record.formats,
                "arch": record.arch,
            },
            "internalParameters": {
                "contentTrust": match record.content_trust {
                    ContentTrust::Enforced => "enforced",
                    ContentTrust::Disabled => "disabled",
                },
                "verifiedSignatures": signatures,
            },
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {
                "id": record.builder_id,
                "version": { "kiln": env!("CARGO_PKG_VERSION") },
            },
        },
    });
    Statement::new(subjects, SLSA_PROVENANCE_V1, predicate)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_string_lossy().into_owned())
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}
