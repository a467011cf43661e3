//! The trust policy and image verification from bytes.

use std::collections::BTreeMap;
use std::fs;

use kiln_shared::model::Trust;
use kiln_signer::policy::{canonical_prefix, Why};
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::verify::{signature_manifest, signature_tag};
use kiln_signer::{verify_image, PolicyError, PrivateKey, Reason, SignatureManifest, TrustPolicy};
use sha2::{Digest, Sha256};

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OTHER: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

struct Fixture {
    _dir: tempfile::TempDir,
    trusted: PrivateKey,
    rogue: PrivateKey,
    policy: TrustPolicy,
}

fn fixture(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let trusted = PrivateKey::generate().unwrap();
    let rogue = PrivateKey::generate().unwrap();
    fs::create_dir(dir.path().join("keys")).unwrap();
    fs::write(
        dir.path().join("keys/kiln-test.pub"),
        trusted.public_key().to_pem(),
    )
    .unwrap();
    let text = format!(
        r#"
require = ["corp.example:5000/base"]
allow_disable_content_trust = false
{extra}
[[org]]
name = "127.0.0.1:5000/kiln-test"
keys = ["keys/kiln-test.pub"]

[[org]]
name = "linuxkit"
keys = ["keys/kiln-test.pub"]

[[org]]
name = "corp.example:5000/base"
public_keys = ["""{}"""]
"#,
        trusted.public_key().to_pem()
    );
    let path = dir.path().join("policy.toml");
    fs::write(&path, text).unwrap();
    let policy = TrustPolicy::load(&path).unwrap();
    Fixture {
        _dir: dir,
        trusted,
        rogue,
        policy,
    }
}

