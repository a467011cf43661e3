//! `kiln build --signer-socket` signs the build's SLSA provenance through
//! the signer daemon; `kiln verify-build` and an independent openssl check
//! accept it, and a changed output or another key is refused.

mod cache_common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cache_common::{fixtures, kiln_bin, kiln_in};
use kiln_e2e::seeded::Seeded;
use kiln_e2e::sign::openssl_verify;
use kiln_signer::daemon::SocketSigner;
use kiln_signer::dsse::pae;

const PASSWORD: &str = "kiln-e2e-pass";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn daemon(dir: &Path, socket: &Path) -> Daemon {
    let child = Command::new(kiln_bin())
        .args(["signer", "serve", "--key", "release.key", "--socket"])
        .arg(socket)
        .current_dir(dir)
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while SocketSigner::connect(socket).is_err() {
        if let Some(status) = d.0.try_wait().unwrap() {
            panic!("kiln signer serve exited: {status}");
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    d
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    kiln_in(dir)
        .args(args)
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_build_signs_its_provenance_through_the_daemon() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for prefix in ["release", "other"] {
        let out = kiln(d, &["keys", "generate", "--output-key-prefix", prefix]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let socket = d.join("signer.sock");
    let _daemon = daemon(d, &socket);

    let r = |repo: &str| seeded.reference(repo).unwrap();
    fs::write(
        d.join("policy.toml"),
        format!(
            "[[org]]\nname = \"{}\"\npublic_keys = [\"\"\"{}\"\"\"]\n",
            seeded.trusted_org(),
            seeded.trusted_key.public_key_pem().unwrap().trim()
        ),
    )
    .unwrap();
    fs::write(
        d.join("signed.yml"),
        format!(
            "init:\n  - {}\nservices:\n  - name: web\n    image: {}\ntrust:\n  org:\n    - {}\n",
            r("kiln-test/init"),
            r("kiln-test/busybox-plain"),
            seeded.trusted_org()
        ),
    )
    .unwrap();
    let out = kiln(
        d,
        &[
            "build",
            "-f",
            "tar",
            "-f",
            "oci",
            "--dir",
            "out",
            "--trust-policy",
            "policy.toml",
            "--signer-socket",
            socket.to_str().unwrap(),
            "signed.yml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let bundle_path = d.join("out/signed-provenance.sigstore.json");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signed provenance"),
        "{}",
        text(&out)
    );

    // What the provenance records.
    let bundle: serde_json::Value =
        serde_json::from_slice(&fs::read(&bundle_path).unwrap()).unwrap();
    let envelope = &bundle["dsseEnvelope"];
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let names: Vec<&str> = statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let mut outputs: Vec<String> = fs::read_dir(d.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".sigstore.json"))
        .collect();
    outputs.sort();
    assert_eq!(names, outputs);
    assert!(names.contains(&"signed.tar"), "{names:?}");
    for subject in statement["subject"].as_array().unwrap() {
        let file = fs::read(d.join("out").join(subject["name"].as_str().unwrap())).unwrap();
        assert_eq!(
            subject["digest"]["sha256"].as_str().unwrap(),
            sha256_hex(&file)
        );
    }
    let tar = fs::read(d.join("out/signed.tar")).unwrap();
    let predicate = &statement["predicate"]["buildDefinition"];
    assert_eq!(predicate["internalParameters"]["contentTrust"], "enforced");
    let verified = predicate["internalParameters"]["verifiedSignatures"]
        .as_array()
        .unwrap();
    assert_eq!(verified.len(), 2, "{predicate}");
    let deps = predicate["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps.len(), 2);
    let plain = seeded.image("kiln-test/busybox-plain").unwrap();
    assert!(
        deps.iter()
            .any(|dep| dep["digest"]["sha256"].as_str() == plain.digest.strip_prefix("sha256:")),
        "{deps:?}"
    );

    // An independent check: openssl over DSSE's pre-authentication encoding.
    let signature = base64::engine::general_purpose::STANDARD
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let signed = pae(envelope["payloadType"].as_str().unwrap(), &payload);
    assert!(openssl_verify(&d.join("release.pub"), &signed, &signature).unwrap());

    let verify = |key: &str| {
        kiln(
            d,
            &["verify-build", "--key", key, bundle_path.to_str().unwrap()],
        )
    };
    let out = verify("release.pub");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("Verified OK: {} outputs", names.len())),
        "{}",
        text(&out)
    );

    let out = verify("other.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let mut changed = tar.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    fs::write(d.join("out/signed.tar"), &changed).unwrap();
    let out = verify("release.pub");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signed.tar: sha256:"),
        "{}",
        text(&out)
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
