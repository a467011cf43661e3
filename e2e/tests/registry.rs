//! The registry harness: a real docker-registry on loopback holding every
//! fixture, with signatures made by openssl and checked by openssl.

mod common;

use std::path::Path;

use kiln_e2e::registry::Registry;
use kiln_e2e::seeded::{Seeded, Signer, BADSIG_REPO, UNSIGNED_REPO, UNTRUSTED_REPO};
use kiln_e2e::sign::{self, Verdict};

#[test]
fn seeded_registry_serves_fixtures_and_signatures() {
    let built = common::build();
    let seeded = Seeded::start(&built.set).unwrap_or_else(|e| panic!("{e:#}"));
    let registry = &seeded.registry;
    assert_eq!(seeded.images.len(), built.set.all().len() + 3);
    assert_eq!(
        seeded.trusted_org(),
        format!("{}/kiln-test", registry.host())
    );

    for fixture in built.set.all() {
        let fetched = registry
            .manifest(&fixture.name, &fixture.tag)
            .unwrap()
            .unwrap_or_else(|| panic!("{}:{} missing", fixture.name, fixture.tag));
        assert_eq!(fetched.digest, fixture.digest(), "{}", fixture.name);
        assert_eq!(
            fetched.media_type, fixture.root.media_type,
            "{}",
            fixture.name
        );
        for manifest in &fixture.manifests {
            let child = registry.manifest(&fixture.name, &manifest.digest).unwrap();
            assert!(child.is_some(), "{}@{}", fixture.name, manifest.digest);
        }
    }

    let trusted = seeded.trusted_key.public_key_path();
    let rogue = seeded.rogue_key.public_key_path();
    for image in &seeded.images {
        let fetched = registry.manifest(&image.repo, &image.tag).unwrap().unwrap();
        assert_eq!(fetched.digest, image.digest, "{}", image.repo);
        let verdict = |key: &Path| {
            sign::verify_with_openssl(registry, &image.repo, &image.digest, key).unwrap()
        };
        let tags = registry.tags(&image.repo).unwrap();
        let sig_tag = sign::signature_tag(&image.digest);
        match image.signer {
            Signer::Trusted => {
                assert_eq!(verdict(&trusted), Verdict::Verified, "{}", image.repo);
                assert!(
                    matches!(verdict(&rogue), Verdict::Rejected(_)),
                    "{}",
                    image.repo
                );
                assert!(tags.contains(&sig_tag), "{} tags {tags:?}", image.repo);
            }
            Signer::Rogue => {
                assert_eq!(verdict(&rogue), Verdict::Verified, "{}", image.repo);
                assert!(
                    matches!(verdict(&trusted), Verdict::Rejected(_)),
                    "{}",
                    image.repo
                );
            }
            Signer::Nobody => {
                assert_eq!(verdict(&trusted), Verdict::Unsigned, "{}", image.repo);
                assert_eq!(tags, ["v1"], "{}", image.repo);
            }
        }
    }
    assert_eq!(seeded.image(BADSIG_REPO).unwrap().signer, Signer::Rogue);
    assert_eq!(seeded.image(UNSIGNED_REPO).unwrap().signer, Signer::Nobody);
    assert_eq!(seeded.image(UNTRUSTED_REPO).unwrap().signer, Signer::Nobody);

    // The multi-arch index and each of its platform manifests are signed.
    let multi = seeded.image(&built.set.multiarch.name).unwrap();
    assert_eq!(multi.signatures.len(), 3);
    for manifest in &built.set.multiarch.manifests {
        let v = sign::verify_with_openssl(registry, &multi.repo, &manifest.digest, &trusted);
        assert_eq!(v.unwrap(), Verdict::Verified);
    }

    // The signature itself, checked with a plain openssl command line.
    let sig = &seeded.image(&built.set.plain.name).unwrap().signatures[0];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("payload"), &sig.payload).unwrap();
    std::fs::write(dir.path().join("sig"), &sig.signature).unwrap();
    let status = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&trusted)
        .arg("-signature")
        .arg(dir.path().join("sig"))
        .arg(dir.path().join("payload"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let payload: serde_json::Value = serde_json::from_slice(&sig.payload).unwrap();
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        format!("{}/{}", registry.host(), built.set.plain.name)
    );
}

#[test]
fn registries_get_their_own_ports_and_stop_on_drop() {
    let a = Registry::start().unwrap_or_else(|e| panic!("{e:#}"));
    let b = Registry::start().unwrap_or_else(|e| panic!("{e:#}"));
    assert_ne!(a.addr(), b.addr());
    assert!(a.tags("nothing/here").unwrap().is_empty());
    let addr = a.addr();
    drop(a);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "registry still listening"
    );
}

#[test]
fn missing_registry_binary_fails_with_a_hint() {
    let err = Registry::start_with(Path::new("/nonexistent/docker-registry")).unwrap_err();
    assert!(err.to_string().contains("install-deps"), "{err}");
}
