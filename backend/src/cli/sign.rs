//! `kiln sign`: attach a cosign-compatible signature to an image in its
//! registry, at the `sha256-<hex>.sig` tag.

use std::path::PathBuf;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::{oci_auth, Access, RegistryConfig};
use kiln_signer::keys::Password;
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::verify::{signature_manifest, signature_tag};
use kiln_signer::PrivateKey;
use oci_client::RegistryOperation;
use sha2::{Digest as _, Sha256};

use super::exit;
use super::verify::{resolve_digest, runtime, RegistryArgs};

/// The media type of the signature manifest pushed.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Sign an image in its registry, as cosign does.
///
/// The tag is resolved to a digest, cosign's simple-signing payload for it
/// is signed with KEY (its password from KILN_KEY_PASSWORD or
/// COSIGN_PASSWORD, or asked for), and the signature is pushed to the
/// image's `sha256-<hex>.sig` tag, replacing any there. For a multi-arch
/// image the index and each platform manifest are signed, since a build
/// verifies the platform manifest it uses.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The private key (cosign's encrypted PEM, PKCS#8 or SEC1).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image, `NAME[:TAG]` or `NAME@DIGEST`.
    #[arg(value_name = "IMAGE-REF")]
    image: String,
}

pub fn run(args: Args) -> u8 {
    match sign(&args) {
        Ok(()) => exit::OK,
        Err((code, message)) => {
            eprintln!("kiln: {message}");
            code
        }
    }
}

type Failure = (u8, String);

fn usage(e: impl std::fmt::Display) -> Failure {
    (exit::USAGE, e.to_string())
}

fn failed(e: impl std::fmt::Display) -> Failure {
    (exit::INVALID, e.to_string())
}

fn sign(args: &Args) -> Result<(), Failure> {
    let reference =
        Reference::parse(&args.image).map_err(|e| usage(format!("{}: {e}", args.image)))?;
    let config = args.registry.config().map_err(usage)?;
    let key = PrivateKey::load(&args.key, || {
        Password::from_env_or_prompt(&format!("Password for {}: ", args.key.display()), false)
    })
    .map_err(usage)?;
    let runtime = runtime().map_err(failed)?;
    let digest = runtime
        .block_on(resolve_digest(&reference, &config))
        .map_err(failed)?;
    let docker_reference = format!("{}/{}", reference.registry(), reference.repository());
    runtime.block_on(async {
        let repo = Repository::connect(&reference, &config)
            .await
            .map_err(|e| failed(format!("{}: {e}", reference.name())))?;
        let mut digests = vec![digest.clone()];
        digests.extend(
            repo.platform_manifests(&digest)
                .await
                .map_err(|e| failed(format!("{}@{digest}: {e}", reference.name())))?,
        );
        for digest in &digests {
            let payload = SimpleSigning::new(&docker_reference, digest).to_bytes();
            let signature = key.sign(&payload);
            let tag = signature_tag(digest);
            repo.push_signature(&tag, &payload, &signature)
                .await
                .map_err(|e| failed(format!("pushing {}:{tag}: {e}", reference.name())))?;
            println!(
                "Signed {}@{digest} with key {}; pushed {}:{tag}",
                reference.name(),
                key.public_key().fingerprint(),
                reference.name()
            );
        }
        Ok(())
    })
}

/// The image's repository, reached with push rights. Pushes go to the
/// image's own registry, never to a mirror.
struct Repository {
    client: oci_client::Client,
    auth: oci_client::secrets::RegistryAuth,
    registry: String,
    repository: String,
}

impl Repository {
    async fn connect(reference: &Reference, config: &RegistryConfig) -> Result<Self, String> {
        let registry = reference.registry().to_owned();
        let repository = reference.repository().to_owned();
        let plain_http = config.allows_plain_http(&registry);
        let client = oci_client::Client::try_from(config.client_config(plain_http))
            .map_err(|e| format!("building registry client: {e}"))?;
        let auth = oci_auth(config, &registry, &repository, plain_http, Access::Push).await?;
        let target = oci_client::Reference::with_tag(
            registry.clone(),
            repository.clone(),
            "latest".to_owned(),
        );
        client
            .auth(&target, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| format!("authenticating: {e}"))?;
        Ok(Repository {
            client,
            auth,
            registry,
            repository,
        })
    }

    fn at(&self, tag_or_digest: &str) -> oci_client::Reference {
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

    /// The platform manifests of an index, which builds verify one by one
    /// (attestation manifests left out); nothing for a single image.
    async fn platform_manifests(&self, digest: &str) -> Result<Vec<String>, String> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(
                &self.at(digest),
                &self.auth,
                &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST],
            )
            .await
            .map_err(|e| format!("reading the manifest: {e}"))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("the manifest is not JSON: {e}"))?;
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

    /// Uploads the payload and config blobs, then PUTs the signature
    /// manifest at `tag`.
    async fn push_signature(
        &self,
        tag: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let target = self.at(tag);
        let (manifest, config_blob) = signature_manifest(payload, signature);
        for blob in [payload, config_blob.as_slice()] {
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(blob)));
            self.client
                .push_blob(&target, blob.to_vec(), &digest)
                .await
                .map_err(|e| format!("blob {digest}: {e}"))?;
        }
        self.client
            .push_manifest_raw(
                &target,
                manifest,
                reqwest::header::HeaderValue::from_static(OCI_MANIFEST),
            )
            .await
            .map_err(|e| format!("manifest: {e}"))?;
        Ok(())
    }
}
