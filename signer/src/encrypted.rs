//! cosign's encrypted private key: the PKCS#8 DER sealed with NaCl secretbox
//! (XSalsa20-Poly1305) under a key derived from the password with scrypt,
//! stored as JSON inside a PEM block. This is go-securesystemslib's
//! `encrypted` format as cosign and sigstore-rs use it:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<b64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// scrypt N written by kiln, cosign and sigstore-rs.
const SCRYPT_N: u32 = 32768;
/// The larger N cosign also reads.
const SCRYPT_N_HIGH: u32 = 65536;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    name: String,
    params: Params,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(rename = "N")]
    n: u32,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cipher {
    name: String,
    nonce: String,
}

pub(crate) fn random(len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    getrandom::fill(&mut buf).map_err(|e| Error::Random(e.to_string()))?;
    Ok(buf)
}

fn derive(password: &[u8], salt: &[u8], n: u32) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P)
        .map_err(|e| Error::MalformedKey(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    scrypt::scrypt(password, salt, &params, key.as_mut_slice())
        .map_err(|e| Error::MalformedKey(format!("scrypt: {e}")))?;
    Ok(key)
}

#[allow(deprecated)] // generic-array's from_slice, as crypto_secretbox 0.1 takes it
fn cipher(key: &[u8; KEY_LEN]) -> XSalsa20Poly1305 {
    XSalsa20Poly1305::new(crypto_secretbox::Key::from_slice(key))
}

#[allow(deprecated)]
fn nonce(bytes: &[u8]) -> &crypto_secretbox::Nonce {
    crypto_secretbox::Nonce::from_slice(bytes)
}

/// Seals `plaintext` (a PKCS#8 DER) under `password`; returns the JSON.
pub(crate) fn seal(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>> {
    let salt = random(SALT_LEN)?;
    let nonce_bytes = random(NONCE_LEN)?;
    let key = derive(password, &salt, SCRYPT_N)?;
    let ciphertext = cipher(&key)
        .encrypt(nonce(&nonce_bytes), plaintext)
        .map_err(|_| Error::MalformedKey("secretbox sealing failed".to_owned()))?;
    let data = Data {
        kdf: Kdf {
            name: "scrypt".to_owned(),
            params: Params {
                n: SCRYPT_N,
                r: SCRYPT_R,
                p: SCRYPT_P,
            },
            salt: STANDARD.encode(&salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".to_owned(),
            nonce: STANDARD.encode(&nonce_bytes),
        },
        ciphertext: STANDARD.encode(&ciphertext),
    };
    serde_json::to_vec(&data).map_err(|e| Error::MalformedKey(e.to_string()))
}

/// Opens the JSON `sealed` with `password`; returns the PKCS#8 DER.
pub(crate) fn open(sealed: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let bad = |m: String| Error::MalformedKey(format!("encrypted key: {m}"));
    let data: Data = serde_json::from_slice(sealed).map_err(|e| bad(e.to_string()))?;
    if data.kdf.name != "scrypt" {
        return Err(bad(format!("unknown KDF `{}`", data.kdf.name)));
    }
    if data.cipher.name != "nacl/secretbox" {
        return Err(bad(format!("unknown cipher `{}`", data.cipher.name)));
    }
    let p = &data.kdf.params;
    // Only cosign's parameters: anything else could make scrypt take
    // unbounded memory or time.
    if !((p.n == SCRYPT_N || p.n == SCRYPT_N_HIGH) && p.r == SCRYPT_R && p.p == SCRYPT_P) {
        return Err(bad(format!(
            "unexpected scrypt parameters N={} r={} p={}",
            p.n, p.r, p.p
        )));
    }
    let salt = STANDARD
        .decode(&data.kdf.salt)
        .map_err(|e| bad(format!("salt: {e}")))?;
    let nonce_bytes = STANDARD
        .decode(&data.cipher.nonce)
        .map_err(|e| bad(format!("nonce: {e}")))?;
    if nonce_bytes.len() != NONCE_LEN {
        return Err(bad(format!("nonce is {} bytes", nonce_bytes.len())));
    }
    let ciphertext = STANDARD
        .decode(&data.ciphertext)
        .map_err(|e| bad(format!("ciphertext: {e}")))?;
    let key = derive(password, &salt, p.n)?;
    cipher(&key)
        .decrypt(nonce(&nonce_bytes), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| Error::Decrypt)
}
