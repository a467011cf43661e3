//! Keyless cosign signatures: a short-lived Fulcio certificate instead of a
//! long-lived key. One verifies when
//! - the certificate chains to a certificate authority of the policy's
//!   sigstore trusted root, each link's signature checked;
//! - it names a trusted identity: its issuer extension equals the policy's
//!   issuer and a subject alternative name matches the subject regex;
//! - the payload signature verifies with the certificate's key;
//! - a Rekor log of the trusted root promised, by a signed entry timestamp,
//!   to log exactly this signature, payload hash and certificate, at a time
//!   inside the certificate's and the authority's validity.
//!
//! Everything is checked offline against the trusted root file; nothing is
//! fetched from Fulcio or Rekor.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use serde::Deserialize;
use sha2::{Digest as _, Sha256, Sha384};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::spki::ObjectIdentifier;
use x509_cert::Certificate;

use crate::policy::KeylessIdentity;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// Fulcio's OIDC issuer extension: the raw string (v1), and DER UTF8String (v2).
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Longest chain walked from the leaf to a self-signed authority.
const MAX_CHAIN: usize = 8;

/// Why a keyless signature was refused, or a trusted root is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeylessError {
    #[error("trusted root {path}: {message}")]
    Root { path: String, message: String },
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("the certificate does not chain to a certificate authority of the trusted root: {0}")]
    Chain(String),
    #[error("the certificate's identity {found} is not trusted (want {wanted})")]
    Identity { found: String, wanted: String },
    #[error("the payload signature does not verify with the certificate's key")]
    Signature,
    #[error("transparency log: {0}")]
    Log(String),
}

type Result<T> = std::result::Result<T, KeylessError>;

/// A sigstore trusted root (`trusted_root.json`): the Fulcio authorities
/// and Rekor logs trusted, each with its validity window.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    authorities: Vec<Authority>,
    logs: Vec<Log>,
}

#[derive(Debug, Clone)]
struct Authority {
    /// DER certificates, leaf-most first, as the file lists them.
    certificates: Vec<Vec<u8>>,
    window: Window,
}

#[derive(Debug, Clone)]
struct Log {
    /// Hex SHA-256 of the key's SubjectPublicKeyInfo: Rekor's log id.
    log_id: String,
    key: EcKey,
    window: Window,
}

/// Unix seconds; either end may be open.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: Option<i64>,
    end: Option<i64>,
}

impl Window {
    fn contains(&self, t: i64) -> bool {
        self.start.is_none_or(|s| t >= s) && self.end.is_none_or(|e| t <= e)
    }
}

#[derive(Debug, Clone)]
enum EcKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
}

