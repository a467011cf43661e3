//! Key formats: cosign's encrypted PEM, PKCS#8 and SEC1, and interop with
//! openssl and sigstore-rs (the files in `data/` were written by
//! sigstore-rs 0.15: an encrypted key with the password `kiln-test-pass`,
//! its public key, and its signature of `hello from sigstore-rs`).

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_signer::keys::{
    check_private_file_mode, detect_format, write_private_file, KeyFormat, COSIGN_ENCRYPTED_LABEL,
    SIGSTORE_ENCRYPTED_LABEL,
};
use kiln_signer::{Error, Password, PrivateKey, PublicKey};

fn data(name: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name),
    )
    .unwrap()
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (.ci/install-deps)");
    out
}

#[test]
fn encrypted_pem_round_trip_with_a_known_password() {
    let key = PrivateKey::generate().unwrap();
    let password = Password::new("correct horse");
    // scrypt is slow in debug builds: derive as few keys as possible.
    let pem = key
        .to_encrypted_pem(&password, COSIGN_ENCRYPTED_LABEL)
        .unwrap();
    assert!(pem.starts_with(&format!("-----BEGIN {COSIGN_ENCRYPTED_LABEL}-----\n")));
    assert_eq!(detect_format(&pem).unwrap(), KeyFormat::CosignEncrypted);
    // The body is go-securesystemslib's JSON.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let json: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body).unwrap(),
    )
    .unwrap();
    assert_eq!(json["kdf"]["name"], "scrypt");
    assert_eq!(json["kdf"]["params"]["N"], 32768);
    assert_eq!(json["cipher"]["name"], "nacl/secretbox");

    // cosign 2.x's label reads the same.
    let relabelled = pem.replace(COSIGN_ENCRYPTED_LABEL, SIGSTORE_ENCRYPTED_LABEL);
    let back = PrivateKey::from_encrypted_pem(&relabelled, &password).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    let sig = back.sign(b"payload");
    key.public_key().verify(b"payload", &sig).unwrap();
    assert!(matches!(
        PrivateKey::from_encrypted_pem(&pem, &Password::new("wrong")),
        Err(Error::Decrypt)
    ));
    // Without a password it is an error, not a panic.
    assert!(PrivateKey::from_pem(&pem).is_err());
    // Tampered parameters are refused before scrypt runs.
    let tampered = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        serde_json::to_vec(&{
            let mut j = json.clone();
            j["kdf"]["params"]["N"] = serde_json::json!(1u64 << 30);
            j
        })
        .unwrap(),
    );
    let tampered = format!(
        "-----BEGIN {COSIGN_ENCRYPTED_LABEL}-----\n{tampered}\n-----END {COSIGN_ENCRYPTED_LABEL}-----\n"
    );
    let err = PrivateKey::from_encrypted_pem(&tampered, &password).unwrap_err();
    assert!(err.to_string().contains("scrypt parameters"), "{err}");
}

#[test]
fn reads_sigstore_rs_keys_and_signatures() {
    let key =
        PrivateKey::from_encrypted_pem(&data("sigstore-rs.key"), &Password::new("kiln-test-pass"))
            .unwrap();
    let public = PublicKey::from_pem(&data("sigstore-rs.pub")).unwrap();
    assert_eq!(key.public_key(), &public);
    let sig =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigstore-rs.sig")).unwrap();
    public.verify(b"hello from sigstore-rs", &sig).unwrap();
    assert!(public.verify(b"hello from someone else", &sig).is_err());
}

#[test]
fn pkcs8_round_trip_and_private_file_mode() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let path = dir.path().join("k.pem");
    write_private_file(&path, pem.as_bytes(), false).unwrap();
    check_private_file_mode(&path).unwrap();
    assert!(write_private_file(&path, b"x", false).is_err());
    let back = PrivateKey::load(&path, || panic!("no password is needed")).unwrap();
    assert_eq!(back.public_key(), key.public_key());
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert!(check_private_file_mode(&path).is_err());
}

#[test]
fn kiln_keys_and_signatures_verify_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate().unwrap();
    let pubkey = dir.path().join("pub.pem");
    let private = dir.path().join("key.pem");
    fs::write(&pubkey, key.public_key().to_pem()).unwrap();
    write_private_file(&private, key.to_pkcs8_pem().unwrap().as_bytes(), false).unwrap();
    let payload = dir.path().join("payload");
    fs::write(&payload, b"signed by kiln").unwrap();
    let sig = dir.path().join("sig");
    fs::write(&sig, key.sign(b"signed by kiln")).unwrap();

    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p(&pubkey),
        "-signature",
        &p(&sig),
        &p(&payload),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");

    // openssl reads kiln's PKCS#8 key and derives the same public key.
    let out = openssl(&["pkey", "-in", &p(&private), "-pubout"]);
    assert!(out.status.success());
    assert_eq!(
        PublicKey::from_pem(&String::from_utf8(out.stdout).unwrap()).unwrap(),
        *key.public_key()
    );

    // A tampered payload fails.
    fs::write(&payload, b"signed by kiln!").unwrap();
    let out = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p(&pubkey),
        "-signature",
        &p(&sig),
        &p(&payload),
    ]);
    assert!(!out.status.success());
}

#[test]
fn openssl_keys_and_signatures_verify_in_kiln() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // PKCS#8 from genpkey, SEC1 from ecparam (with its parameters block).
    assert!(openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &p("k8.pem"),
    ])
    .status
    .success());
    assert!(openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        &p("sec1.pem")
    ])
    .status
    .success());
    for key in ["k8.pem", "sec1.pem"] {
        assert!(
            openssl(&["pkey", "-in", &p(key), "-pubout", "-out", &p("pub.pem")])
                .status
                .success()
        );
        fs::write(p("payload"), b"signed by openssl").unwrap();
        assert!(openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            &p(key),
            "-out",
            &p("sig"),
            &p("payload"),
        ])
        .status
        .success());
        let public = PublicKey::load(Path::new(&p("pub.pem"))).unwrap();
        let sig = fs::read(p("sig")).unwrap();
        public.verify(b"signed by openssl", &sig).unwrap();
        assert!(public.verify(b"signed by someone", &sig).is_err());
        let text = fs::read_to_string(p(key)).unwrap();
        let expected = if key == "k8.pem" {
            KeyFormat::Pkcs8
        } else {
            KeyFormat::Sec1
        };
        assert_eq!(detect_format(&text).unwrap(), expected);
        let private = PrivateKey::from_pem(&text).unwrap();
        assert_eq!(private.public_key(), &public);
    }
}

#[test]
fn other_curves_and_garbage_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    assert!(openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        &p("k.pem"),
    ])
    .status
    .success());
    let err = PrivateKey::from_pem(&fs::read_to_string(p("k.pem")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("P-256"), "{err}");
    assert!(PublicKey::from_pem("not a key").is_err());
    assert!(PrivateKey::from_pem("").is_err());
    let key = PrivateKey::generate().unwrap();
    assert!(key.public_key().verify(b"x", b"not a signature").is_err());
    // Debug output never shows key material.
    let shown = format!("{key:?} {:?}", Password::new("secret-pass"));
    assert!(!shown.contains("secret-pass"));
    assert!(shown.starts_with("PrivateKey(sha256:"));
}
