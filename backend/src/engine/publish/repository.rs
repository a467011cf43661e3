//! One repository reached with push rights through oci-client: blobs
//! streamed from files, manifests by digest or tag, cosign signatures, and
//! referrers kept listable on registries without the OCI 1.1 API (the
//! referrers tag schema). Pushes go to the image's own registry, never to
//! a mirror.

use std::path::Path;

use futures_util::stream;
use kiln_signer::verify::signature_manifest;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

use super::media;
use crate::engine::reference::Reference;
use crate::engine::registry::{oci_auth, Access, RegistryConfig};
use crate::engine::trust::is_not_found;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const CHUNK: usize = 1 << 20;

/// A manifest as the registry returned it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
}

pub struct Repository {
    client: oci_client::Client,
    auth: RegistryAuth,
    registry: String,
    repository: String,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({}/{})", self.registry, self.repository)
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Repository {
    /// Connects with `access` rights to `reference`'s repository.
    pub async fn connect(
        reference: &Reference,
        config: &RegistryConfig,
        access: Access,
    ) -> Result<Self, String> {
        let registry = reference.registry().to_owned();
        let repository = reference.repository().to_owned();
        let plain_http = config.allows_plain_http(&registry);
        let client = oci_client::Client::try_from(config.client_config(plain_http))
            .map_err(|e| format!("building registry client: {e}"))?;
        let auth = oci_auth(config, &registry, &repository, plain_http, access).await?;
        let repo = Repository {
            client,
            auth,
            registry,
            repository,
        };
        let operation = match access {
            Access::Pull => RegistryOperation::Pull,
            Access::Push => RegistryOperation::Push,
        };
        repo.client
            .auth(&repo.at("latest"), &repo.auth, operation)
            .await
            .map_err(|e| format!("authenticating to {}: {e}", repo.registry))?;
        Ok(repo)
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    pub fn at(&self, tag_or_digest: &str) -> oci_client::Reference {
        if tag_or_digest.starts_with("sha256:") {
            oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        } else {
            oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag_or_digest.to_owned(),
            )
        }
    }

    /// The manifest at a tag or digest; `None` when there is none.
    pub async fn manifest(&self, tag_or_digest: &str) -> Result<Option<Fetched>, String> {
        match self
            .client
            .pull_manifest_raw(
                &self.at(tag_or_digest),
                &self.auth,
                &[
                    media::OCI_MANIFEST,
                    media::OCI_INDEX,
                    DOCKER_MANIFEST,
                    DOCKER_LIST,
                ],
            )
            .await
        {
            Ok((bytes, digest)) => Ok(Some(Fetched {
                bytes: bytes.to_vec(),
                digest,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(format!("manifest {tag_or_digest}: {e}")),
        }
    }

    /// The platform manifests of an index (attestation manifests left
    /// out); nothing for a single image.
    pub async fn platform_manifests(&self, digest: &str) -> Result<Vec<String>, String> {
        let Some(fetched) = self.manifest(digest).await? else {
            return Err(format!("manifest {digest} not found"));
        };
        let doc: Value = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| format!("the manifest is not JSON: {e}"))?;
        let Some(children) = doc["manifests"].as_array() else {
            return Ok(Vec::new());
        };
        Ok(children
            .iter()
            .filter(|m| m["platform"]["os"].as_str() != Some("unknown"))
            .filter(|m| {
                m["annotations"]["vnd.docker.reference.type"].as_str()
                    != Some("attestation-manifest")
            })
            .filter_map(|m| m["digest"].as_str().map(str::to_owned))
            .collect())
    }

    /// Uploads `bytes` unless the registry has them.
    pub async fn push_bytes(&self, bytes: &[u8]) -> Result<String, String> {
        let digest = sha256_digest(bytes);
        if !self.has_blob(&digest).await {
            self.client
                .push_blob(&self.at("latest"), bytes.to_vec(), &digest)
                .await
                .map_err(|e| format!("blob {digest}: {e}"))?;
        }
        Ok(digest)
    }

    /// Streams a file up as the blob `digest` unless the registry has it.
    pub async fn push_file(&self, path: &Path, digest: &str, size: u64) -> Result<(), String> {
        if self.has_blob(digest).await {
            return Ok(());
        }
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let chunks = stream::unfold(file, |mut file| async move {
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(OciDistributionError::IoError(e)), file)),
            }
        });
        self.client
            .push_blob_stream(&self.at("latest"), chunks, digest, Some(size))
            .await
            .map_err(|e| format!("{}: uploading {digest}: {e}", path.display()))?;
        Ok(())
    }