impl EcKey {
    /// From a DER SubjectPublicKeyInfo.
    fn from_spki_der(der: &[u8]) -> std::result::Result<Self, String> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("public key: {e}"))?;
        Self::from_spki(spki.algorithm.oid, spki.algorithm.parameters_oid().ok(), {
            spki.subject_public_key.raw_bytes()
        })
    }

    fn from_spki(
        algorithm: ObjectIdentifier,
        curve: Option<ObjectIdentifier>,
        point: &[u8],
    ) -> std::result::Result<Self, String> {
        if algorithm != EC_PUBLIC_KEY {
            return Err(format!("key algorithm {algorithm} is not EC"));
        }
        match curve {
            Some(c) if c == P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(EcKey::P256)
                .map_err(|e| format!("P-256 key: {e}")),
            Some(c) if c == P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map(EcKey::P384)
                .map_err(|e| format!("P-384 key: {e}")),
            other => Err(format!("unsupported curve {other:?}")),
        }
    }

    fn of(cert: &Certificate) -> std::result::Result<Self, String> {
        let der = cert
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| format!("public key: {e}"))?;
        Self::from_spki_der(&der)
    }

    /// Checks a DER ECDSA signature over `message` hashed with `hash`.
    fn verify(&self, hash: Hash, message: &[u8], der_signature: &[u8]) -> bool {
        let prehash = hash.digest(message);
        match self {
            EcKey::P256(k) => p256::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
            EcKey::P384(k) => p384::ecdsa::Signature::from_der(der_signature)
                .is_ok_and(|s| k.verify_prehash(&prehash, &s).is_ok()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    fn of_algorithm(oid: ObjectIdentifier) -> Option<Hash> {
        match oid {
            o if o == ECDSA_SHA256 => Some(Hash::Sha256),
            o if o == ECDSA_SHA384 => Some(Hash::Sha384),
            _ => None,
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootFile {
    #[serde(default)]
    certificate_authorities: Vec<AuthorityFile>,
    #[serde(default)]
    tlogs: Vec<LogFile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorityFile {
    cert_chain: CertChainFile,
    #[serde(default)]
    valid_for: Option<WindowFile>,
}

#[derive(Deserialize)]
struct CertChainFile {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogFile {
    public_key: LogKeyFile,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogKeyFile {
    raw_bytes: String,
    #[serde(default)]
    valid_for: Option<WindowFile>,
}

#[derive(Deserialize)]
struct WindowFile {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

impl TrustedRoot {
    /// Reads and checks a trusted root file.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |message: String| KeylessError::Root {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        Self::from_json(&bytes).map_err(bad)
    }

    /// Parses a trusted root; the message says what is wrong.
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Self, String> {
        let file: RootFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut authorities = Vec::new();
        for (i, ca) in file.certificate_authorities.iter().enumerate() {
            let mut certificates = Vec::new();
            for c in &ca.cert_chain.certificates {
                let der = STANDARD
                    .decode(&c.raw_bytes)
                    .map_err(|e| format!("certificate authority {}: base64: {e}", i + 1))?;
                Certificate::from_der(&der)
                    .map_err(|e| format!("certificate authority {}: {e}", i + 1))?;
                certificates.push(der);
            }
            if certificates.is_empty() {
                return Err(format!(
                    "certificate authority {} has no certificates",
                    i + 1
                ));
            }
            authorities.push(Authority {
                certificates,
                window: window(ca.valid_for.as_ref())?,
            });
        }
        if authorities.is_empty() {
            return Err("no certificate authorities".to_owned());
        }
        let mut logs = Vec::new();
        for (i, log) in file.tlogs.iter().enumerate() {
            let der = STANDARD
                .decode(&log.public_key.raw_bytes)
                .map_err(|e| format!("transparency log {}: base64: {e}", i + 1))?;
            let key = EcKey::from_spki_der(&der)
                .map_err(|e| format!("transparency log {}: {e}", i + 1))?;
            logs.push(Log {
                log_id: hex::encode(Sha256::digest(&der)),
                key,
                window: window(log.public_key.valid_for.as_ref())?,
            });
        }
        Ok(TrustedRoot { authorities, logs })
    }

    /// The DER certificates of every authority, for chain building.
    fn authority_certificates(&self) -> impl Iterator<Item = (&[u8], Window)> {
        self.authorities
            .iter()
            .flat_map(|a| a.certificates.iter().map(move |c| (c.as_slice(), a.window)))
    }
}

fn window(w: Option<&WindowFile>) -> std::result::Result<Window, String> {
    let Some(w) = w else {
        return Ok(Window::default());
    };
    let parse = |s: &Option<String>| -> std::result::Result<Option<i64>, String> {
        s.as_deref()
            .map(|t| rfc3339_seconds(t).ok_or_else(|| format!("bad time `{t}`")))
            .transpose()
    };
    Ok(Window {
        start: parse(&w.start)?,
        end: parse(&w.end)?,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to Unix seconds.
fn rfc3339_seconds(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h = rest.get(1..3)?.parse::<i64>().ok()?;
            let m = rest.get(4..6)?.parse::<i64>().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), after H. Hinnant.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// What a verified keyless signature was made by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub issuer: String,
    pub subject: String,
    /// `sha256:` fingerprint of the leaf certificate.
    pub certificate: String,
    pub log_index: i64,
    pub integrated_time: i64,
}

/// One keyless signature as a cosign signature layer carries it.
#[derive(Debug, Clone, Copy)]
pub struct KeylessSignature<'a> {
    /// The `dev.sigstore.cosign/certificate` annotation (PEM).
    pub certificate_pem: &'a str,
    /// The `dev.sigstore.cosign/bundle` annotation (Rekor's promise).
    pub rekor_bundle: Option<&'a str>,
    pub payload: &'a [u8],
    /// DER ECDSA signature over the payload.
    pub signature: &'a [u8],
}

/// Verifies a keyless signature against `root` and `identities`.
pub fn verify(
    sig: &KeylessSignature<'_>,
    root: &TrustedRoot,
    identities: &[KeylessIdentity],
) -> Result<VerifiedIdentity> {
    let leaf_der = pem_certificate(sig.certificate_pem)?;
    let leaf =
        Certificate::from_der(&leaf_der).map_err(|e| KeylessError::Certificate(e.to_string()))?;
    let key = EcKey::of(&leaf).map_err(KeylessError::Certificate)?;
    if !key.verify(Hash::Sha256, sig.payload, sig.signature) {
        return Err(KeylessError::Signature);
    }
    let (issuer, subjects) = identity_of(&leaf)?;
    let subject = identities
        .iter()
        .filter(|id| id.issuer == issuer)
        .find_map(|id| subjects.iter().find(|s| full_match(&id.subject, s)))
        .cloned()
        .ok_or_else(|| KeylessError::Identity {
            found: format!("{} from issuer {issuer}", subjects.join(", ")),
            wanted: identities
                .iter()
                .map(|id| format!("`{}` from {}", id.subject.as_str(), id.issuer))
                .collect::<Vec<_>>()
                .join(" or "),
        })?;

    let bundle = sig.rekor_bundle.ok_or_else(|| {
        KeylessError::Log("no Rekor bundle: the signature was never logged".to_owned())
    })?;
    let entry = check_log_entry(bundle, root, &leaf_der, sig)?;

    let validity = leaf.tbs_certificate().validity();
    let not_before = validity.not_before.to_unix_duration().as_secs() as i64;
    let not_after = validity.not_after.to_unix_duration().as_secs() as i64;
    if entry.integrated_time < not_before || entry.integrated_time > not_after {
        return Err(KeylessError::Log(format!(
            "logged at {} while the certificate is valid only from {not_before} to {not_after}",
            entry.integrated_time
        )));
    }
    check_chain(&leaf, root, entry.integrated_time)?;
    Ok(VerifiedIdentity {
        issuer,
        subject,
        certificate: format!("sha256:{}", hex::encode(Sha256::digest(&leaf_der))),
        log_index: entry.log_index,
        integrated_time: entry.integrated_time,
    })
}

fn full_match(re: &regex::Regex, s: &str) -> bool {
    re.find(s)
        .is_some_and(|m| m.start() == 0 && m.end() == s.len())
}

fn pem_certificate(pem: &str) -> Result<Vec<u8>> {
    let blocks =
        crate::pem::parse_all(pem).map_err(|e| KeylessError::Certificate(e.to_string()))?;
    blocks
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .map(|b| b.der.to_vec())
        .ok_or_else(|| KeylessError::Certificate("no CERTIFICATE PEM block".to_owned()))
}

/// The OIDC issuer and the subject alternative names of a Fulcio leaf.
fn identity_of(cert: &Certificate) -> Result<(String, Vec<String>)> {
    let mut issuer = None;
    let mut subjects = Vec::new();
    for ext in cert.tbs_certificate().extensions().into_iter().flatten() {
        let value = ext.extn_value.as_bytes();
        if ext.extn_id == ISSUER_V2 {
            let s = x509_cert::der::asn1::Utf8StringRef::from_der(value)
                .map_err(|e| KeylessError::Certificate(format!("issuer extension: {e}")))?;
            issuer = Some(s.as_str().to_owned());
        } else if ext.extn_id == ISSUER_V1 && issuer.is_none() {
            issuer = Some(String::from_utf8_lossy(value).into_owned());
        } else if ext.extn_id == <SubjectAltName as AssociatedOid>::OID {
            let san = SubjectAltName::from_der(value)
                .map_err(|e| KeylessError::Certificate(format!("subject alternative name: {e}")))?;
            for name in san.0 {
                match name {
                    GeneralName::Rfc822Name(s) | GeneralName::UniformResourceIdentifier(s) => {
                        subjects.push(s.as_str().to_owned())
                    }
                    _ => {}
                }
            }
        }
    }
    let issuer = issuer.ok_or_else(|| {
        KeylessError::Certificate("no OIDC issuer extension (not a Fulcio certificate)".to_owned())
    })?;
    if subjects.is_empty() {
        return Err(KeylessError::Certificate(
            "no email or URI subject alternative name".to_owned(),
        ));
    }
    Ok((issuer, subjects))
}

/// Walks from the leaf to a self-signed authority certificate of the
/// trusted root, checking every signature and the authority's window.
fn check_chain(leaf: &Certificate, root: &TrustedRoot, at: i64) -> Result<()> {
    let mut current = leaf.clone();
    for _ in 0..MAX_CHAIN {
        let tbs = current
            .tbs_certificate()
            .to_der()
            .map_err(|e| KeylessError::Chain(e.to_string()))?;
        let hash = Hash::of_algorithm(current.signature_algorithm().oid).ok_or_else(|| {
            KeylessError::Chain(format!(
                "signature algorithm {} is not ECDSA with SHA-256/384",
                current.signature_algorithm().oid
            ))
        })?;
        let signature = current.signature().raw_bytes();
        let issuer_name = current.tbs_certificate().issuer();
        let mut next = None;
        for (der, window) in root.authority_certificates() {
            let Ok(candidate) = Certificate::from_der(der) else {
                continue;
            };
            if candidate.tbs_certificate().subject() != issuer_name {
                continue;
            }
            let Ok(key) = EcKey::of(&candidate) else {
                continue;
            };
            if key.verify(hash, &tbs, signature) {
                if !window.contains(at) {
                    return Err(KeylessError::Chain(format!(
                        "the authority `{}` was not valid at {at}",
                        candidate.tbs_certificate().subject()
                    )));
                }
                next = Some(candidate);
                break;
            }
        }
        let Some(issuer) = next else {
            return Err(KeylessError::Chain(format!(
                "no trusted authority `{issuer_name}` signed `{}`",
                current.tbs_certificate().subject()
            )));
        };
        let self_signed = issuer.tbs_certificate().subject() == issuer.tbs_certificate().issuer();
        if self_signed {
            return Ok(());
        }
        current = issuer;
    }
    Err(KeylessError::Chain(format!(
        "longer than {MAX_CHAIN} certificates"
    )))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: RekorPayload,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

/// Checks Rekor's signed entry timestamp and that the logged entry is this
/// very signature.
fn check_log_entry(
    bundle: &str,
    root: &TrustedRoot,
    leaf_der: &[u8],
    sig: &KeylessSignature<'_>,
) -> Result<RekorPayload> {
    let log_err = |m: String| KeylessError::Log(m);
    let bundle: RekorBundle =
        serde_json::from_str(bundle).map_err(|e| log_err(format!("malformed bundle: {e}")))?;
    let log = root
        .logs
        .iter()
        .find(|l| l.log_id == bundle.payload.log_id)
        .ok_or_else(|| {
            log_err(format!(
                "log {} is not in the trusted root",
                bundle.payload.log_id
            ))
        })?;
    if !log.window.contains(bundle.payload.integrated_time) {
        return Err(log_err(format!(
            "the log's key was not valid at {}",
            bundle.payload.integrated_time
        )));
    }
    // Rekor signs the canonical JSON of the payload: sorted keys, no spaces.
    let canonical: BTreeMap<&str, serde_json::Value> = BTreeMap::from([
        ("body", bundle.payload.body.clone().into()),
        ("integratedTime", bundle.payload.integrated_time.into()),
        ("logID", bundle.payload.log_id.clone().into()),
        ("logIndex", bundle.payload.log_index.into()),
    ]);
    let signed = serde_json::to_vec(&canonical).map_err(|e| log_err(e.to_string()))?;
    let set = STANDARD
        .decode(&bundle.signed_entry_timestamp)
        .map_err(|e| log_err(format!("signed entry timestamp: {e}")))?;
    if !log.key.verify(Hash::Sha256, &signed, &set) {
        return Err(log_err(
            "the signed entry timestamp does not verify with the log's key".to_owned(),
        ));
    }

    let body = STANDARD
        .decode(&bundle.payload.body)
        .map_err(|e| log_err(format!("entry body: {e}")))?;
    let body: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| log_err(format!("entry body: {e}")))?;
    if body["kind"] != "hashedrekord" {
        return Err(log_err(format!(
            "entry kind {} is not hashedrekord",
            body["kind"]
        )));
    }
    let spec = &body["spec"];
    let payload_hash = hex::encode(Sha256::digest(sig.payload));
    if spec["data"]["hash"]["algorithm"] != "sha256"
        || spec["data"]["hash"]["value"].as_str() != Some(payload_hash.as_str())
    {
        return Err(log_err(
            "the logged entry is for another payload".to_owned(),
        ));
    }
    let logged_signature = spec["signature"]["content"]
        .as_str()
        .and_then(|s| STANDARD.decode(s).ok());
    if logged_signature.as_deref() != Some(sig.signature) {
        return Err(log_err("the logged entry has another signature".to_owned()));
    }
    let logged_cert = spec["signature"]["publicKey"]["content"]
        .as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| pem_certificate(&pem).ok());
    if logged_cert.as_deref() != Some(leaf_der) {
        return Err(log_err(
            "the logged entry has another certificate".to_owned(),
        ));
    }
    Ok(bundle.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_seconds("2021-03-07T03:20:29.000Z"),
            Some(1_615_087_229)
        );
        assert_eq!(
            rfc3339_seconds("2000-02-29T12:00:00+01:00"),
            Some(951_822_000)
        );
        assert_eq!(rfc3339_seconds("2021-13-07T03:20:29Z"), None);
        assert_eq!(rfc3339_seconds("garbage"), None);
        assert_eq!(rfc3339_seconds("2021-03-07T03:20:29"), None);
    }

    #[test]
    fn trusted_root_errors_name_the_problem() {
        assert!(TrustedRoot::from_json(b"{}")
            .unwrap_err()
            .contains("no certificate authorities"));
        let err = TrustedRoot::from_json(
            br#"{"certificateAuthorities":[{"certChain":{"certificates":[{"rawBytes":"AAAA"}]}}]}"#,
        )
        .unwrap_err();
        assert!(err.contains("certificate authority 1"), "{err}");
    }
}
