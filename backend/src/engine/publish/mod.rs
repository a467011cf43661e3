//! Publishing a build to an OCI registry as one signed artifact: every
//! output file a layer of an image manifest with kiln's `artifactType`, a
//! cosign signature of that manifest, and the SBOM, SLSA provenance and
//! measurement manifests as DSSE-signed OCI 1.1 referrers. The manifest is
//! staged by digest; the tag moves only once everything is in place and
//! verifies, and a tag already pointing at another digest is never moved.

pub mod media;
mod repository;
pub mod verify;

use std::path::PathBuf;

use kiln_signer::dsse::{Envelope, Statement, INTOTO_PAYLOAD_TYPE};
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::Signer;
use serde_json::{json, Value};

pub use repository::{sha256_digest, Repository};
pub use verify::{verify_release, Check, Report};

use self::media::Attestation;
use super::reference::Reference;
use super::registry::{Access, RegistryConfig};

/// `predicateType` of an SPDX SBOM in an in-toto statement.
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
/// DSSE `payloadType` of a measurement manifest.
pub const MEASUREMENTS_PAYLOAD_TYPE: &str = "application/vnd.kiln.measurements+json";

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}: the reference needs a tag to publish to")]
    NoTag(String),
    #[error("{tag} is already published as {existing}; kiln never moves a published tag, publish under a new version")]
    TagTaken { tag: String, existing: String },
    #[error("registry {repository}: {message}")]
    Registry { repository: String, message: String },
    #[error("signing: {0}")]
    Sign(String),
    #[error("the staged release does not verify, so {tag} was not moved: {failures}")]
    Unverified { tag: String, failures: String },
}

/// One output file of the build, published as a layer.
#[derive(Debug, Clone)]
pub struct Output {
    pub file_name: String,
    pub path: PathBuf,
    /// Lower-case hex.
    pub sha256: String,
    pub size: u64,
}

/// Everything a release holds.
#[derive(Debug, Clone)]
pub struct Release {
    pub name: String,
    pub outputs: Vec<Output>,
    /// The build's SLSA provenance; it also supplies the config's record
    /// of the spec digest and the source images.
    pub provenance: Statement,
    /// The SPDX 2.3 JSON document.
    pub sbom: Vec<u8>,
    /// Measurement manifests (JSON), one per bootable output.
    pub measurements: Vec<(String, Vec<u8>)>,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub referrers: Vec<(String, String)>,
}

