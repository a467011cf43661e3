//! `kiln verify-release`: check a published release, anyone's, with the
//! publisher's public key.

use std::path::PathBuf;

use kiln_backend::engine::publish::verify_release;
use kiln_signer::PublicKey;

use super::exit;
use super::verify::{runtime, RegistryArgs};

/// Verify a release in a registry: the cosign signature of its manifest,
/// each attestation (SBOM, SLSA provenance, measurement manifests: the
/// signature, that it refers to this release, its content), and every
/// layer's digest, streamed. Prints each check; exits 1 naming each that
/// failed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The publisher's public key (PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Save the artifacts here, each only once its digest matched.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The release, `REGISTRY/REPO:TAG` or `REGISTRY/REPO@DIGEST`.
    #[arg(value_name = "REF")]
    reference: String,
}

pub fn run(args: Args) -> u8 {
    let setup = || -> Result<_, String> {
        let key = PublicKey::load(&args.key).map_err(|e| e.to_string())?;
        let config = args.registry.config()?;
        if let Some(dir) = &args.output {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        Ok((key, config, runtime()?))
    };
    let (key, config, runtime) = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiln: {e}");
            return exit::USAGE;
        }
    };
    let report = runtime.block_on(verify_release(
        &args.reference,
        std::slice::from_ref(&key),
        &config,
        args.output.as_deref(),
    ));
    for check in &report.checks {
        let mark = if check.ok { "ok  " } else { "FAIL" };
        println!("{mark} {}: {}", check.what, check.detail);
    }
    if report.ok() {
        println!(
            "Verified OK: {} ({})",
            report.reference,
            report.digest.as_deref().unwrap_or_default()
        );
        exit::OK
    } else {
        for failure in report.failures() {
            eprintln!("kiln: {failure}");
        }
        eprintln!("kiln: {} did not verify", report.reference);
        exit::INVALID
    }
}
