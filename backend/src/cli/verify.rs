//! `kiln verify`: check the cosign signatures of images in a registry
//! against a public key or a trust policy.

use std::path::{Path, PathBuf};

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::{resolve_remote, PullError, RegistryConfig};
use kiln_backend::engine::store::{self, Platform};
use kiln_backend::engine::trust::fetch_signatures;
use kiln_shared::reference::Reference as SharedReference;
use kiln_signer::policy::{canonical_name, TrustPolicy, TrustRoot};
use kiln_signer::verify::verify_image;
use kiln_signer::PublicKey;

use super::cache::config::{default_path, registry_config, Flags};
use super::exit;

/// Verify the cosign signatures of images in their registry.
///
/// Each image's tag is resolved to its digest, and its signatures (the
/// `sha256-<hex>.sig` tag and OCI 1.1 referrers) are checked against a
/// public key or a trust policy. Prints one line per verified image with the
/// key that verified it; exits 1 listing every image that did not verify.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    trust: TrustSource,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The images, `NAME[:TAG]` or `NAME@DIGEST`.
    #[arg(required = true, value_name = "IMAGE-REF")]
    images: Vec<String>,
}

/// What the signatures are checked against.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TrustSource {
    /// A public key (PEM); every image must be signed with it.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// A trust policy (TOML); each image is checked against its org's keys.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

/// How registries are reached, as `kiln build` and `kiln cache` take it.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// A registry mirror, `URL` or `REGISTRY=URL`; repeatable.
    #[arg(long = "mirror", value_name = "[REGISTRY=]URL")]
    mirrors: Vec<String>,
    /// A registry that may be used over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// The registry settings: `$KILN_HOME/config.toml`, Docker's
    /// credentials and these flags.
    pub fn config(&self) -> Result<RegistryConfig, String> {
        let flags = Flags {
            mirrors: self.mirrors.clone(),
            insecure_registries: self.insecure_registries.clone(),
            jobs: None,
        };
        let config_file = store::kiln_home().map(|h| default_path(&h));
        registry_config(config_file.as_deref(), &flags)
    }
}

/// The digest `reference` points at in its registry (the index of a
/// multi-arch image, which is what cosign signs).
pub async fn resolve_digest(
    reference: &Reference,
    config: &RegistryConfig,
) -> Result<String, PullError> {
    match resolve_remote(reference, &Platform::host(), config).await {
        Ok(remote) => Ok(remote.root.digest.to_string()),
        // The index exists; only this machine's platform is missing from it.
        Err(PullError::PlatformNotFound { digest, .. }) => Ok(digest.to_string()),
        Err(e) => Err(e),
    }
}

/// A current-thread runtime for the CLI.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

pub fn run(args: Args) -> u8 {
    match verify(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kiln: {message}");
            exit::USAGE
        }
    }
}

/// A policy trusting `key` for exactly the repository of `image`.
fn key_policy(key: &PublicKey, key_path: &Path, image: &str) -> Option<TrustPolicy> {
    let reference = SharedReference::parse(image).ok()?;
    Some(TrustPolicy {
        require: Vec::new(),
        allow_disable_content_trust: false,
        roots: vec![TrustRoot {
            name: format!("--key {}", key_path.display()),
            prefix: canonical_name(&reference),
            keys: vec![key.clone()],
            identities: Vec::new(),
            trusted_root: None,
        }],
    })
}

fn verify(args: Args) -> Result<u8, String> {
    let key = match &args.trust.key {
        Some(path) => Some((PublicKey::load(path).map_err(|e| e.to_string())?, path)),
        None => None,
    };
    let policy = match &args.trust.policy {
        Some(path) => Some(TrustPolicy::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let config = args.registry.config()?;
    let runtime = runtime()?;
    let mut failures = Vec::new();
    for image in &args.images {
        let reference = match Reference::parse(image) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{image}: {e}"));
                continue;
            }
        };
        let digest = match runtime.block_on(resolve_digest(&reference, &config)) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{image}: {e}"));
                continue;
            }
        };
        let signatures = match runtime.block_on(fetch_signatures(&reference, &digest, &config)) {
            Ok(s) => s,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let per_key;
        let policy = match (&key, &policy) {
            (Some((key, path)), _) => match key_policy(key, path, image) {
                Some(p) => {
                    per_key = p;
                    &per_key
                }
                None => {
                    failures.push(format!("{image}: not an image reference"));
                    continue;
                }
            },
            (None, Some(policy)) => policy,
            (None, None) => return Err("one of --key or --policy is required".to_owned()),
        };
        match verify_image(image, &digest, &signatures, policy) {
            Ok(v) => println!(
                "Verified {} ({}) with key {} from trust root `{}` ({})",
                v.image, v.digest, v.key_fingerprint, v.trust_root, v.origin
            ),
            Err(rejection) => failures.push(rejection.to_string()),
        }
    }
    if failures.is_empty() {
        return Ok(exit::OK);
    }
    eprintln!(
        "kiln: {} of {} images did not verify:",
        failures.len(),
        args.images.len()
    );
    for f in &failures {
        eprintln!("  - {f}");
    }
    Ok(exit::INVALID)
}
