//! DSSE envelopes (Dead Simple Signing Envelope, as in-toto and sigstore use
//! them) and in-toto v1 statements.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::signer::Signer;

/// Payload type of an in-toto statement.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto v1 statement.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of the older in-toto v0.1 statement, still read.
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";
/// Largest envelope kiln parses.
pub const MAX_ENVELOPE_BYTES: usize = 16 << 20;

/// The pre-authentication encoding that DSSE signs:
/// `DSSEv1 SP len(type) SP type SP len(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The payload, base64.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// The signature of the PAE, base64.
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` of `payload_type`; the key id is the key's
    /// fingerprint.
    pub fn sign(signer: &dyn Signer, payload_type: &str, payload: &[u8]) -> Result<Self> {
        let signature = signer.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload: STANDARD.encode(payload),
            payload_type: payload_type.to_owned(),
            signatures: vec![EnvelopeSignature {
                keyid: signer.public_key().fingerprint().to_owned(),
                sig: STANDARD.encode(signature),
            }],
        })
    }

    /// Parses an envelope strictly: valid base64, at least one signature.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(Error::malformed(
                "DSSE envelope",
                format!("{} bytes; at most {MAX_ENVELOPE_BYTES}", bytes.len()),
            ));
        }
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| Error::malformed("DSSE envelope", e))?;
        envelope.check()?;
        Ok(envelope)
    }

    fn check(&self) -> Result<()> {
        self.payload_bytes()?;
        if self.payload_type.is_empty() {
            return Err(Error::malformed("DSSE envelope", "empty payloadType"));
        }
        if self.signatures.is_empty() {
            return Err(Error::malformed("DSSE envelope", "no signatures"));
        }
        for s in &self.signatures {
            STANDARD
                .decode(&s.sig)
                .map_err(|e| Error::malformed("DSSE envelope", format!("signature: {e}")))?;
        }
        Ok(())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>> {
        STANDARD
            .decode(&self.payload)
            .map_err(|e| Error::malformed("DSSE envelope", format!("payload: {e}")))
    }

    /// Checks that a signature verifies with one of `keys`; returns that key
    /// and the payload.
    pub fn verify<'k>(&self, keys: &'k [PublicKey]) -> Result<(&'k PublicKey, Vec<u8>)> {
        self.check()?;
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        for s in &self.signatures {
            let Ok(sig) = STANDARD.decode(&s.sig) else {
                continue;
            };
            if let Some(key) = keys.iter().find(|k| k.verify(&message, &sig).is_ok()) {
                return Ok((key, payload));
            }
        }
        Err(Error::Mismatch(format!(
            "no signature of the DSSE envelope verifies with {}",
            describe_keys(keys)
        )))
    }
}

pub(crate) fn describe_keys(keys: &[PublicKey]) -> String {
    match keys {
        [] => "no key (none is trusted)".to_owned(),
        [one] => format!("the trusted key {one}"),
        many => format!(
            "any of the {} trusted keys ({})",
            many.len(),
            many.iter()
                .map(|k| k.fingerprint())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An in-toto statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: serde_json::Value,
}

/// A statement's subject: a name and its digests (`sha256` → hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// A subject with one `sha256` digest (`sha256:` prefix optional).
    pub fn sha256(name: &str, digest: &str) -> Self {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        Subject {
            name: name.to_owned(),
            digest: BTreeMap::from([("sha256".to_owned(), hex.to_owned())]),
        }
    }
}

impl Statement {
    /// A v1 statement.
    pub fn new(subject: Vec<Subject>, predicate_type: &str, predicate: serde_json::Value) -> Self {
        Statement {
            kind: STATEMENT_V1.to_owned(),
            subject,
            predicate_type: predicate_type.to_owned(),
            predicate,
        }
    }

    /// Parses and checks a statement: known `_type`, at least one subject,
    /// every digest lower-case hex.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let s: Statement =
            serde_json::from_slice(bytes).map_err(|e| Error::malformed("in-toto statement", e))?;
        if s.kind != STATEMENT_V1 && s.kind != STATEMENT_V01 {
            return Err(Error::malformed(
                "in-toto statement",
                format!("unknown _type `{}`", s.kind),
            ));
        }
        if s.subject.is_empty() {
            return Err(Error::malformed("in-toto statement", "no subject"));
        }
        for subject in &s.subject {
            if subject.digest.is_empty() {
                return Err(Error::malformed(
                    "in-toto statement",
                    format!("subject `{}` has no digest", subject.name),
                ));
            }
            for (alg, hex) in &subject.digest {
                if hex.is_empty()
                    || !hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(Error::malformed(
                        "in-toto statement",
                        format!(
                            "subject `{}`: {alg} digest is not lower-case hex",
                            subject.name
                        ),
                    ));
                }
            }
        }
        Ok(s)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Signs the statement into an envelope.
    pub fn sign(&self, signer: &dyn Signer) -> Result<Envelope> {
        Envelope::sign(signer, INTOTO_PAYLOAD_TYPE, &self.to_json())
    }

    /// Verifies an envelope with `keys` and parses its statement.
    pub fn verify(envelope: &Envelope, keys: &[PublicKey]) -> Result<Statement> {
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE {
            return Err(Error::Mismatch(format!(
                "the envelope's payloadType is `{}`, not `{INTOTO_PAYLOAD_TYPE}`",
                envelope.payload_type
            )));
        }
        let (_, payload) = envelope.verify(keys)?;
        Statement::parse(&payload)
    }

    /// Whether a subject carries `sha256` `digest` (prefix optional).
    pub fn names_sha256(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.subject
            .iter()
            .any(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // From the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        for bad in [
            &b"{}"[..],
            br#"{"payload":"!!","payloadType":"x","signatures":[{"sig":"AA=="}]}"#,
            br#"{"payload":"AA==","payloadType":"x","signatures":[]}"#,
            br#"{"payload":"AA==","payloadType":"","signatures":[{"sig":"AA=="}]}"#,
            br#"{"payload":"AA==","payloadType":"x","signatures":[{"sig":"?"}]}"#,
        ] {
            assert!(
                Envelope::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn statement_checks() {
        let s = Statement::new(
            vec![Subject::sha256("a", "sha256:ab")],
            "p",
            serde_json::json!({}),
        );
        let back = Statement::parse(&s.to_json()).unwrap();
        assert!(back.names_sha256("sha256:ab"));
        assert!(!back.names_sha256("ab00"));
        assert!(Statement::parse(br#"{"_type":"x","subject":[],"predicateType":"p"}"#).is_err());
        assert!(Statement::parse(
            br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"XY"}}],"predicateType":"p"}"#
        )
        .is_err());
    }
}