fn sig(key: &PrivateKey, reference: &str, digest: &str) -> SignatureManifest {
    let payload = SimpleSigning::new(reference, digest).to_bytes();
    let signature = key.sign(&payload);
    let (manifest, _config) = signature_manifest(&payload, &signature);
    let layer = format!("sha256:{}", hex(&Sha256::digest(&payload)));
    SignatureManifest {
        origin: format!("tag {}", signature_tag(digest)),
        manifest,
        blobs: BTreeMap::from([(layer, payload)]),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const IMAGE: &str = "127.0.0.1:5000/kiln-test/busybox:v1";

#[test]
fn canonical_prefixes_follow_linuxkit_orgs() {
    assert_eq!(canonical_prefix("linuxkit"), "docker.io/linuxkit");
    assert_eq!(canonical_prefix("library"), "docker.io/library");
    assert_eq!(canonical_prefix("linuxkit/init"), "docker.io/linuxkit/init");
    assert_eq!(
        canonical_prefix("127.0.0.1:5000/kiln-test"),
        "127.0.0.1:5000/kiln-test"
    );
    assert_eq!(
        canonical_prefix("docker.io/linuxkit/"),
        "docker.io/linuxkit"
    );
}

#[test]
fn a_signed_image_verifies_and_records_the_key() {
    let f = fixture("");
    let v = verify_image(
        IMAGE,
        DIGEST,
        &[sig(&f.trusted, "127.0.0.1:5000/kiln-test/busybox", DIGEST)],
        &f.policy,
    )
    .unwrap();
    assert_eq!(v.key_fingerprint, f.trusted.public_key().fingerprint());
    assert_eq!(v.trust_root, "127.0.0.1:5000/kiln-test");
    assert_eq!(v.digest, DIGEST);
    // Docker Hub orgs: `linuxkit/init` is in the org `linuxkit`.
    verify_image(
        "linuxkit/init:v1",
        DIGEST,
        &[sig(&f.trusted, "index.docker.io/linuxkit/init", DIGEST)],
        &f.policy,
    )
    .unwrap();
}

#[test]
fn each_failure_names_image_digest_and_reason() {
    let f = fixture("");
    let reject =
        |sigs: &[SignatureManifest]| verify_image(IMAGE, DIGEST, sigs, &f.policy).unwrap_err();

    let r = reject(&[]);
    assert_eq!(r.reason, Reason::Unsigned);
    let text = r.to_string();
    assert!(
        text.contains(IMAGE) && text.contains(DIGEST) && text.contains("unsigned"),
        "{text}"
    );

    let r = reject(&[sig(&f.rogue, "127.0.0.1:5000/kiln-test/busybox", DIGEST)]);
    assert_eq!(r.reason.code(), "untrusted-key");
    assert!(
        r.to_string().contains(f.trusted.public_key().fingerprint()),
        "{r}"
    );

    // A genuine signature of another digest, copied to this digest's tag.
    let r = reject(&[sig(&f.trusted, "127.0.0.1:5000/kiln-test/busybox", OTHER)]);
    assert_eq!(r.reason.code(), "other-digest");
    assert!(r.to_string().contains(OTHER), "{r}");

    // Malformed: the blob is not what the manifest says.
    let mut s = sig(&f.trusted, "r", DIGEST);
    for blob in s.blobs.values_mut() {
        blob.push(b' ');
    }
    assert_eq!(reject(&[s]).reason.code(), "malformed-signature");
    // Malformed: garbage manifest, and a manifest with no layers is unsigned.
    let garbage = SignatureManifest {
        origin: "tag x".into(),
        manifest: b"{".to_vec(),
        blobs: BTreeMap::new(),
    };
    assert_eq!(reject(&[garbage]).reason.code(), "malformed-signature");
    let empty = SignatureManifest {
        origin: "tag x".into(),
        manifest: br#"{"layers":[]}"#.to_vec(),
        blobs: BTreeMap::new(),
    };
    assert_eq!(reject(&[empty]).reason, Reason::Unsigned);

    // One good signature among bad ones is enough.
    verify_image(
        IMAGE,
        DIGEST,
        &[
            sig(&f.rogue, "r", DIGEST),
            sig(&f.trusted, "r", OTHER),
            sig(&f.trusted, "r", DIGEST),
        ],
        &f.policy,
    )
    .unwrap();
}

#[test]
fn an_image_outside_every_root_has_no_trust_root() {
    let f = fixture("");
    let r = verify_image(
        "untrusted/busybox:v1",
        DIGEST,
        &[sig(&f.trusted, "r", DIGEST)],
        &f.policy,
    )
    .unwrap_err();
    assert_eq!(r.reason, Reason::NoTrustRoot);
}

#[test]
fn plan_follows_spec_orgs_images_and_global_policy() {
    let f = fixture("");
    let images: Vec<String> = [
        IMAGE,
        "127.0.0.1:5000/other/x:v1",
        "linuxkit/init:v1",
        "corp.example:5000/base/alpine:3",
        "nginx:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let trust = Trust {
        org: Some(vec!["127.0.0.1:5000/kiln-test".into()]),
        image: Some(vec!["linuxkit/init".into()]),
    };
    let plan = f.policy.plan(Some(&trust), &images).unwrap();
    let names: Vec<&str> = plan.iter().map(|r| r.image.as_str()).collect();
    assert_eq!(
        names,
        [IMAGE, "linuxkit/init:v1", "corp.example:5000/base/alpine:3"]
    );
    assert_eq!(
        plan[0].why,
        [Why::SpecOrg("127.0.0.1:5000/kiln-test".into())]
    );
    assert_eq!(plan[1].why, [Why::SpecImage("linuxkit/init".into())]);
    assert!(matches!(plan[2].why[0], Why::Policy(_)));
    assert_eq!(f.policy.roots[plan[2].root].name, "corp.example:5000/base");

    // No spec trust section: only the global requirement applies.
    let plan = f.policy.plan(None, &images).unwrap();
    assert_eq!(plan.len(), 1);
}

#[test]
fn spec_orgs_without_a_trust_root_are_errors_naming_them() {
    let f = fixture("");
    let trust = Trust {
        org: Some(vec![
            "acme".into(),
            "127.0.0.1:5000/kiln-test".into(),
            "quay.io/evil".into(),
        ]),
        image: Some(vec!["docker.io/library/nginx:1".into()]),
    };
    let errors = f.policy.plan(Some(&trust), &[]).unwrap_err();
    assert_eq!(
        errors,
        [
            PolicyError::NoTrustRootForOrg { org: "acme".into() },
            PolicyError::NoTrustRootForOrg {
                org: "quay.io/evil".into()
            },
            PolicyError::NoTrustRootForImage {
                image: "docker.io/library/nginx:1".into()
            },
        ]
    );
    assert!(errors[0].to_string().contains("`acme`"));
}

#[test]
fn bad_policies_are_refused() {
    let base = std::path::Path::new("/nonexistent");
    for (text, needle) in [
        ("[[org]]\nname = \"x\"\n", "trust nothing"),
        (
            "[[org]]\nname = \"x\"\nkeys = [\"missing.pub\"]\n",
            "missing.pub",
        ),
        (
            "[[org]]\nname = \"x\"\npublic_keys = [\"junk\"]\n",
            "PUBLIC KEY",
        ),
        ("require = [\"acme\"]\n", "require"),
        ("unknown = 1\n", "unknown"),
        (
            "[[org]]\nname = \"x\"\nidentities = [{ issuer = \"https://i\", subject = \"(\" }]\n",
            "regex",
        ),
        (
            "[[org]]\nname = \"x\"\nidentities = [{ issuer = \"https://i\", subject = \".*\" }]\n",
            "trusted_root",
        ),
    ] {
        let err = TrustPolicy::from_toml(text, base).unwrap_err().to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
    let key = PrivateKey::generate().unwrap().public_key().to_pem();
    let dup = format!(
        "[[org]]\nname = \"linuxkit\"\npublic_keys = [\"\"\"{key}\"\"\"]\n[[org]]\nname = \"docker.io/linuxkit\"\npublic_keys = [\"\"\"{key}\"\"\"]\n"
    );
    assert!(TrustPolicy::from_toml(&dup, base)
        .unwrap_err()
        .to_string()
        .contains("same org"));
}

#[test]
fn keyless_identities_need_a_trusted_root_that_parses() {
    let dir = tempfile::tempdir().unwrap();
    // Authorities without certificates: refused when the policy loads.
    fs::write(
        dir.path().join("trusted_root.json"),
        r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","certificateAuthorities":[{"subject":{}}],"tlogs":[]}"#,
    )
    .unwrap();
    let text = "[[org]]\nname = \"ghcr.io/acme\"\ntrusted_root = \"trusted_root.json\"\nidentities = [{ issuer = \"https://token.actions.githubusercontent.com\", subject = \"^https://github\\\\.com/acme/\" }]\n";
    let err = TrustPolicy::from_toml(text, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("trusted_root.json"), "{err}");
    assert!(err.contains("certChain"), "{err}");

    let no_root = "[[org]]\nname = \"ghcr.io/acme\"\nidentities = [{ issuer = \"https://i\", subject = \".*\" }]\n";
    let err = TrustPolicy::from_toml(no_root, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("trusted_root"), "{err}");
}
