//! Content trust against the real registry and the seeded fixtures, whose
//! signatures were made with openssl, independently of kiln's signer:
//! every image of the signed org verifies; an unsigned image, one signed by
//! another key and one carrying a signature copied from another digest are
//! refused with precise reasons. Then the other way round: a signature made
//! by kiln (through the signer daemon) is verified by plain HTTP + openssl.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use kiln_backend::engine::reference::Reference;
use kiln_backend::engine::registry::RegistryConfig;
use kiln_backend::engine::trust::fetch_signatures_blocking;
use kiln_e2e::registry::Registry;
use kiln_e2e::seeded::{Seeded, BADSIG_REPO, UNSIGNED_REPO, UNTRUSTED_REPO};
use kiln_e2e::sign::{self, Verdict};
use kiln_shared::model::Trust;
use kiln_signer::daemon::{Daemon, SocketSigner};
use kiln_signer::simple_signing::SimpleSigning;
use kiln_signer::verify::{signature_manifest, signature_tag};
use kiln_signer::{
    verify_image, InProcessSigner, PolicyError, PrivateKey, PublicKey, Reason, Rejection, Signer,
    TrustPolicy, VerifiedSignature,
};

const REPLAYED_REPO: &str = "kiln-test/busybox-replayed";
const KILN_SIGNED_REPO: &str = "kiln-test/busybox-kiln-signed";

