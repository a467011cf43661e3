//! `kiln build` refuses images of a trusted org that are not validly
//! signed, against the real registry and signatures made with openssl
//! (not by kiln's signer).

mod cache_common;

use std::path::Path;
use std::process::Output;

use cache_common::{fixtures, kiln_in};
use kiln_e2e::seeded::{Seeded, BADSIG_REPO, UNSIGNED_REPO};

fn spec(seeded: &Seeded, service_repo: &str) -> String {
    let r = |repo: &str| seeded.reference(repo).expect("seeded image");
    format!(
        "init:\n  - {init}\nservices:\n  - name: web\n    image: {service}\ntrust:\n  org:\n    - {org}\n",
        init = r("kiln-test/init"),
        service = r(service_repo),
        org = seeded.trusted_org(),
    )
}

fn build(dir: &Path, spec: &str, policy: Option<&str>) -> Output {
    std::fs::write(dir.join("trust.yml"), spec).unwrap();
    let mut cmd = kiln_in(dir);
    cmd.args(["build", "-f", "tar", "--dir", "out"]);
    if let Some(policy) = policy {
        std::fs::write(dir.join("policy.toml"), policy).unwrap();
        cmd.args(["--trust-policy", "policy.toml"]);
    }
    cmd.arg("trust.yml").output().unwrap()
}

fn policy(seeded: &Seeded) -> String {
    format!(
        "[[org]]\nname = \"{}\"\npublic_keys = [\"\"\"{}\"\"\"]\n",
        seeded.trusted_org(),
        seeded.trusted_key.public_key_pem().unwrap().trim()
    )
}

#[test]
fn signed_org_builds_and_bad_or_missing_signatures_are_refused() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(&seeded);

    let ok = build(
        dir.path(),
        &spec(&seeded, "kiln-test/busybox-plain"),
        Some(&policy),
    );
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "signed images must build:\n{stderr}");
    assert!(stderr.contains("kiln: verified"), "{stderr}");
    // The build summary records what verified, for provenance.
    assert!(
        stderr.contains("kiln: content trust: verified") && stderr.contains("(key sha256:"),
        "{stderr}"
    );
    assert!(dir.path().join("out/trust.tar").is_file());

    for (repo, reason) in [
        (BADSIG_REPO, "no signature by a trusted key"),
        (UNSIGNED_REPO, "no signature (unsigned)"),
    ] {
        let out = build(dir.path(), &spec(&seeded, repo), Some(&policy));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{repo} must be refused:\n{stderr}"
        );
        assert!(
            stderr.contains("content trust refused the build") && stderr.contains(repo),
            "{stderr}"
        );
        assert!(
            stderr.contains(reason),
            "{repo}: expected `{reason}` in:\n{stderr}"
        );
    }
}

#[test]
fn a_trusted_org_without_a_trust_root_is_an_error_naming_it() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = build(dir.path(), &spec(&seeded, "kiln-test/busybox-plain"), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&seeded.trusted_org()), "{stderr}");
}
