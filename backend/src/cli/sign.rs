//! `kiln sign`: attach a cosign-compatible signature to an image in its
//! registry, at the `sha256-<hex>.sig` tag.

use std::path::PathBuf;

use kiln_backend::engine::publish::Repository;
use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::Access;
use kiln_signer::keys::Password;
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::verify::signature_tag;
use kiln_signer::PrivateKey;

use super::exit::{self, failed, usage, Failure};
use super::verify::{resolve_digest, runtime, RegistryArgs};

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
    exit::report(sign(&args).map(|()| exit::OK))
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
        let repo = Repository::connect(&reference, &config, Access::Push)
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
            repo.push_signature(digest, &payload, &signature)
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
