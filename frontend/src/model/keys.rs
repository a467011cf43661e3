//! The public keys named by a team's trust policy, with the fingerprints
//! kiln prints for them (`sha256:` + hex of the SubjectPublicKeyInfo DER).

use sha2::{Digest, Sha256};

use super::json::{self, FromJson, Json};

#[derive(Debug, Clone, PartialEq)]
pub struct KeyInfo {
    /// The org or image prefix the key is trusted for.
    pub org: String,
    pub pem: String,
    /// The fingerprint, or why the PEM could not be read.
    pub fingerprint: Result<String, String>,
}

/// The part of a policy document that names keys.
struct Doc {
    org: Vec<Org>,
}

struct Org {
    name: String,
    public_keys: Vec<String>,
}

impl FromJson for Org {
    fn from_json(j: &Json) -> Result<Self, json::Error> {
        Ok(Org {
            name: j.opt_str("name")?.unwrap_or_default(),
            public_keys: j.opt_list("public_keys")?,
        })
    }
}

impl FromJson for Doc {
    fn from_json(j: &Json) -> Result<Self, json::Error> {
        Ok(Doc {
            org: j.opt_list("org")?,
        })
    }
}

/// Every `org[].public_keys` entry of a policy document (JSON text); none
/// when the text is not such a document.
pub fn policy_keys(policy: &str) -> Vec<KeyInfo> {
    let Ok(doc) = json::from_str::<Doc>(policy) else {
        return Vec::new();
    };
    doc.org
        .into_iter()
        .flat_map(|org| {
            let name = org.name;
            org.public_keys.into_iter().map(move |pem| KeyInfo {
                org: name.clone(),
                fingerprint: fingerprint(&pem),
                pem,
            })
        })
        .collect()
}

/// The fingerprint of a `PUBLIC KEY` PEM block.
pub fn fingerprint(pem: &str) -> Result<String, String> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")
        .and_then(|r| r.trim_end().strip_suffix("-----END PUBLIC KEY-----"))
        .ok_or("not a PEM `PUBLIC KEY` block")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = super::base64::decode_standard(&b64).ok_or("bad base64 in the PEM")?;
    Ok(format!("sha256:{}", hex(&Sha256::digest(&der))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A P-256 key made with `openssl ecparam -genkey`; the fingerprint is
    // `openssl pkey -pubin -outform DER | sha256sum` of it.
    const PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAElWOY6hPG8wZoqTpOJL9SSDl3yLGS
22ZS5r12fQSHLflMdQgDwREyCWAKtV7SFKr2RXfmsG2oCO0NpSFKVE9UmQ==
-----END PUBLIC KEY-----
";
    const FINGERPRINT: &str =
        "sha256:29fd6c4765f0076a0ab12d168dfd4b83329aa4bca1e586883e7b82a1c284c5ee";

    #[test]
    fn fingerprints_match_openssl() {
        assert_eq!(fingerprint(PEM).as_deref(), Ok(FINGERPRINT));
        assert!(fingerprint("hello").is_err());
        assert!(fingerprint("-----BEGIN PUBLIC KEY-----\n%%%\n-----END PUBLIC KEY-----").is_err());
    }

    #[test]
    fn keys_come_from_org_entries() {
        let policy = serde_json::json!({
            "require": ["acme"],
            "org": [
                {"name": "acme", "public_keys": [PEM, "junk"]},
                {"name": "other"},
            ],
        });
        let keys = policy_keys(&policy.to_string());
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].org, "acme");
        assert_eq!(keys[0].fingerprint.as_deref(), Ok(FINGERPRINT));
        assert!(keys[1].fingerprint.is_err());
        assert!(policy_keys("{}").is_empty());
        assert!(policy_keys("not json").is_empty());
    }
}
