//! Keyless cosign signatures, made with openssl as Fulcio and Rekor would
//! make them: a P-384 root and intermediate, a P-256 leaf naming an email
//! and an OIDC issuer, and a Rekor signed entry timestamp. kiln accepts the
//! real thing and names what is wrong with every variation.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kiln_signer::simple_signing::{
    SimpleSigning, BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, MEDIA_TYPE, SIGNATURE_ANNOTATION,
};
use kiln_signer::{verify_image, SignatureManifest, TrustPolicy};
use sha2::{Digest as _, Sha256};

const IMAGE: &str = "127.0.0.1:5000/acme/app:1";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const ISSUER: &str = "https://issuer.example";
const EMAIL: &str = "release@acme.example";

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn der_of(dir: &Path, pem: &str) -> Vec<u8> {
    openssl(dir, &["x509", "-in", pem, "-outform", "DER"])
}

/// A CA: P-384 key and certificate, self-signed or signed by `parent`.
fn ca(dir: &Path, name: &str, parent: Option<&str>) {
    let key = format!("{name}.key");
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ],
    );
    let ext = format!("{name}.ext");
    fs::write(
        dir.join(&ext),
        "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    let subj = format!("/O=kiln-test/CN={name}");
    match parent {
        None => {
            openssl(
                dir,
                &[
                    "req",
                    "-x509",
                    "-new",
                    "-key",
                    &key,
                    "-sha384",
                    "-subj",
                    &subj,
                    "-days",
                    "3650",
                    "-extensions",
                    "v3_ca",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        Some(parent) => sign_csr(dir, name, &subj, parent, &ext, "3650", "-sha384"),
    }
}

fn sign_csr(dir: &Path, name: &str, subj: &str, parent: &str, ext: &str, days: &str, hash: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subj, "-out", &csr],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{parent}.pem"),
            "-CAkey",
            &format!("{parent}.key"),
            hash,
            "-days",
            days,
            "-set_serial",
            "7",
            "-extfile",
            ext,
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

/// A Fulcio-like leaf for `email` from `issuer`, signed by `parent`.
fn leaf(dir: &Path, name: &str, parent: &str, email: &str, issuer: &str) {
    let key = format!("{name}.key");
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &key,
        ],
    );
    let ext = format!("{name}.ext");
    fs::write(
        dir.join(&ext),
        format!(
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n\
             subjectAltName=critical,email:{email}\n\
             1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:{issuer}\n"
        ),
    )
    .unwrap();
    sign_csr(dir, name, "/O=sigstore.dev", parent, &ext, "1", "-sha384");
}

struct World {
    dir: tempfile::TempDir,
    root_json: PathBuf,
    now: i64,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ca(d, "root", None);
        ca(d, "intermediate", Some("root"));
        ca(d, "rogue-root", None);
        leaf(d, "leaf", "intermediate", EMAIL, ISSUER);
        leaf(d, "rogue-leaf", "rogue-root", EMAIL, ISSUER);
        leaf(
            d,
            "other-issuer",
            "intermediate",
            EMAIL,
            "https://evil.example",
        );
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "rekor.key",
            ],
        );
        let rekor_der = openssl(d, &["ec", "-in", "rekor.key", "-pubout", "-outform", "DER"]);
        let root_json = d.join("trusted_root.json");
        let trusted = serde_json::json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.example",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": STANDARD.encode(&rekor_der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": { "start": "2020-01-01T00:00:00Z" }
                },
                "logId": { "keyId": STANDARD.encode(Sha256::digest(&rekor_der)) }
            }],
            "certificateAuthorities": [{
                "subject": { "organization": "kiln-test", "commonName": "root" },
                "uri": "https://fulcio.example",
                "certChain": { "certificates": [
                    { "rawBytes": STANDARD.encode(der_of(d, "intermediate.pem")) },
                    { "rawBytes": STANDARD.encode(der_of(d, "root.pem")) }
                ]},
                "validFor": { "start": "2020-01-01T00:00:00Z" }
            }]
        });
        fs::write(&root_json, serde_json::to_vec_pretty(&trusted).unwrap()).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        World {
            dir,
            root_json,
            now,
        }
    }

    fn policy(&self, subject: &str, issuer: &str) -> TrustPolicy {
        let toml = format!(
            "[[org]]\nname = \"127.0.0.1:5000/acme\"\ntrusted_root = \"{}\"\n\
             identities = [{{ issuer = \"{issuer}\", subject = \"{subject}\" }}]\n",
            self.root_json.display()
        );
        TrustPolicy::from_toml(&toml, self.dir.path()).unwrap()
    }

    /// A cosign keyless signature of `digest` by `leaf`, logged by Rekor
    /// at `logged_at`; `tamper` may change the Rekor payload after signing.
    fn signature(
        &self,
        leaf: &str,
        digest: &str,
        logged_at: i64,
        tamper: impl FnOnce(&mut serde_json::Value),
    ) -> SignatureManifest {
        let d = self.dir.path();
        let payload = SimpleSigning::new("127.0.0.1:5000/acme/app", digest).to_bytes();
        fs::write(d.join("payload"), &payload).unwrap();
        let signature = openssl(
            d,
            &[
                "dgst",
                "-sha256",
                "-sign",
                &format!("{leaf}.key"),
                "payload",
            ],
        );
        let cert_pem = fs::read_to_string(d.join(format!("{leaf}.pem"))).unwrap();
        let body = serde_json::json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": { "hash": { "algorithm": "sha256", "value": hex::encode(Sha256::digest(&payload)) } },
                "signature": {
                    "content": STANDARD.encode(&signature),
                    "publicKey": { "content": STANDARD.encode(cert_pem.as_bytes()) }
                }
            }
        });
        let rekor_der = openssl(d, &["ec", "-in", "rekor.key", "-pubout", "-outform", "DER"]);
        let mut entry = serde_json::json!({
            "body": STANDARD.encode(serde_json::to_vec(&body).unwrap()),
            "integratedTime": logged_at,
            "logID": hex::encode(Sha256::digest(&rekor_der)),
            "logIndex": 42,
        });
        let canonical: BTreeMap<String, serde_json::Value> =
            serde_json::from_value(entry.clone()).unwrap();
        fs::write(d.join("entry"), serde_json::to_vec(&canonical).unwrap()).unwrap();
        let set = openssl(d, &["dgst", "-sha256", "-sign", "rekor.key", "entry"]);
        tamper(&mut entry);
        let bundle = serde_json::json!({
            "SignedEntryTimestamp": STANDARD.encode(&set),
            "Payload": entry,
        });
        let layer_digest = format!("sha256:{}", hex::encode(Sha256::digest(&payload)));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": layer_digest, "size": 0 },
            "layers": [{
                "mediaType": MEDIA_TYPE,
                "digest": layer_digest,
                "size": payload.len(),
                "annotations": {
                    SIGNATURE_ANNOTATION: STANDARD.encode(&signature),
                    CERTIFICATE_ANNOTATION: cert_pem,
                    BUNDLE_ANNOTATION: bundle.to_string(),
                }
            }]
        });
        SignatureManifest {
            origin: "tag sha256-1111.sig".to_owned(),
            manifest: serde_json::to_vec(&manifest).unwrap(),
            blobs: BTreeMap::from([(layer_digest, payload)]),
        }
    }
}

