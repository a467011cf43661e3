//! `kiln measure ARTIFACT`: the TPM measurement manifest of a UKI or EFI
//! disk, predicted from its bytes.

use std::fs;
use std::path::PathBuf;

use kiln_backend::engine::measure::bank::Bank;
use kiln_backend::engine::measure::output;
use kiln_backend::engine::measure::Options;
use kiln_signer::daemon::SocketSigner;
use kiln_signer::{InProcessSigner, Password, Signer};

use super::exit;

/// Print the TPM measurement manifest of a UKI or EFI disk image: the
/// PCR values (2, 3, 4, 5, 6, 7, 9, 11) and events a TPM holds after it
/// boots, under the reference VM model `qemu-q35-ovmf-nodefaults`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also predict this bank (sha1, sha384); sha256 always is. Repeatable.
    #[arg(long = "bank", value_name = "BANK")]
    banks: Vec<Bank>,
    /// The spec digest to record (`sha256:<hex>`).
    #[arg(long, value_name = "DIGEST")]
    spec_digest: Option<String>,
    /// Write the manifest here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    signer: SignerArgs,
    /// The UKI (`.efi`) or raw EFI disk image.
    #[arg(value_name = "ARTIFACT")]
    artifact: PathBuf,
}

/// Who signs measurement manifests: optional, a key or the signer daemon.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignerArgs {
    /// Sign the manifest (a DSSE envelope, FILE.dsse) with this private
    /// key; its password comes from KILN_KEY_PASSWORD or COSIGN_PASSWORD.
    #[arg(
        long = "sign-key",
        value_name = "KEY",
        conflicts_with = "signer_socket"
    )]
    pub key: Option<PathBuf>,
    /// Sign the manifest through the signer daemon on this socket.
    #[arg(long, value_name = "SOCKET")]
    pub signer_socket: Option<PathBuf>,
}

impl SignerArgs {
    pub fn open(&self) -> Result<Option<Box<dyn Signer>>, String> {
        match (&self.key, &self.signer_socket) {
            (Some(key), _) => InProcessSigner::load(key, || {
                Password::from_env_or_prompt(&format!("Password for {}: ", key.display()), false)
            })
            .map(|s| Some(Box::new(s) as Box<dyn Signer>))
            .map_err(|e| e.to_string()),
            (None, Some(socket)) => SocketSigner::connect(socket)
                .map(|s| Some(Box::new(s) as Box<dyn Signer>))
                .map_err(|e| e.to_string()),
            (None, None) => Ok(None),
        }
    }
}

pub fn run(args: Args) -> u8 {
    exit::report(measure(&args).map(|()| exit::OK))
}

fn measure(args: &Args) -> Result<(), (u8, String)> {
    let usage = |m: String| (exit::USAGE, m);
    if let Some(d) = &args.spec_digest {
        check_spec_digest(d).map_err(usage)?;
    }
    let signer = args.signer.open().map_err(usage)?;
    if signer.is_some() && args.output.is_none() {
        return Err(usage(
            "signing writes FILE.dsse beside the manifest: give --output FILE".into(),
        ));
    }
    let kind = output::sniff(&args.artifact)
        .map_err(|e| usage(format!("{}: {e}", args.artifact.display())))?
        .ok_or_else(|| {
            (
                exit::INVALID,
                format!(
                    "{}: neither a UKI (a PE image with a .linux section) nor a GPT disk image (raw or in a qcow2, VHD or VMDK container) nor an ISO with an El Torito EFI image",
                    args.artifact.display()
                ),
            )
        })?;
    let opts = Options {
        banks: args.banks.clone(),
        spec_digest: args.spec_digest.clone(),
    };
    let manifest = output::measure_file(&args.artifact, kind, &opts)
        .map_err(|e| (exit::INVALID, e.to_string()))?;
    let bytes = manifest.to_bytes();
    match &args.output {
        None => {
            print!("{}", String::from_utf8_lossy(&bytes));
            Ok(())
        }
        Some(out) => {
            fs::write(out, &bytes).map_err(|e| usage(format!("{}: {e}", out.display())))?;
            if let Some(signer) = &signer {
                let envelope = kiln_backend::engine::measure::signed::sign(&bytes, signer.as_ref())
                    .map_err(|e| (exit::INVALID, e.to_string()))?;
                let env = output::envelope_path(out);
                fs::write(&env, envelope.to_json())
                    .map_err(|e| usage(format!("{}: {e}", env.display())))?;
                eprintln!(
                    "kiln: wrote {} and {} (signed by {})",
                    out.display(),
                    env.display(),
                    signer.public_key().fingerprint()
                );
            }
            Ok(())
        }
    }
}

/// `sha256:` and 64 lower-case hex digits.
pub fn check_spec_digest(d: &str) -> Result<(), String> {
    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--spec-digest `{d}` is not `sha256:` and 64 lower-case hex digits"
        ))
    }
}
