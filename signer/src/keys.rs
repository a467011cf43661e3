//! ECDSA P-256 keys: generated, loaded and saved as cosign's encrypted PEM,
//! PKCS#8 PEM or DER, or SEC1 (`EC PRIVATE KEY`, as `openssl ecparam`
//! writes); public keys as SubjectPublicKeyInfo PEM.
//!
//! The private scalar lives in a [`p256::ecdsa::SigningKey`], which zeroizes
//! itself on drop; every intermediate encoding is held in
//! [`zeroize::Zeroizing`]. No `Debug` or `Display` impl shows key bytes.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sha2::{Digest as _, Sha256};
pub use zeroize::Zeroizing;

use crate::encrypted;
use crate::error::{Error, Result};
use crate::pem;

/// The PEM label cosign 1.x and containers/image write and read.
pub const COSIGN_ENCRYPTED_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
/// The PEM label cosign 2.x and sigstore-rs write; both labels are read.
pub const SIGSTORE_ENCRYPTED_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// Environment variable read first for a key password.
pub const PASSWORD_ENV: &str = "KILN_KEY_PASSWORD";
/// cosign's variable, read when [`PASSWORD_ENV`] is unset.
pub const COSIGN_PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// A key password, zeroized on drop and never shown.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Password(Zeroizing::new(password.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The password from [`PASSWORD_ENV`] or [`COSIGN_PASSWORD_ENV`] (an
    /// empty value is an empty password, as in cosign), if either is set.
    pub fn from_env() -> Option<Self> {
        [PASSWORD_ENV, COSIGN_PASSWORD_ENV]
            .iter()
            .find_map(|var| std::env::var(var).ok())
            .map(Password::new)
    }

    /// The password from the environment, else asked on the terminal with
    /// `prompt` (twice when `confirm`, for a new key).
    pub fn from_env_or_prompt(prompt: &str, confirm: bool) -> Result<Self> {
        if let Some(p) = Self::from_env() {
            return Ok(p);
        }
        let first = crate::prompt::read_password(prompt)?;
        if confirm {
            let second = crate::prompt::read_password("Confirm password: ")?;
            if first.as_bytes() != second.as_bytes() {
                return Err(Error::Mismatch("the passwords differ".to_owned()));
            }
        }
        Ok(first)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// How a private key is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// cosign's encrypted PEM (scrypt + secretbox).
    CosignEncrypted,
    /// Unencrypted PKCS#8 PEM (`PRIVATE KEY`).
    Pkcs8,
    /// Unencrypted SEC1 PEM (`EC PRIVATE KEY`).
    Sec1,
}

/// What kind of key file `text` holds, without decrypting it.
pub fn detect_format(text: &str) -> Result<KeyFormat> {
    for block in pem::parse_all(text)? {
        match block.label.as_str() {
            COSIGN_ENCRYPTED_LABEL | SIGSTORE_ENCRYPTED_LABEL => {
                return Ok(KeyFormat::CosignEncrypted)
            }
            "PRIVATE KEY" => return Ok(KeyFormat::Pkcs8),
            "EC PRIVATE KEY" => return Ok(KeyFormat::Sec1),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(Error::UnsupportedKey(
                    "PKCS#8 encrypted with a passphrase (`ENCRYPTED PRIVATE KEY`); decrypt it with `openssl pkey` or use cosign's format".to_owned(),
                ))
            }
            _ => {}
        }
    }
    Err(Error::MalformedKey(
        "no private key PEM block found".to_owned(),
    ))
}

/// An ECDSA P-256 private key.
pub struct PrivateKey {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.public.fingerprint())
    }
}

impl PrivateKey {
    /// A fresh key from the system's random number generator.
    pub fn generate() -> Result<Self> {
        let key = SigningKey::try_generate().map_err(|e| Error::Random(e.to_string()))?;
        Ok(Self::from_signing_key(key))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        PrivateKey { key, public }
    }