fn refused(policy: &TrustPolicy, sig: SignatureManifest) -> String {
    verify_image(IMAGE, DIGEST, &[sig], policy)
        .unwrap_err()
        .to_string()
}

#[test]
fn keyless_signatures_verify_only_from_the_trusted_identity_authority_and_log() {
    let w = World::new();
    let policy = w.policy("release@acme\\\\.example", ISSUER);

    let ok = verify_image(
        IMAGE,
        DIGEST,
        &[w.signature("leaf", DIGEST, w.now, |_| {})],
        &policy,
    )
    .unwrap();
    assert!(ok.key_fingerprint.contains(EMAIL), "{ok:?}");
    assert!(ok.key_fingerprint.contains(ISSUER), "{ok:?}");
    assert!(ok.key_fingerprint.contains("Rekor entry 42"), "{ok:?}");

    let cases: Vec<(&str, SignatureManifest, TrustPolicy)> = vec![
        (
            "is not trusted",
            w.signature("leaf", DIGEST, w.now, |_| {}),
            w.policy("someone@acme\\\\.example", ISSUER),
        ),
        (
            "is not trusted",
            w.signature("other-issuer", DIGEST, w.now, |_| {}),
            policy.clone(),
        ),
        (
            "does not chain",
            w.signature("rogue-leaf", DIGEST, w.now, |_| {}),
            policy.clone(),
        ),
        (
            "signed entry timestamp does not verify",
            w.signature("leaf", DIGEST, w.now, |e| {
                e["integratedTime"] = (w.now + 1).into()
            }),
            policy.clone(),
        ),
        (
            "while the certificate is valid only",
            w.signature("leaf", DIGEST, w.now + 3 * 86_400, |_| {}),
            policy.clone(),
        ),
        (
            "another digest",
            w.signature(
                "leaf",
                "sha256:2222222222222222222222222222222222222222222222222222222222222222",
                w.now,
                |_| {},
            ),
            policy.clone(),
        ),
        (
            "is not in the trusted root",
            w.signature("leaf", DIGEST, w.now, |e| {
                e["logID"] = "00".repeat(32).into()
            }),
            policy.clone(),
        ),
    ];
    for (expected, sig, policy) in cases {
        let message = refused(&policy, sig);
        assert!(
            message.contains(expected),
            "want `{expected}` in: {message}"
        );
    }
}

#[test]
fn a_certificate_without_configured_identities_is_refused_by_name() {
    let w = World::new();
    let d = w.dir.path();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.key",
        ],
    );
    openssl(d, &["ec", "-in", "k.key", "-pubout", "-out", "k.pub"]);
    let policy = TrustPolicy::from_toml(
        "[[org]]\nname = \"127.0.0.1:5000/acme\"\nkeys = [\"k.pub\"]\n",
        d,
    )
    .unwrap();
    let message = refused(&policy, w.signature("leaf", DIGEST, w.now, |_| {}));
    assert!(message.contains("names no keyless identities"), "{message}");
}
