//! `kiln sign`, `kiln verify` and `kiln build --disable-content-trust`
//! against the real registry seeded with openssl-made signatures: a kiln
//! signature on an unsigned image is accepted by `kiln verify` and by an
//! independent openssl check; `kiln verify` lists every failure.

mod cache_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use cache_common::{fixtures, kiln_bin};
use kiln_e2e::seeded::{Seeded, BADSIG_REPO, UNSIGNED_REPO};
use kiln_e2e::sign::{verify_with_openssl, Verdict};
use kiln_signer::PublicKey;

const PASSWORD: &str = "kiln-e2e-pass";

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(args)
        .current_dir(dir)
        .env("KILN_HOME", dir.join("home"))
        .env("HOME", dir.join("home"))
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .env_remove("COSIGN_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn policy(seeded: &Seeded, allow_disable: bool) -> String {
    format!(
        "allow_disable_content_trust = {allow_disable}\n[[org]]\nname = \"{}\"\npublic_keys = [\"\"\"{}\"\"\"]\n",
        seeded.trusted_org(),
        seeded.trusted_key.public_key_pem().unwrap().trim()
    )
}

#[test]
fn kiln_sign_makes_a_signature_kiln_verify_and_openssl_accept() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let image = seeded.reference(UNSIGNED_REPO).unwrap();
    let digest = seeded.image(UNSIGNED_REPO).unwrap().digest.clone();

    let out = kiln(d, &["keys", "generate", "--output-key-prefix", "kiln"]);
    assert!(out.status.success(), "{}", text(&out));
    let fingerprint = PublicKey::load(&d.join("kiln.pub"))
        .unwrap()
        .fingerprint()
        .to_owned();

    // Unsigned before.
    let out = kiln(d, &["verify", "--key", "kiln.pub", &image]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no signature (unsigned)"),
        "{}",
        text(&out)
    );

    let out = kiln(d, &["sign", "--key", "kiln.key", &image]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&fingerprint),
        "{}",
        text(&out)
    );

    let out = kiln(d, &["verify", "--key", "kiln.pub", &image]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&fingerprint) && stdout.contains(&digest),
        "{}",
        text(&out)
    );

    // An independent implementation: plain HTTP and openssl.
    let verdict = verify_with_openssl(
        &seeded.registry,
        UNSIGNED_REPO,
        &digest,
        &d.join("kiln.pub"),
    )
    .unwrap();
    assert_eq!(verdict, Verdict::Verified);

    // Another key does not verify it.
    let other = seeded.rogue_key.public_key_path();
    let out = kiln(d, &["verify", "--key", other.to_str().unwrap(), &image]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no signature by a trusted key"),
        "{}",
        text(&out)
    );
}

#[test]
fn kiln_verify_with_a_policy_lists_every_failure() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("policy.toml"), policy(&seeded, false)).unwrap();
    let signed = seeded.reference("kiln-test/busybox-plain").unwrap();
    let badsig = seeded.reference(BADSIG_REPO).unwrap();
    let unsigned = seeded.reference(UNSIGNED_REPO).unwrap();
    let trusted = PublicKey::load(&seeded.trusted_key.public_key_path())
        .unwrap()
        .fingerprint()
        .to_owned();

    let out = kiln(d, &["verify", "--policy", "policy.toml", &signed]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&trusted),
        "{}",
        text(&out)
    );

    let out = kiln(
        d,
        &[
            "verify",
            "--policy",
            "policy.toml",
            &signed,
            &badsig,
            &unsigned,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 of 3 images did not verify"),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(BADSIG_REPO) && stderr.contains("no signature by a trusted key"),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains(UNSIGNED_REPO) && stderr.contains("no signature (unsigned)"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&trusted),
        "{}",
        text(&out)
    );

    // --key and --policy exclude each other; one is required.
    let out = kiln(d, &["verify", &signed]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn disable_content_trust_needs_the_policy_to_allow_it() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = format!(
        "init:\n  - {}\nservices:\n  - name: web\n    image: {}\ntrust:\n  org:\n    - {}\n",
        seeded.reference("kiln-test/init").unwrap(),
        seeded.reference(UNSIGNED_REPO).unwrap(),
        seeded.trusted_org(),
    );
    std::fs::write(d.join("trust.yml"), spec).unwrap();
    std::fs::write(d.join("deny.toml"), policy(&seeded, false)).unwrap();
    std::fs::write(d.join("allow.toml"), policy(&seeded, true)).unwrap();
    let build = |policy: &str, disable: bool| {
        let mut args = vec![
            "build",
            "-f",
            "tar",
            "--dir",
            "out",
            "--trust-policy",
            policy,
        ];
        if disable {
            args.push("--disable-content-trust");
        }
        args.push("trust.yml");
        kiln(d, &args)
    };

    let out = build("deny.toml", true);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allow_disable_content_trust"),
        "{}",
        text(&out)
    );

    // Without the flag the unsigned image is refused, even when allowed.
    let out = build("allow.toml", false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no signature (unsigned)"),
        "{}",
        text(&out)
    );

    let out = build("allow.toml", true);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("content trust DISABLED"), "{}", text(&out));
    assert!(!stderr.contains("kiln: verified"), "{}", text(&out));
    assert!(d.join("out/trust.tar").is_file());
}

#[test]
fn kiln_sign_signs_the_index_and_each_platform_manifest() {
    let fixtures = fixtures();
    let seeded = Seeded::start(fixtures).unwrap();
    let multiarch = &fixtures.multiarch;
    let repo = "other-org/multiarch-unsigned";
    seeded
        .registry
        .push_layout(&multiarch.layout, &multiarch.tag, repo, "v1")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = kiln(d, &["keys", "generate", "--output-key-prefix", "kiln"]);
    assert!(out.status.success(), "{}", text(&out));

    let image = seeded.registry.reference(repo, "v1");
    let out = kiln(d, &["sign", "--key", "kiln.key", &image]);
    assert!(out.status.success(), "{}", text(&out));

    assert!(multiarch.manifests.len() >= 2);
    let digests = std::iter::once(multiarch.digest().to_owned())
        .chain(multiarch.manifests.iter().map(|m| m.digest.clone()));
    for digest in digests {
        let verdict =
            verify_with_openssl(&seeded.registry, repo, &digest, &d.join("kiln.pub")).unwrap();
        assert_eq!(verdict, Verdict::Verified, "{digest}");
        let pinned = format!("{}/{repo}@{digest}", seeded.registry.host());
        let out = kiln(d, &["verify", "--key", "kiln.pub", &pinned]);
        assert!(out.status.success(), "{digest}: {}", text(&out));
    }
}
