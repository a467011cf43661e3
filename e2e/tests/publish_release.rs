//! `kiln publish` and `kiln verify-release` against the real registry:
//! a fixture build is published as one signed artifact with its SBOM,
//! provenance and signatures; outsiders (openssl, skopeo, plain HTTP, the
//! SPDX and in-toto Python libraries) agree with it; publishing is
//! reproducible and never moves a tag; tampering is named.

mod cache_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use cache_common::{fixtures, kiln_in};
use kiln_e2e::seeded::Seeded;
use kiln_e2e::sign::{verify_with_openssl, Verdict};
use serde_json::Value;

const PASSWORD: &str = "kiln-e2e-pass";
/// The Python environment `.ci/install-deps` sets up with spdx-tools and
/// in-toto-attestation.
const PYTHON_ENV: &str = "/opt/kiln-py/bin";
const REPO: &str = "releases/os";

fn kiln(dir: &Path, args: &[&str]) -> Output {
    kiln_in(dir)
        .args(args)
        .env("KILN_KEY_PASSWORD", PASSWORD)
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

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn build(d: &Path, seeded: &Seeded, name: &str, cmdline: &str) -> PathBuf {
    let r = |repo: &str| seeded.reference(repo).unwrap();
    fs::write(
        d.join(format!("{name}.yml")),
        format!(
            "kernel:\n  image: {}\n  cmdline: \"{cmdline}\"\ninit:\n  - {}\nservices:\n  - name: web\n    image: {}\ntrust:\n  org:\n    - {}\n",
            r("kiln-test/kernel"),
            r("kiln-test/init"),
            r("kiln-test/busybox-plain"),
            seeded.trusted_org()
        ),
    )
    .unwrap();
    let out_dir = d.join(format!("out-{name}"));
    let out = kiln(
        d,
        &[
            "build",
            "-f",
            "kernel+initrd",
            "-f",
            "tar",
            "--dir",
            out_dir.to_str().unwrap(),
            "--trust-policy",
            "policy.toml",
            "--sign-key",
            "release.key",
            &format!("{name}.yml"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    out_dir
}

fn publish(d: &Path, dir: &Path, to: &str) -> Output {
    kiln(
        d,
        &[
            "publish",
            "--key",
            "release.key",
            "--to",
            to,
            dir.to_str().unwrap(),
        ],
    )
}

fn published_digest(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = stdout.find("(sha256:").expect("digest in the output") + 1;
    stdout[start..start + 71].to_owned()
}

fn verify(d: &Path, reference: &str, key: &str) -> Output {
    kiln(d, &["verify-release", "--key", key, reference])
}

/// The DSSE envelope of the attestation of `artifact_type`, read with
/// plain HTTP through the referrers tag schema.
fn attestation(seeded: &Seeded, digest: &str, artifact_type: &str) -> (String, Value) {
    let index = seeded
        .registry
        .manifest(REPO, &digest.replace(':', "-"))
        .unwrap()
        .expect("a referrers index");
    let index: Value = serde_json::from_slice(&index.body).unwrap();
    let referrer = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == artifact_type)
        .unwrap_or_else(|| panic!("no {artifact_type} referrer in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let manifest = seeded.registry.manifest(REPO, &referrer).unwrap().unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(manifest["subject"]["digest"], digest);
    let envelope = seeded
        .registry
        .blob(REPO, manifest["layers"][0]["digest"].as_str().unwrap())
        .unwrap();
    (referrer, serde_json::from_slice(&envelope).unwrap())
}

fn payload(envelope: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap()
}

fn python_tool(tool: &str) -> PathBuf {
    let path = Path::new(PYTHON_ENV).join(tool);
    assert!(
        path.is_file(),
        "{} is missing: run .ci/install-deps",
        path.display()
    );
    path
}

#[test]
fn a_published_release_verifies_everywhere_and_tampering_is_named() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for prefix in ["release", "rogue"] {
        let out = kiln(d, &["keys", "generate", "--output-key-prefix", prefix]);
        assert!(out.status.success(), "{}", text(&out));
    }
    fs::write(
        d.join("policy.toml"),
        format!(
            "[[org]]\nname = \"{}\"\npublic_keys = [\"\"\"{}\"\"\"]\n",
            seeded.trusted_org(),
            seeded.trusted_key.public_key_pem().unwrap().trim()
        ),
    )
    .unwrap();
    let out_dir = build(d, &seeded, "os", "console=ttyS0");
    let host = seeded.registry.host();
    let v1 = format!("{host}/{REPO}:1.0");

    let out = publish(d, &out_dir, &v1);
    assert!(out.status.success(), "{}", text(&out));
    let digest = published_digest(&out);

    // kiln verifies it and downloads every artifact, checked as it streams.
    let download = d.join("download");
    let out = kiln(
        d,
        &[
            "verify-release",
            "--key",
            "release.pub",
            "--output",
            download.to_str().unwrap(),
            &v1,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for what in [
        "signature",
        "SBOM",
        "SLSA provenance",
        "layer os-initrd.img",
    ] {
        assert!(stdout.contains(&format!("ok   {what}")), "{what}: {stdout}");
    }
    for file in ["os-kernel", "os-initrd.img", "os-cmdline", "os.tar"] {
        assert_eq!(
            fs::read(download.join(file)).unwrap(),
            fs::read(out_dir.join(file)).unwrap(),
            "{file}"
        );
    }

    // The manifest: artifact type, one layer per output with its title,
    // and the same bytes through skopeo.
    let manifest = seeded.registry.manifest(REPO, "1.0").unwrap().unwrap();
    assert_eq!(manifest.digest, digest);
    let doc: Value = serde_json::from_slice(&manifest.body).unwrap();
    assert_eq!(doc["artifactType"], "application/vnd.kiln.os-image.v1");
    let skopeo = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{v1}"))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "{}", text(&skopeo));
    assert_eq!(skopeo.stdout, manifest.body);
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "{doc}");
    for layer in layers {
        let title = layer["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap();
        let local = fs::read(out_dir.join(title)).unwrap();
        let pulled = seeded
            .registry
            .blob(REPO, layer["digest"].as_str().unwrap())
            .unwrap();
        assert_eq!(sha256_hex(&pulled), sha256_hex(&local), "{title}");
        assert_eq!(layer["digest"], format!("sha256:{}", sha256_hex(&local)));
    }
    let config = seeded
        .registry
        .blob(REPO, doc["config"]["digest"].as_str().unwrap())
        .unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    assert!(config["specDigest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(config["images"].as_array().unwrap().len(), 3, "{config}");

    // openssl checks the manifest signature.
    assert_eq!(
        verify_with_openssl(&seeded.registry, REPO, &digest, &d.join("release.pub")).unwrap(),
        Verdict::Verified
    );

    // The SBOM validates with spdx-tools and lists every image's digest.
    let (_, sbom_envelope) = attestation(&seeded, &digest, "application/spdx+json");
    let statement: Value = serde_json::from_slice(&payload(&sbom_envelope)).unwrap();
    assert_eq!(statement["predicateType"], "https://spdx.dev/Document");
    let sbom_file = d.join("sbom.spdx.json");
    fs::write(
        &sbom_file,
        serde_json::to_vec(&statement["predicate"]).unwrap(),
    )
    .unwrap();
    let check = Command::new(python_tool("pyspdxtools"))
        .arg("-i")
        .arg(&sbom_file)
        .output()
        .unwrap();
    assert!(check.status.success(), "pyspdxtools: {}", text(&check));
    let sbom_text = fs::read_to_string(&sbom_file).unwrap();
    for fixture in [
        "kiln-test/kernel",
        "kiln-test/init",
        "kiln-test/busybox-plain",
    ] {
        let image_digest = seeded.image(fixture).unwrap().digest.clone();
        assert!(
            sbom_text.contains(image_digest.trim_start_matches("sha256:")),
            "{fixture} {image_digest} not in the SBOM"
        );
    }

    // The provenance parses with the in-toto-attestation library.
    let (_, provenance_envelope) = attestation(&seeded, &digest, "application/vnd.in-toto+json");
    let statement_file = d.join("provenance.json");
    fs::write(&statement_file, payload(&provenance_envelope)).unwrap();
    let check = Command::new(python_tool("python"))
        .arg("-c")
        .arg(
            "import sys, json\n\
             from google.protobuf import json_format\n\
             from in_toto_attestation.v1 import statement_pb2, statement\n\
             msg = json_format.Parse(open(sys.argv[1]).read(), statement_pb2.Statement())\n\
             statement.Statement.copy_from_pb(msg).validate()\n\
             print(msg.predicate_type, len(msg.subject))\n",
        )
        .arg(&statement_file)
        .output()
        .unwrap();
    assert!(check.status.success(), "in-toto: {}", text(&check));
    assert!(
        String::from_utf8_lossy(&check.stdout).starts_with("https://slsa.dev/provenance/v1"),
        "{}",
        text(&check)
    );

    // Reproducible: the same build under another tag is the same manifest;
    // the same tag again is a no-op.
    let out = publish(d, &out_dir, &format!("{host}/{REPO}:1.1"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(published_digest(&out), digest);
    let out = publish(d, &out_dir, &v1);
    assert!(out.status.success(), "{}", text(&out));
    let (_, again) = attestation(&seeded, &digest, "application/spdx+json");
    assert_eq!(again, sbom_envelope, "the SBOM attestation is reproducible");

    // A published tag never moves.
    let other = build(d, &seeded, "other", "console=ttyS0 quiet");
    let out = publish(d, &other, &v1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already published"),
        "{}",
        text(&out)
    );
    assert_eq!(
        seeded
            .registry
            .manifest(REPO, "1.0")
            .unwrap()
            .unwrap()
            .digest,
        digest
    );

    // Another key does not verify it.
    let out = verify(d, &v1, "rogue.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A signature by another key replaces the real one.
    let pinned = format!("{host}/{REPO}@{digest}");
    let out = kiln(d, &["sign", "--key", "rogue.key", &pinned]);
    assert!(out.status.success(), "{}", text(&out));
    let out = verify(d, &v1, "release.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signature: no signature by a trusted key"),
        "{}",
        text(&out)
    );
    let out = publish(d, &out_dir, &v1);
    assert!(
        out.status.success(),
        "republishing restores it: {}",
        text(&out)
    );

    // A deleted attestation.
    let (sbom_referrer, _) = attestation(&seeded, &digest, "application/spdx+json");
    seeded
        .registry
        .delete_manifest(REPO, &sbom_referrer)
        .unwrap();
    let out = verify(d, &v1, "release.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SBOM: referrer"),
        "{}",
        text(&out)
    );

    // A layer replaced behind the registry's back.
    let kernel = layers
        .iter()
        .find(|l| l["annotations"]["org.opencontainers.image.title"] == "os-kernel")
        .unwrap();
    let blob = seeded
        .registry
        .blob_file(kernel["digest"].as_str().unwrap());
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let out = verify(d, &format!("{host}/{REPO}:1.1"), "release.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("layer os-kernel"),
        "{}",
        text(&out)
    );
}