/// The artifact manifest and its config blob, deterministic for a release.
pub fn artifact_manifest(release: &Release) -> (Vec<u8>, Vec<u8>) {
    let build = &release.provenance.predicate["buildDefinition"];
    let external = &build["externalParameters"];
    let images: Vec<Value> = build["resolvedDependencies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            json!({
                "name": d["name"],
                "digest": format!("sha256:{}", d["digest"]["sha256"].as_str().unwrap_or_default()),
                "platformManifest": d["annotations"]["platformManifest"],
            })
        })
        .collect();
    let spec_digest = format!(
        "sha256:{}",
        external["spec"]["digest"]["sha256"]
            .as_str()
            .unwrap_or_default()
    );
    let config = json!({
        "name": release.name,
        "specDigest": spec_digest,
        "arch": external["arch"],
        "formats": external["formats"],
        "images": images,
        "kilnVersion": env!("CARGO_PKG_VERSION"),
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let mut outputs: Vec<&Output> = release.outputs.iter().collect();
    outputs.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    let layers: Vec<Value> = outputs
        .iter()
        .map(|o| {
            json!({
                "mediaType": media::of_output(&o.file_name),
                "digest": format!("sha256:{}", o.sha256),
                "size": o.size,
                "annotations": { media::TITLE: o.file_name },
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": media::ARTIFACT_TYPE,
        "config": {
            "mediaType": media::CONFIG,
            "digest": sha256_digest(&config),
            "size": config.len(),
        },
        "layers": layers,
        "annotations": {
            "dev.kiln.measurements": release.measurements.len().to_string(),
            "dev.kiln.name": release.name,
            "dev.kiln.spec.digest": spec_digest,
            "dev.kiln.version": env!("CARGO_PKG_VERSION"),
            "org.opencontainers.image.title": release.name,
        },
    });
    (serde_json::to_vec(&manifest).unwrap_or_default(), config)
}

/// The signed attestations of a release: kind and DSSE envelope.
fn attestations(
    release: &Release,
    subject_digest: &str,
    signer: &dyn Signer,
) -> Result<Vec<(Attestation, Envelope)>, PublishError> {
    let sign = |e: kiln_signer::Error| PublishError::Sign(e.to_string());
    let mut out = Vec::new();
    let sbom: Value = serde_json::from_slice(&release.sbom)
        .map_err(|e| PublishError::Sign(format!("the SBOM is not JSON: {e}")))?;
    let sbom_statement = Statement::new(
        vec![kiln_signer::dsse::Subject::sha256(
            &release.name,
            subject_digest,
        )],
        SPDX_PREDICATE,
        sbom,
    );
    out.push((
        Attestation::Sbom,
        sbom_statement.sign(signer).map_err(sign)?,
    ));
    out.push((
        Attestation::Provenance,
        Envelope::sign(signer, INTOTO_PAYLOAD_TYPE, &release.provenance.to_json()).map_err(sign)?,
    ));
    let mut measurements = release.measurements.clone();
    measurements.sort();
    for (_, doc) in &measurements {
        out.push((
            Attestation::Measurements,
            Envelope::sign(signer, MEASUREMENTS_PAYLOAD_TYPE, doc).map_err(sign)?,
        ));
    }
    Ok(out)
}

/// A referrer manifest holding one envelope, with `subject` the artifact.
fn referrer_manifest(kind: Attestation, envelope: &[u8], subject: &Value) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": kind.artifact_type(),
        "config": { "mediaType": media::EMPTY, "digest": sha256_digest(b"{}"), "size": 2 },
        "layers": [{
            "mediaType": media::DSSE_ENVELOPE,
            "digest": sha256_digest(envelope),
            "size": envelope.len(),
        }],
        "subject": subject,
        "annotations": { "dev.kiln.attestation": kind.name() },
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Publishes `release` to `target` (`REGISTRY/REPO:TAG`).
pub async fn publish(
    release: &Release,
    target: &Reference,
    config: &RegistryConfig,
    signer: &dyn Signer,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Published, PublishError> {
    let tag = target
        .tag()
        .ok_or_else(|| PublishError::NoTag(target.to_string()))?
        .to_owned();
    let repo = Repository::connect(target, config, Access::Push)
        .await
        .map_err(|message| PublishError::Registry {
            repository: target.name(),
            message,
        })?;
    let fail = |message: String| PublishError::Registry {
        repository: repo.name(),
        message,
    };
    let (manifest, config_blob) = artifact_manifest(release);
    let digest = sha256_digest(&manifest);
    if let Some(existing) = repo.manifest(&tag).await.map_err(fail)? {
        if existing.digest != digest {
            return Err(PublishError::TagTaken {
                tag: format!("{}:{tag}", repo.name()),
                existing: existing.digest,
            });
        }
    }

    for o in &release.outputs {
        progress(&format!("uploading {} ({} bytes)", o.file_name, o.size));
        repo.push_file(&o.path, &format!("sha256:{}", o.sha256), o.size)
            .await
            .map_err(fail)?;
    }
    repo.push_bytes(&config_blob).await.map_err(fail)?;
    repo.push_bytes(b"{}").await.map_err(fail)?;
    repo.put_manifest(&digest, &manifest, media::OCI_MANIFEST)
        .await
        .map_err(fail)?;
    progress(&format!("staged {}@{digest}", repo.name()));

    let payload = SimpleSigning::new(&repo.name(), &digest).to_bytes();
    let signature = signer
        .sign(&payload)
        .map_err(|e| PublishError::Sign(e.to_string()))?;
    repo.push_signature(&digest, &payload, &signature)
        .await
        .map_err(fail)?;
    progress(&format!(
        "signed {digest} with key {}",
        signer.public_key().fingerprint()
    ));

    let subject = json!({
        "mediaType": media::OCI_MANIFEST,
        "digest": digest,
        "size": manifest.len(),
        "artifactType": media::ARTIFACT_TYPE,
    });
    let mut referrers = Vec::new();
    for (kind, envelope) in attestations(release, &digest, signer)? {
        let envelope = envelope.to_json();
        repo.push_bytes(&envelope).await.map_err(fail)?;
        let referrer = referrer_manifest(kind, &envelope, &subject);
        let referrer_digest = sha256_digest(&referrer);
        repo.put_manifest(&referrer_digest, &referrer, media::OCI_MANIFEST)
            .await
            .map_err(fail)?;
        repo.list_referrer(
            &digest,
            json!({
                "mediaType": media::OCI_MANIFEST,
                "digest": referrer_digest,
                "size": referrer.len(),
                "artifactType": kind.artifact_type(),
                "annotations": { "dev.kiln.attestation": kind.name() },
            }),
        )
        .await
        .map_err(fail)?;
        progress(&format!("attached {} {referrer_digest}", kind.name()));
        referrers.push((kind.name().to_owned(), referrer_digest));
    }

    let staged = format!("{}@{digest}", repo.name());
    let report = verify_release(
        &staged,
        std::slice::from_ref(signer.public_key()),
        config,
        None,
    )
    .await;
    if !report.ok() {
        return Err(PublishError::Unverified {
            tag,
            failures: report.failures().join("; "),
        });
    }
    repo.put_manifest(&tag, &manifest, media::OCI_MANIFEST)
        .await
        .map_err(fail)?;
    progress(&format!("tagged {}:{tag}", repo.name()));
    Ok(Published {
        reference: format!("{}:{tag}", repo.name()),
        digest,
        size: manifest.len() as u64,
        referrers,
    })
}
