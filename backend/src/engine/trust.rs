//! Fetching an image's cosign signatures for verification: the
//! `sha256-<hex>.sig` tag, and OCI 1.1 referrers where the registry
//! supports them. Checking them is `kiln_signer::verify_image`'s job; this
//! module only moves bytes.

use std::collections::BTreeMap;

use kiln_signer::verify::{signature_tag, SignatureManifest};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OCI_IMAGE_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;

use super::reference::Reference;
use super::registry::{oci_auth, Access, RegistryConfig};

/// Artifact type of a cosign signature stored as an OCI 1.1 referrer.
pub const COSIGN_SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Docker's schema 2 manifest media type, which older registries return.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Most layers one signature manifest may have.
const MAX_LAYERS: usize = 64;
/// Largest payload blob fetched.
const MAX_PAYLOAD_BYTES: i64 = 1 << 20;
/// Most referrer signature manifests fetched for one digest.
const MAX_REFERRERS: usize = 16;

/// A signature fetch that failed for a reason other than "there is none".
#[derive(Debug, Clone, thiserror::Error)]
#[error("fetching signatures of {image}@{digest}: {message}")]
pub struct FetchError {
    pub image: String,
    pub digest: String,
    pub message: String,
}

/// Every signature manifest the registry holds for `digest` of
/// `reference`'s repository, with its payload blobs: the `.sig` tag first,
/// then referrers of the cosign signature artifact type. An empty list means
/// the image is unsigned.
pub async fn fetch_signatures(
    reference: &Reference,
    digest: &str,
    config: &RegistryConfig,
) -> Result<Vec<SignatureManifest>, FetchError> {
    let fail = |message: String| FetchError {
        image: reference.to_string(),
        digest: digest.to_owned(),
        message,
    };
    let (registry, repository, plain_http) = match config.mirrors.for_registry(reference.registry())
    {
        Some(m) => (
            m.host.clone(),
            m.repository(reference.repository()),
            m.plain_http,
        ),
        None => (
            reference.registry().to_owned(),
            reference.repository().to_owned(),
            config.allows_plain_http(reference.registry()),
        ),
    };
    let client = oci_client::Client::try_from(config.client_config(plain_http))
        .map_err(|e| fail(format!("building registry client: {e}")))?;
    let auth = oci_auth(config, &registry, &repository, plain_http, Access::Pull)
        .await
        .map_err(&fail)?;

    let mut found = Vec::new();
    let tag = signature_tag(digest);
    let tagged = oci_client::Reference::with_tag(registry.clone(), repository.clone(), tag.clone());
    match fetch_one(&client, &auth, &tagged, format!("tag {tag}")).await {
        Ok(Some(sig)) => found.push(sig),
        Ok(None) => {}
        Err(e) => return Err(fail(e)),
    }

    // OCI 1.1 referrers; registries without the API answer 404, which is
    // the same as having none.
    let subject =
        oci_client::Reference::with_digest(registry.clone(), repository.clone(), digest.to_owned());
    if let Ok(index) = client
        .pull_referrers(&subject, Some(COSIGN_SIGNATURE_ARTIFACT_TYPE))
        .await
    {
        for d in index.manifests.iter().take(MAX_REFERRERS) {
            if d.artifact_type.as_deref() != Some(COSIGN_SIGNATURE_ARTIFACT_TYPE) {
                continue;
            }
            let by_digest = oci_client::Reference::with_digest(
                registry.clone(),
                repository.clone(),
                d.digest.clone(),
            );
            match fetch_one(&client, &auth, &by_digest, format!("referrer {}", d.digest)).await {
                Ok(Some(sig)) => found.push(sig),
                Ok(None) => {}
                Err(e) => return Err(fail(e)),
            }
        }
    }
    Ok(found)
}

async fn fetch_one(
    client: &oci_client::Client,
    auth: &RegistryAuth,
    target: &oci_client::Reference,
    origin: String,
) -> Result<Option<SignatureManifest>, String> {
    let manifest = match client
        .pull_manifest_raw(target, auth, &[OCI_IMAGE_MEDIA_TYPE, DOCKER_MANIFEST])
        .await
    {
        Ok((bytes, _digest)) => bytes.to_vec(),
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(format!("{origin}: {e}")),
    };
    let mut blobs = BTreeMap::new();
    // Layers that cannot be read are left out; the verifier then reports
    // them as malformed with their digest.
    if let Ok(parsed) = serde_json::from_slice::<serde_json::Value>(&manifest) {
        let layers = parsed["layers"].as_array().cloned().unwrap_or_default();
        for layer in layers.iter().take(MAX_LAYERS) {
            let Ok(descriptor) = serde_json::from_value::<OciDescriptor>(layer.clone()) else {
                continue;
            };
            if descriptor.size > MAX_PAYLOAD_BYTES || descriptor.size < 0 {
                continue;
            }
            let mut data: Vec<u8> = Vec::new();
            match client.pull_blob(target, &descriptor, &mut data).await {
                Ok(()) => {
                    blobs.insert(descriptor.digest.clone(), data);
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(format!("{origin}: blob {}: {e}", descriptor.digest)),
            }
        }
    }
    Ok(Some(SignatureManifest {
        origin,
        manifest,
        blobs,
    }))
}

/// Whether a registry error means "there is none" (manifest, blob or
/// repository unknown).
pub(crate) fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|err| {
            matches!(
                err.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound
                    | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// [`fetch_signatures`] on a current-thread runtime, for callers without
/// one (the CLI, tests).
pub fn fetch_signatures_blocking(
    reference: &Reference,
    digest: &str,
    config: &RegistryConfig,
) -> Result<Vec<SignatureManifest>, FetchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FetchError {
            image: reference.to_string(),
            digest: digest.to_owned(),
            message: format!("starting the async runtime: {e}"),
        })?;
    runtime.block_on(fetch_signatures(reference, digest, config))
}