    /// A key from PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        SigningKey::from_pkcs8_der(der)
            .map(Self::from_signing_key)
            .map_err(|e| key_error(&e.to_string()))
    }

    /// A key from an unencrypted PEM file's text: PKCS#8 or SEC1.
    pub fn from_pem(text: &str) -> Result<Self> {
        for block in pem::parse_all(text)? {
            match block.label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&block.der),
                "EC PRIVATE KEY" => {
                    let secret = p256::SecretKey::from_sec1_der(&block.der)
                        .map_err(|e| key_error(&e.to_string()))?;
                    return Ok(Self::from_signing_key(SigningKey::from(&secret)));
                }
                COSIGN_ENCRYPTED_LABEL | SIGSTORE_ENCRYPTED_LABEL => {
                    return Err(Error::MalformedKey(
                        "the key is encrypted: a password is needed".to_owned(),
                    ))
                }
                _ => {}
            }
        }
        detect_format(text).and(Err(Error::MalformedKey(
            "no private key PEM block found".to_owned(),
        )))
    }

    /// A key from cosign's encrypted PEM.
    pub fn from_encrypted_pem(text: &str, password: &Password) -> Result<Self> {
        let block = pem::parse_all(text)?
            .into_iter()
            .find(|b| b.label == COSIGN_ENCRYPTED_LABEL || b.label == SIGSTORE_ENCRYPTED_LABEL)
            .ok_or_else(|| {
                Error::MalformedKey(format!(
                    "no `{COSIGN_ENCRYPTED_LABEL}` or `{SIGSTORE_ENCRYPTED_LABEL}` PEM block"
                ))
            })?;
        let der = encrypted::open(&block.der, password.as_bytes())?;
        Self::from_pkcs8_der(&der)
    }

    /// Loads a key file of any supported format. `password` is called only
    /// when the key is encrypted.
    pub fn load(path: &Path, password: impl FnOnce() -> Result<Password>) -> Result<Self> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        match detect_format(&text)? {
            KeyFormat::CosignEncrypted => Self::from_encrypted_pem(&text, &password()?),
            KeyFormat::Pkcs8 | KeyFormat::Sec1 => Self::from_pem(&text),
        }
    }

    /// The key as unencrypted PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| Error::MalformedKey(e.to_string()))?;
        Ok(pem::encode("PRIVATE KEY", der.as_bytes()))
    }

    /// The key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| Error::MalformedKey(e.to_string()))?;
        Ok(Zeroizing::new(der.as_bytes().to_vec()))
    }

    /// The key in cosign's encrypted PEM under `password`, with `label`
    /// ([`COSIGN_ENCRYPTED_LABEL`] is the one every cosign reads).
    pub fn to_encrypted_pem(&self, password: &Password, label: &str) -> Result<String> {
        let der = self.to_pkcs8_der()?;
        let sealed = encrypted::seal(&der, password.as_bytes())?;
        Ok(pem::encode(label, &sealed).to_string())
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// An ECDSA-SHA256 signature of `payload`, ASN.1 DER (as cosign and
    /// `openssl dgst -sha256 -sign` write it).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        let signature: DerSignature = self.key.sign(payload);
        signature.as_bytes().to_vec()
    }
}

fn key_error(message: &str) -> Error {
    Error::UnsupportedKey(format!("{message} (kiln uses ECDSA P-256 keys only)"))
}

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint)
    }
}

impl PublicKey {
    fn from_verifying_key(key: VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(&der)));
        PublicKey { key, fingerprint }
    }

    /// A key from SubjectPublicKeyInfo DER.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        VerifyingKey::from_public_key_der(der)
            .map(Self::from_verifying_key)
            .map_err(|e| key_error(&format!("public key: {e}")))
    }

    /// A key from a `PUBLIC KEY` PEM block.
    pub fn from_pem(text: &str) -> Result<Self> {
        let block = pem::parse_all(text)?
            .into_iter()
            .find(|b| b.label == "PUBLIC KEY")
            .ok_or_else(|| Error::MalformedKey("no `PUBLIC KEY` PEM block".to_owned()))?;
        Self::from_der(&block.der)
    }

    /// Reads a `PUBLIC KEY` PEM file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&text).map_err(|e| match e {
            Error::MalformedKey(m) => Error::MalformedKey(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// SubjectPublicKeyInfo DER.
    pub fn to_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.to_der()).to_string()
    }

    /// `sha256:<hex>` of the SubjectPublicKeyInfo DER: the key's name in
    /// messages, bundles' key hints and provenance.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Checks an ECDSA-SHA256 `signature` (ASN.1 DER, or the 64-byte
    /// `r || s` form) of `payload`.
    pub fn verify(&self, payload: &[u8], signature: &[u8]) -> Result<()> {
        let parsed = match DerSignature::from_bytes(signature) {
            Ok(der) => {
                Signature::try_from(der).map_err(|e| Error::MalformedSignature(e.to_string()))?
            }
            Err(der_error) if signature.len() == 64 => Signature::from_slice(signature)
                .map_err(|_| Error::MalformedSignature(der_error.to_string()))?,
            Err(e) => return Err(Error::MalformedSignature(e.to_string())),
        };
        self.key
            .verify(payload, &parsed)
            .map_err(|_| Error::BadSignature(self.fingerprint.clone()))
    }
}

/// Writes `contents` to `path` readable and writable by the owner only
/// (mode 0600), replacing any earlier file atomically. Refuses to replace a
/// file unless `overwrite`.
pub fn write_private_file(path: &Path, contents: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "refusing to overwrite an existing key file",
            ),
        ));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Fails unless the key file at `path` is accessible to its owner only (no
/// group or other permission bits), as ssh checks its keys.
pub fn check_private_file_mode(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the key file has mode {mode:03o}: other users can read it; run `chmod 600` on it"
                ),
            ),
        ));
    }
    Ok(())
}
