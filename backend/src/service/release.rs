//! Turning a succeeded service build into what the engine publishes: its
//! artifacts as outputs, its SLSA provenance (from the recorded spec,
//! image digests and content-trust record), its SBOM with the packages
//! found in the images, and its measurement manifests.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use kiln_signer::verify::VerifiedSignature;
use serde::Deserialize;
use sqlx::Row;

use super::{jobs, AppState};
use crate::engine::build::plan::Images;
use crate::engine::build::Artifact;
use crate::engine::provenance::{self, BuildRecord, ContentTrust};
use crate::engine::publish::{Output, Release};
use crate::engine::reference::Reference;
use crate::engine::registry;
use crate::engine::sbom::{self, SbomOptions};
use crate::engine::store::{Digest, Platform};

/// The builder id in the provenance of service builds.
pub const SERVICE_BUILDER_ID: &str = "https://kiln.dev/builders/service";

/// Why a build cannot be made into a release; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("only a succeeded build can be published; this one is {0}")]
    NotSucceeded(String),
    #[error("the build has no record of its resolved images (it ran before kiln recorded them); build it again to publish it")]
    NoImages,
    #[error("the build has no artifacts to publish")]
    NoArtifacts,
    #[error("{0}")]
    Internal(String),
}

#[derive(Deserialize)]
struct RecordedImage {
    reference: String,
    digest: String,
}

#[derive(Deserialize, Default)]
struct RecordedTrust {
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    verified: Vec<RecordedSignature>,
}

#[derive(Deserialize)]
struct RecordedSignature {
    image: String,
    digest: String,
    key_fingerprint: String,
    trust_root: String,
    #[serde(default)]
    docker_reference: String,
    #[serde(default)]
    origin: String,
}

/// The release of build `id` (which must have succeeded).
pub async fn of_build(app: &AppState, id: &str) -> Result<Release, ReleaseError> {
    let internal = |e: String| ReleaseError::Internal(e);
    let row = sqlx::query(
        "SELECT state, spec, name, formats, arch, content_trust, images FROM builds WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .map_err(|e| internal(format!("reading the build: {e}")))?;
    let state: String = row.get(0);
    if state != "succeeded" {
        return Err(ReleaseError::NotSucceeded(state));
    }
    let spec_text: String = row.get(1);
    let name: String = row.get(2);
    let formats: Vec<String> = serde_json::from_str(row.get::<&str, _>(3)).unwrap_or_default();
    let arch: String = row.get(4);
    let trust: RecordedTrust = row
        .get::<Option<&str>, _>(5)
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    let recorded: BTreeMap<String, RecordedImage> = row
        .get::<Option<&str>, _>(6)
        .and_then(|t| serde_json::from_str(t).ok())
        .ok_or(ReleaseError::NoImages)?;

    let spec = jobs::service_spec(&spec_text).map_err(internal)?;
    let platform = Platform::linux(&arch);
    let images = images_of(app, &recorded, &platform)
        .await
        .map_err(internal)?;

    let recorded_artifacts = jobs::artifacts_of(app, id)
        .await
        .map_err(|e| internal(format!("reading the artifacts: {e}")))?;
    let mut subjects = Vec::new();
    let mut outputs = Vec::new();
    let mut measurements = Vec::new();
    for a in recorded_artifacts {
        let (file_name, size, sha256) = (a.name, a.size, a.sha256);
        let path = jobs::artifact_path(&app.cfg.home, &sha256);
        subjects.push(Artifact {
            path: PathBuf::from(&file_name),
            size,
            sha256: sha256.clone(),
        });
        if file_name.ends_with("-measurements.json") {
            let doc = tokio::fs::read(&path)
                .await
                .map_err(|e| internal(format!("{file_name}: {e}")))?;
            measurements.push((file_name, doc));
        } else if !file_name.ends_with(".dsse") {
            outputs.push(Output {
                file_name,
                path,
                sha256,
                size,
            });
        }
    }
    if outputs.is_empty() {
        return Err(ReleaseError::NoArtifacts);
    }

    let verified: Vec<VerifiedSignature> = trust
        .verified
        .into_iter()
        .map(|v| VerifiedSignature {
            image: v.image,
            digest: v.digest,
            key_fingerprint: v.key_fingerprint,
            trust_root: v.trust_root,
            docker_reference: v.docker_reference,
            origin: v.origin,
        })
        .collect();
    let spec_sha256 = crate::engine::build::spec_digest(&spec);
    let statement = provenance::statement(&BuildRecord {
        builder_id: SERVICE_BUILDER_ID,
        spec_sha256: &spec_sha256,
        name: &name,
        formats: &formats,
        arch: &arch,
        images: &images,
        verified: &verified,
        content_trust: if trust.disabled {
            ContentTrust::Disabled
        } else {
            ContentTrust::Enforced
        },
        artifacts: &subjects,
    });

    let store = app.store.clone();
    let sbom_name = name.clone();
    let sbom = tokio::task::spawn_blocking(move || {
        let options = SbomOptions {
            scan_packages: true,
            ..SbomOptions::new(&sbom_name).map_err(|e| e.to_string())?
        };
        sbom::document(&spec, &images, &store, &options).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| internal(format!("the SBOM task failed: {e}")))?
    .map_err(internal)?;

    Ok(Release {
        name,
        outputs,
        provenance: statement,
        sbom,
        measurements,
    })
}

/// The build's images, pinned to the digests it used: from the store, or
/// pulled again by digest when the store no longer has them.
async fn images_of(
    app: &AppState,
    recorded: &BTreeMap<String, RecordedImage>,
    platform: &Platform,
) -> Result<Images, String> {
    let mut wanted = Vec::new();
    let mut written = Vec::new();
    for (name, image) in recorded {
        let reference = Reference::parse(&image.reference)
            .map_err(|e| format!("recorded image {}: {e}", image.reference))?;
        let digest = Digest::parse(&image.digest)
            .map_err(|e| format!("recorded digest {}: {e}", image.digest))?;
        wanted.push(reference.with_digest(digest));
        written.push((name.clone(), reference));
    }
    let config = jobs::registry_config(app);
    let resolved = registry::pull_missing(&wanted, platform, &app.store, &config)
        .await
        .map_err(|e| format!("the build's images: {e}"))?;
    Ok(written
        .into_iter()
        .zip(resolved)
        .map(|((name, reference), mut image)| {
            image.reference = reference;
            (name, image)
        })
        .collect::<HashMap<_, _>>())
}
