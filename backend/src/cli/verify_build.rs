//! `kiln verify-build`: check a build's signed provenance and that the
//! outputs beside it are the ones it names.

use std::path::{Path, PathBuf};

use kiln_backend::engine::build;
use kiln_backend::engine::provenance::SLSA_PROVENANCE_V1;
use kiln_signer::bundle::Bundle;
use kiln_signer::dsse::{Statement, INTOTO_PAYLOAD_TYPE};
use kiln_signer::PublicKey;

use super::exit;

/// Verify the signed provenance `kiln build --sign-key` wrote, and every
/// output it names.
///
/// The bundle's DSSE signature must verify with KEY, and each subject must
/// be a file in DIR whose sha256 matches. Prints what was checked; exits 1
/// naming every output that is missing or differs.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The public key (PEM) the provenance must be signed with.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where the outputs are [default: the bundle's directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// NAME-provenance.sigstore.json.
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
}

pub fn run(args: Args) -> u8 {
    match verify(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("kiln: {}: {message}", args.bundle.display());
            exit::INVALID
        }
    }
}

fn verify(args: &Args) -> Result<u8, String> {
    let key = PublicKey::load(&args.key).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&args.bundle).map_err(|e| e.to_string())?;
    let bundle = Bundle::from_json(&bytes).map_err(|e| e.to_string())?;
    let (key, payload_type, payload) = bundle
        .verify_dsse(std::slice::from_ref(&key))
        .map_err(|e| e.to_string())?;
    if payload_type != INTOTO_PAYLOAD_TYPE {
        return Err(format!("payload type `{payload_type}` is not in-toto"));
    }
    let statement = Statement::parse(&payload).map_err(|e| e.to_string())?;
    if statement.predicate_type != SLSA_PROVENANCE_V1 {
        return Err(format!(
            "predicate type `{}` is not SLSA provenance v1",
            statement.predicate_type
        ));
    }
    println!("signature: verified with key {}", key.fingerprint());
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => args
            .bundle
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
    };
    let mut failures = 0;
    for subject in &statement.subject {
        let Some(expected) = subject.digest.get("sha256") else {
            eprintln!("kiln: {}: no sha256 digest recorded", subject.name);
            failures += 1;
            continue;
        };
        if subject.name.contains('/') || subject.name.starts_with('.') {
            eprintln!("kiln: {}: not a plain file name", subject.name);
            failures += 1;
            continue;
        }
        match build::artifact_of(&dir.join(&subject.name)).map(|a| a.sha256) {
            Ok(actual) if &actual == expected => {
                println!("output {}: sha256:{actual} ok", subject.name)
            }
            Ok(actual) => {
                eprintln!(
                    "kiln: {}: sha256:{actual} differs from the provenance's sha256:{expected}",
                    subject.name
                );
                failures += 1;
            }
            Err(e) => {
                eprintln!("kiln: {}: {e}", subject.name);
                failures += 1;
            }
        }
    }
    if failures == 0 {
        println!("Verified OK: {} outputs", statement.subject.len());
        Ok(exit::OK)
    } else {
        eprintln!("kiln: {failures} output(s) failed verification");
        Ok(exit::INVALID)
    }
}
