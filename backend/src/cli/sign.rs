//! `kiln sign`: attach a cosign-compatible signature to an image in its
//! registry, at the `sha256-<hex>.sig` tag.

use std::path::PathBuf;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::{Credential, RegistryConfig};
use kiln_signer::keys::Password;
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::verify::{signature_manifest, signature_tag};
use kiln_signer::PrivateKey;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use sha2::{Digest as _, Sha256};

use super::exit;
use super::verify::{resolve_digest, runtime, RegistryArgs};

/// The media type of the signature manifest pushed.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Sign an image in its registry, as cosign does.
///
/// The tag is resolved to a digest, cosign's simple-signing payload for it
/// is signed with KEY (its password from KILN_KEY_PASSWORD or
/// COSIGN_PASSWORD, or asked for), and the signature is pushed to the
/// image's `sha256-<hex>.sig` tag, replacing any there.
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
    let payload = SimpleSigning::new(&docker_reference, &digest).to_bytes();
    let signature = key.sign(&payload);
    let tag = signature_tag(&digest);
    runtime
        .block_on(push_signature(
            &reference, &tag, &payload, &signature, &config,
        ))
        .map_err(|e| failed(format!("pushing {}:{tag}: {e}", reference.name())))?;
    println!(
        "Signed {} ({digest}) with key {}; pushed {}:{tag}",
        args.image,
        key.public_key().fingerprint(),
        reference.name()
    );
    Ok(())
}

/// Uploads the payload and config blobs, then PUTs the signature manifest
/// at `tag`. Pushes go to the image's own registry, never to a mirror.
async fn push_signature(
    reference: &Reference,
    tag: &str,
    payload: &[u8],
    signature: &[u8],
    config: &RegistryConfig,
) -> Result<(), String> {
    let registry = reference.registry().to_owned();
    let client =
        oci_client::Client::try_from(config.client_config(config.allows_plain_http(&registry)))
            .map_err(|e| format!("building registry client: {e}"))?;
    let auth = match config.credentials.get(&registry) {
        Some(Credential::Basic { username, password }) => RegistryAuth::Basic(username, password),
        Some(Credential::RegistryToken(token)) => RegistryAuth::Bearer(token),
        _ => RegistryAuth::Anonymous,
    };
    let target = oci_client::Reference::with_tag(
        registry,
        reference.repository().to_owned(),
        tag.to_owned(),
    );
    client
        .auth(&target, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| format!("authenticating: {e}"))?;
    let (manifest, config_blob) = signature_manifest(payload, signature);
    for blob in [payload, config_blob.as_slice()] {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(blob)));
        client
            .push_blob(&target, blob.to_vec(), &digest)
            .await
            .map_err(|e| format!("blob {digest}: {e}"))?;
    }
    client
        .push_manifest_raw(
            &target,
            manifest,
            reqwest::header::HeaderValue::from_static(OCI_MANIFEST),
        )
        .await
        .map_err(|e| format!("manifest: {e}"))?;
    Ok(())
}
