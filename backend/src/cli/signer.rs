//! `kiln keys`, `kiln signer serve`, `kiln sign-blob` and `kiln verify-blob`:
//! thin wrappers over `kiln_signer`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_signer::bundle::Bundle;
use kiln_signer::daemon::{Daemon, SocketSigner};
use kiln_signer::keys::{
    check_private_file_mode, write_private_file, Zeroizing, COSIGN_ENCRYPTED_LABEL,
    SIGSTORE_ENCRYPTED_LABEL,
};
use kiln_signer::{InProcessSigner, Password, PrivateKey, PublicKey, Signer};

use super::exit::{self, usage, Failure};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate, import and export signing keys (ECDSA P-256).
    #[command(subcommand, visible_alias = "key")]
    Keys(Keys),
    /// The signer daemon: holds a key and signs over a Unix socket.
    #[command(subcommand)]
    Signer(SignerCommand),
    /// Sign a file into a sigstore bundle (v0.3, key-based).
    SignBlob(SignBlobArgs),
    /// Verify a file against a sigstore bundle with a public key.
    VerifyBlob(VerifyBlobArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum Keys {
    /// Generate a key pair: PREFIX.key (cosign's encrypted PEM, or PKCS#8
    /// with --format pkcs8) and PREFIX.pub. The password comes from
    /// KILN_KEY_PASSWORD or COSIGN_PASSWORD, or is asked for.
    Generate {
        /// Output files are PREFIX.key and PREFIX.pub.
        #[arg(long, default_value = "cosign")]
        output_key_prefix: String,
        #[arg(long, value_enum, default_value_t = KeyFormatArg::Cosign)]
        format: KeyFormatArg,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Import a PKCS#8 or SEC1 P-256 key (as openssl writes them) into
    /// cosign's encrypted format: PREFIX.key and PREFIX.pub.
    Import {
        /// The key to import.
        key: PathBuf,
        #[arg(long, default_value = "import-cosign")]
        output_key_prefix: String,
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a private key file (PEM).
    ExportPublic {
        /// The private key.
        #[arg(long)]
        key: PathBuf,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyFormatArg {
    /// cosign's encrypted PEM (`ENCRYPTED COSIGN PRIVATE KEY`).
    Cosign,
    /// cosign 2.x's label (`ENCRYPTED SIGSTORE PRIVATE KEY`), same content.
    Sigstore,
    /// Unencrypted PKCS#8 (`PRIVATE KEY`), as openssl writes it.
    Pkcs8,
}

#[derive(Debug, clap::Subcommand)]
pub enum SignerCommand {
    /// Serve signatures with KEY on a Unix socket (mode 0600). The key file
    /// must be readable by its owner only; its password comes from
    /// KILN_KEY_PASSWORD or COSIGN_PASSWORD, or is asked for once.
    Serve {
        /// The socket to create.
        #[arg(long)]
        socket: PathBuf,
        /// The private key.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Where signatures come from: a key file, or a signer daemon.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct SignerSource {
    /// Sign in process with this private key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Sign through the signer daemon on this socket.
    #[arg(long)]
    signer_socket: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SignBlobArgs {
    #[command(flatten)]
    signer: SignerSource,
    /// Where to write the bundle [default: FILE.sigstore.json].
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The file to sign.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyBlobArgs {
    /// The public key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// The bundle [default: FILE.sigstore.json].
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The signed file.
    file: PathBuf,
}

pub fn run(command: Command) -> u8 {
    let result = match command {
        Command::Keys(k) => keys(k),
        Command::Signer(SignerCommand::Serve { socket, key }) => serve(&socket, &key),
        Command::SignBlob(a) => sign_blob(a),
        Command::VerifyBlob(a) => verify_blob(a),
    };
    exit::report(result)
}

fn load_key(path: &Path) -> Result<PrivateKey, Failure> {
    PrivateKey::load(path, || {
        Password::from_env_or_prompt(&format!("Password for {}: ", path.display()), false)
    })
    .map_err(usage)
}

fn write_pair(
    key: &PrivateKey,
    prefix: &str,
    format: KeyFormatArg,
    force: bool,
) -> Result<(), Failure> {
    let key_path = PathBuf::from(format!("{prefix}.key"));
    let pub_path = PathBuf::from(format!("{prefix}.pub"));
    for p in [&key_path, &pub_path] {
        if !force && p.exists() {
            return Err(usage(format!(
                "{} exists; pass --force to replace it",
                p.display()
            )));
        }
    }
    let private = match format {
        KeyFormatArg::Pkcs8 => key.to_pkcs8_pem().map_err(usage)?,
        KeyFormatArg::Cosign | KeyFormatArg::Sigstore => {
            let password =
                Password::from_env_or_prompt("Password for the new key: ", true).map_err(usage)?;
            let label = if format == KeyFormatArg::Cosign {
                COSIGN_ENCRYPTED_LABEL
            } else {
                SIGSTORE_ENCRYPTED_LABEL
            };
            Zeroizing::new(key.to_encrypted_pem(&password, label).map_err(usage)?)
        }
    };
    write_private_file(&key_path, private.as_bytes(), true).map_err(usage)?;
    fs::write(&pub_path, key.public_key().to_pem())
        .map_err(|e| usage(format!("{}: {e}", pub_path.display())))?;
    eprintln!(
        "Private key written to {} (mode 0600), public key to {}\nFingerprint: {}",
        key_path.display(),
        pub_path.display(),
        key.public_key().fingerprint()
    );
    Ok(())
}

fn keys(command: Keys) -> Result<u8, Failure> {
    match command {
        Keys::Generate {
            output_key_prefix,
            format,
            force,
        } => {
            let key = PrivateKey::generate().map_err(usage)?;
            write_pair(&key, &output_key_prefix, format, force)?;
        }
        Keys::Import {
            key,
            output_key_prefix,
            force,
        } => {
            let imported = load_key(&key)?;
            write_pair(&imported, &output_key_prefix, KeyFormatArg::Cosign, force)?;
        }
        Keys::ExportPublic { key, output } => {
            let pem = load_key(&key)?.public_key().to_pem();
            match output {
                Some(path) => {
                    fs::write(&path, pem).map_err(|e| usage(format!("{}: {e}", path.display())))?
                }
                None => print!("{pem}"),
            }
        }
    }
    Ok(exit::OK)
}

fn serve(socket: &Path, key_path: &Path) -> Result<u8, Failure> {
    check_private_file_mode(key_path).map_err(usage)?;
    let key = load_key(key_path)?;
    let fingerprint = key.public_key().fingerprint().to_owned();
    let daemon = Daemon::bind(socket, Arc::new(InProcessSigner::new(key))).map_err(usage)?;
    eprintln!(
        "kiln signer: serving {fingerprint} on {}",
        daemon.path().display()
    );
    daemon
        .serve(|line| eprintln!("kiln signer: {line}"))
        .map_err(|e| (exit::INVALID, e.to_string()))?;
    Ok(exit::OK)
}

fn open_signer(source: &SignerSource) -> Result<Box<dyn Signer>, Failure> {
    signer_from(source.key.as_deref(), source.signer_socket.as_deref())
        .map_err(usage)?
        .ok_or_else(|| usage("give --key or --signer-socket"))
}

/// The signer a command was given: a key file (its password asked for
/// when encrypted) or the signer daemon's socket; `None` for neither.
pub(crate) fn signer_from(
    key: Option<&Path>,
    socket: Option<&Path>,
) -> Result<Option<Box<dyn Signer>>, String> {
    match (key, socket) {
        (Some(path), _) => {
            let key = load_key(path).map_err(|(_, message)| message)?;
            Ok(Some(Box::new(InProcessSigner::new(key))))
        }
        (None, Some(socket)) => Ok(Some(Box::new(
            SocketSigner::connect(socket)
                .map_err(|e| format!("signer daemon {}: {e}", socket.display()))?,
        ))),
        (None, None) => Ok(None),
    }
}

fn bundle_path(file: &Path, bundle: Option<PathBuf>) -> PathBuf {
    bundle.unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".sigstore.json");
        PathBuf::from(name)
    })
}

fn sign_blob(args: SignBlobArgs) -> Result<u8, Failure> {
    let signer = open_signer(&args.signer)?;
    let data = fs::read(&args.file).map_err(|e| usage(format!("{}: {e}", args.file.display())))?;
    let bundle = Bundle::sign_blob(signer.as_ref(), &data).map_err(usage)?;
    let out = bundle_path(&args.file, args.bundle);
    fs::write(&out, bundle.to_json()).map_err(|e| usage(format!("{}: {e}", out.display())))?;
    eprintln!(
        "Signed {} with {}; bundle written to {}",
        args.file.display(),
        signer.public_key().fingerprint(),
        out.display()
    );
    Ok(exit::OK)
}

fn verify_blob(args: VerifyBlobArgs) -> Result<u8, Failure> {
    let key = PublicKey::load(&args.key).map_err(usage)?;
    let data = fs::read(&args.file).map_err(|e| usage(format!("{}: {e}", args.file.display())))?;
    let path = bundle_path(&args.file, args.bundle);
    let bytes = fs::read(&path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let verified = Bundle::from_json(&bytes).and_then(|b| {
        b.verify_blob(&data, std::slice::from_ref(&key))
            .map(|k| k.fingerprint().to_owned())
    });
    match verified {
        Ok(fingerprint) => {
            println!(
                "Verified OK: {} signed by {fingerprint}",
                args.file.display()
            );
            Ok(exit::OK)
        }
        Err(e) => Err((
            exit::INVALID,
            format!("{}: verification failed: {e}", args.file.display()),
        )),
    }
}