    async fn has_blob(&self, digest: &str) -> bool {
        self.client
            .blob_exists(&self.at("latest"), digest)
            .await
            .unwrap_or(false)
    }

    /// PUTs a manifest at a tag or at its own digest.
    pub async fn put_manifest(
        &self,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &'static str,
    ) -> Result<(), String> {
        self.client
            .push_manifest_raw(
                &self.at(tag_or_digest),
                bytes.to_vec(),
                HeaderValue::from_static(media_type),
            )
            .await
            .map_err(|e| format!("manifest {tag_or_digest}: {e}"))?;
        Ok(())
    }

    /// Pushes a cosign signature of `digest` to its `sha256-<hex>.sig` tag.
    pub async fn push_signature(
        &self,
        digest: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let (manifest, config) = signature_manifest(payload, signature);
        self.push_bytes(payload).await?;
        self.push_bytes(&config).await?;
        self.put_manifest(
            &kiln_signer::verify::signature_tag(digest),
            &manifest,
            media::OCI_MANIFEST,
        )
        .await
    }

    /// The referrers of `subject` (the OCI 1.1 API, or the tag schema).
    pub async fn referrers(&self, subject: &str) -> Result<Vec<Value>, String> {
        let index = self
            .client
            .pull_referrers(&self.at(subject), None)
            .await
            .map_err(|e| format!("referrers of {subject}: {e}"))?;
        let value = serde_json::to_value(&index).map_err(|e| e.to_string())?;
        Ok(value["manifests"].as_array().cloned().unwrap_or_default())
    }

    /// Makes a referrer manifest pushed by digest listable: registries
    /// with the referrers API list it by its `subject`; for the others it
    /// is added to the index at the subject's `sha256-<hex>` tag.
    pub async fn list_referrer(&self, subject: &str, descriptor: Value) -> Result<(), String> {
        let digest = descriptor["digest"].as_str().unwrap_or_default().to_owned();
        let listed = self.referrers(subject).await?;
        if listed.iter().any(|d| d["digest"] == digest.as_str()) {
            return Ok(());
        }
        let tag = subject.replace(':', "-");
        let mut manifests: Vec<Value> = match self.manifest(&tag).await? {
            Some(f) => serde_json::from_slice::<Value>(&f.bytes)
                .ok()
                .and_then(|v| v["manifests"].as_array().cloned())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        manifests.retain(|d| d["digest"] != digest.as_str());
        manifests.push(descriptor);
        manifests.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
        self.put_manifest(&tag, &bytes, media::OCI_INDEX).await
    }

    /// Streams a blob to `sink`, returning its sha256 digest and size as
    /// received.
    pub async fn pull_blob_to(
        &self,
        digest: &str,
        size: i64,
        media_type: &str,
        sink: &mut (impl std::io::Write + ?Sized),
    ) -> Result<(String, u64), String> {
        use futures_util::StreamExt as _;
        let descriptor = oci_client::manifest::OciDescriptor {
            media_type: media_type.to_owned(),
            digest: digest.to_owned(),
            size,
            ..Default::default()
        };
        let mut stream = self
            .client
            .pull_blob_stream(&self.at(digest), &descriptor)
            .await
            .map_err(|e| format!("blob {digest}: {e}"))?
            .stream;
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("blob {digest}: {e}"))?;
            hasher.update(&chunk);
            total += chunk.len() as u64;
            sink.write_all(&chunk)
                .map_err(|e| format!("blob {digest}: {e}"))?;
        }
        Ok((format!("sha256:{}", hex::encode(hasher.finalize())), total))
    }
}