fn verify(
    registry: &Registry,
    repo: &str,
    digest: &str,
    policy: &TrustPolicy,
) -> Result<VerifiedSignature, Rejection> {
    let image = format!("{}/{repo}:v1", registry.host());
    let reference = Reference::parse(&image).unwrap();
    let signatures = fetch_signatures_blocking(&reference, digest, &RegistryConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    verify_image(&image, digest, &signatures, policy)
}

fn policy_for(dir: &std::path::Path, org: &str, public_key_pem: &str) -> TrustPolicy {
    fs::write(dir.join("trusted.pub"), public_key_pem).unwrap();
    fs::write(
        dir.join("policy.toml"),
        format!("[[org]]\nname = \"{org}\"\nkeys = [\"trusted.pub\"]\n"),
    )
    .unwrap();
    TrustPolicy::load(&dir.join("policy.toml")).unwrap()
}

/// Uploads a blob with a POST + PUT (the registry's two-step upload).
fn put_blob(registry: &Registry, repo: &str, bytes: &[u8]) -> String {
    let digest = kiln_e2e::oci::sha256_digest(bytes);
    let start = ureq::post(format!(
        "http://{}/v2/{repo}/blobs/uploads/",
        registry.host()
    ))
    .send_empty()
    .expect("start upload");
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let url = if location.starts_with('/') {
        format!("http://{}{location}", registry.host())
    } else {
        location
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    ureq::put(format!("{url}{sep}digest={digest}"))
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .expect("finish upload");
    digest
}

fn put_manifest(registry: &Registry, repo: &str, tag: &str, bytes: &[u8]) {
    ureq::put(format!(
        "http://{}/v2/{repo}/manifests/{tag}",
        registry.host()
    ))
    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
    .send(bytes)
    .expect("push manifest");
}

/// Copies `from_repo`'s signature manifest for `from_digest` (with its
/// blobs) to `to_repo`'s signature tag for `to_digest`: a replayed signature.
fn replay(registry: &Registry, from_repo: &str, from_digest: &str, to_repo: &str, to_digest: &str) {
    let sig = registry
        .manifest(from_repo, &signature_tag(from_digest))
        .unwrap()
        .expect("source signature");
    let manifest: serde_json::Value = serde_json::from_slice(&sig.body).unwrap();
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for l in manifest["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in digests {
        let blob = registry.blob(from_repo, &d).unwrap();
        assert_eq!(put_blob(registry, to_repo, &blob), d);
    }
    put_manifest(registry, to_repo, &signature_tag(to_digest), &sig.body);
}

#[test]
fn trusted_org_verifies_and_every_failure_is_precise() {
    let built = common::build();
    let seeded = Seeded::start(&built.set).unwrap_or_else(|e| panic!("{e:#}"));
    let registry = &seeded.registry;
    let dir = tempfile::tempdir().unwrap();
    let trusted_pem = seeded.trusted_key.public_key_pem().unwrap();
    let trusted = PublicKey::from_pem(&trusted_pem).unwrap();
    let policy = policy_for(dir.path(), &seeded.trusted_org(), &trusted_pem);

    // Every fixture of the signed org verifies, indexes and their platform
    // manifests alike, and the key that verified is recorded.
    for fixture in built.set.all() {
        let v = verify(registry, &fixture.name, fixture.digest(), &policy)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.key_fingerprint, trusted.fingerprint());
        assert_eq!(v.digest, fixture.digest());
        assert!(v.origin.starts_with("tag sha256-"), "{}", v.origin);
        if fixture.is_index() {
            for m in &fixture.manifests {
                verify(registry, &fixture.name, &m.digest, &policy)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    let plain = seeded.image(UNSIGNED_REPO).unwrap().digest.clone();
    let label = built.set.label.digest().to_owned();

    // Signed by the rogue key.
    let r = verify(registry, BADSIG_REPO, &plain, &policy).unwrap_err();
    assert_eq!(r.reason.code(), "untrusted-key", "{r}");
    let text = r.to_string();
    assert!(
        text.contains(BADSIG_REPO) && text.contains(&plain),
        "{text}"
    );
    assert!(text.contains(trusted.fingerprint()), "{text}");

    // Unsigned.
    let r = verify(registry, UNSIGNED_REPO, &plain, &policy).unwrap_err();
    assert_eq!(r.reason, Reason::Unsigned, "{r}");
    assert!(r.to_string().contains(UNSIGNED_REPO));

    // busybox-label's genuine signature copied onto busybox-plain's digest.
    let plain_fixture = &built.set.plain;
    registry
        .push_layout(
            &plain_fixture.layout,
            &plain_fixture.tag,
            REPLAYED_REPO,
            "v1",
        )
        .unwrap();
    replay(
        registry,
        &built.set.label.name,
        &label,
        REPLAYED_REPO,
        &plain,
    );
    let r = verify(registry, REPLAYED_REPO, &plain, &policy).unwrap_err();
    assert_eq!(r.reason.code(), "other-digest", "{r}");
    assert!(r.to_string().contains(&label), "{r}");
    // The independent verifier agrees.
    assert!(matches!(
        sign::verify_with_openssl(
            registry,
            REPLAYED_REPO,
            &plain,
            &seeded.trusted_key.public_key_path()
        )
        .unwrap(),
        Verdict::Rejected(_)
    ));

    // Outside the org: no trust root covers it.
    let r = verify(registry, UNTRUSTED_REPO, &plain, &policy).unwrap_err();
    assert_eq!(r.reason, Reason::NoTrustRoot);

    // As a build would: the spec's trust.org names the org; every image
    // it covers is checked and every offender is listed with its reason.
    let images: Vec<(String, String)> = built
        .set
        .all()
        .iter()
        .map(|f| (f.name.clone(), f.digest().to_owned()))
        .chain(
            [BADSIG_REPO, UNSIGNED_REPO, REPLAYED_REPO, UNTRUSTED_REPO]
                .iter()
                .map(|r| (r.to_string(), plain.clone())),
        )
        .collect();
    let refs: Vec<String> = images
        .iter()
        .map(|(repo, _)| format!("{}/{repo}:v1", registry.host()))
        .collect();
    let trust = Trust {
        org: Some(vec![seeded.trusted_org()]),
        image: None,
    };
    let plan = policy.plan(Some(&trust), &refs).unwrap();
    assert_eq!(plan.len(), images.len() - 1, "all but the untrusted org");
    let mut failures = BTreeMap::new();
    for req in &plan {
        let (repo, digest) = images
            .iter()
            .find(|(repo, _)| req.image.ends_with(&format!("/{repo}:v1")))
            .unwrap();
        if let Err(r) = verify(registry, repo, digest, &policy) {
            failures.insert(repo.clone(), r.reason.code());
        }
    }
    assert_eq!(
        failures,
        BTreeMap::from([
            (BADSIG_REPO.to_owned(), "untrusted-key"),
            (REPLAYED_REPO.to_owned(), "other-digest"),
            (UNSIGNED_REPO.to_owned(), "unsigned"),
        ])
    );

    // A spec naming an org with no trust root is an error naming the org.
    let other_org = format!("{}/untrusted", registry.host());
    let errors = policy
        .plan(
            Some(&Trust {
                org: Some(vec![other_org.clone()]),
                image: None,
            }),
            &refs,
        )
        .unwrap_err();
    assert_eq!(errors, [PolicyError::NoTrustRootForOrg { org: other_org }]);
}

#[test]
fn kiln_signatures_made_through_the_daemon_verify_with_openssl() {
    let built = common::build();
    let registry = Registry::start().unwrap();
    let plain = &built.set.plain;
    registry
        .push_layout(&plain.layout, &plain.tag, KILN_SIGNED_REPO, "v1")
        .unwrap();
    let digest = plain.digest().to_owned();

    // The key lives in the daemon; this process only holds a socket.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("signer.sock");
    let key = PrivateKey::generate().unwrap();
    let public = key.public_key().clone();
    let daemon = Daemon::bind(&socket, Arc::new(InProcessSigner::new(key))).unwrap();
    std::thread::spawn(move || daemon.serve(|_| {}));
    let signer = SocketSigner::connect(&socket).unwrap();

    let payload =
        SimpleSigning::new(&format!("{}/{KILN_SIGNED_REPO}", registry.host()), &digest).to_bytes();
    let signature = signer.sign(&payload).unwrap();
    let (manifest, config) = signature_manifest(&payload, &signature);
    put_blob(&registry, KILN_SIGNED_REPO, &config);
    put_blob(&registry, KILN_SIGNED_REPO, &payload);
    put_manifest(
        &registry,
        KILN_SIGNED_REPO,
        &signature_tag(&digest),
        &manifest,
    );

    // Independent check: plain HTTP, the payload names the digest, openssl.
    let pub_path = dir.path().join("kiln.pub");
    fs::write(&pub_path, signer.public_key().to_pem()).unwrap();
    assert_eq!(
        sign::verify_with_openssl(&registry, KILN_SIGNED_REPO, &digest, &pub_path).unwrap(),
        Verdict::Verified
    );
    // And kiln's own verifier, with the key from the policy.
    let policy = policy_for(
        dir.path(),
        &format!("{}/kiln-test", registry.host()),
        &public.to_pem(),
    );
    let v = verify(&registry, KILN_SIGNED_REPO, &digest, &policy).unwrap();
    assert_eq!(v.key_fingerprint, public.fingerprint());
}
