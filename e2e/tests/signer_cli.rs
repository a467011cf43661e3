//! The signing CLI end to end: `kiln keys`, `kiln signer serve` (the key
//! file readable by its owner only, signatures over the socket, malformed
//! requests answered without crashing), `kiln sign-blob` through the daemon,
//! and the bundle verified by `kiln verify-blob`, by openssl and by
//! sigstore-js (npm `sigstore`, with a key selector).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_signer::bundle::Bundle;
use kiln_signer::daemon::SocketSigner;
use kiln_signer::dsse::{Statement, Subject, INTOTO_PAYLOAD_TYPE};
use kiln_signer::{PublicKey, Signer};

const PASSWORD: &str = "kiln-e2e-pass";
/// The sigstore-js release the bundle check installs.
const SIGSTORE_JS: &str = "sigstore@3.1.0";

fn kiln_bin() -> PathBuf {
    kiln_e2e::tools::kiln_bin().unwrap_or_else(|e| panic!("{e:#}"))
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    Command::new(kiln_bin())
        .args(args)
        .current_dir(dir)
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, socket: &Path, key: &str) -> Serving {
    let child = Command::new(kiln_bin())
        .args(["signer", "serve", "--key", key, "--socket"])
        .arg(socket)
        .current_dir(dir)
        .env("KILN_KEY_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serving = Serving(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while SocketSigner::connect(socket).is_err() {
        if let Some(status) = serving.0.try_wait().unwrap() {
            panic!("kiln signer serve exited: {status}");
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    serving
}

fn openssl_verify(public: &Path, data: &Path, signature: &[u8]) -> bool {
    let sig = data.with_extension("sig");
    fs::write(&sig, signature).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(&sig)
        .arg(data)
        .output()
        .expect("openssl (.ci/install-deps)")
        .status
        .success()
}

#[test]
fn daemon_signs_through_the_socket_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&kiln(
        d,
        &["keys", "generate", "--output-key-prefix", "release"],
    ));
    let mode = fs::metadata(d.join("release.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let key_text = fs::read_to_string(d.join("release.key")).unwrap();
    assert!(key_text.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----"));
    let exported = ok(&kiln(d, &["keys", "export-public", "--key", "release.key"]));
    assert_eq!(exported, fs::read_to_string(d.join("release.pub")).unwrap());
    let public = PublicKey::from_pem(&exported).unwrap();

    // A key file others can read is refused.
    fs::copy(d.join("release.key"), d.join("loose.key")).unwrap();
    fs::set_permissions(d.join("loose.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = kiln(
        d,
        &[
            "signer",
            "serve",
            "--key",
            "loose.key",
            "--socket",
            "x.sock",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));

    let socket = d.join("signer.sock");
    let mut daemon = serve(d, &socket, "release.key");
    let mode = fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let client = SocketSigner::connect(&socket).unwrap();
    assert_eq!(client.public_key(), &public);
    fs::write(d.join("payload"), b"a build's manifest digest").unwrap();
    let sig = client.sign(b"a build's manifest digest").unwrap();
    assert!(openssl_verify(
        &d.join("release.pub"),
        &d.join("payload"),
        &sig
    ));

    // Asking for the key, and malformed requests: errors, daemon alive.
    for line in [
        &br#"{"op":"private-key"}"#[..],
        br#"{"op":"export"}"#,
        b"garbage",
        br#"{"op":"sign","payload":7}"#,
        b"\x00\x01\x02",
    ] {
        let r = client.raw(line).unwrap();
        assert!(
            !r.ok && r.signature.is_none() && r.public_key.is_none(),
            "{r:?}"
        );
    }
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon died");
    client.sign(b"still serving").unwrap();

    // sign-blob through the daemon; verify-blob, openssl and tampering.
    fs::write(d.join("artifact.iso"), b"pretend this is an ISO").unwrap();
    let sock = socket.to_str().unwrap();
    ok(&kiln(
        d,
        &["sign-blob", "--signer-socket", sock, "artifact.iso"],
    ));
    let out = ok(&kiln(
        d,
        &["verify-blob", "--key", "release.pub", "artifact.iso"],
    ));
    assert!(out.contains("Verified OK"), "{out}");
    let bundle =
        Bundle::from_json(&fs::read(d.join("artifact.iso.sigstore.json")).unwrap()).unwrap();
    let sig = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &bundle.message_signature.as_ref().unwrap().signature,
    )
    .unwrap();
    assert!(openssl_verify(
        &d.join("release.pub"),
        &d.join("artifact.iso"),
        &sig
    ));
    fs::write(d.join("artifact.iso"), b"pretend this is another ISO").unwrap();
    let out = kiln(d, &["verify-blob", "--key", "release.pub", "artifact.iso"]);
    assert_eq!(out.status.code(), Some(1));
}

const VERIFY_JS: &str = r#"
// sigstore-js's createVerifier (sigstore/dist/sigstore.js) with the trusted
// root given locally instead of fetched over TUF: a key-based bundle needs
// no CA, log or TSA. Usage: node verify.js BUNDLE DATA|- PUBKEY_PEM
const fs = require('fs');
const req = (m) => require(require.resolve(m, { paths: [process.env.SIGSTORE_JS_DIR] }));
const config = req('sigstore/dist/config');
const { bundleFromJSON } = req('@sigstore/bundle');
const { Verifier, toSignedEntity, toTrustMaterial } = req('@sigstore/verify');
const { TrustedRoot } = req('@sigstore/protobuf-specs');
const [bundlePath, dataPath, keyPath] = process.argv.slice(2);
const pem = fs.readFileSync(keyPath, 'utf8');
const hints = [];
const root = TrustedRoot.fromJSON({
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [],
});
const keyFinder = config.createKeyFinder((hint) => { hints.push(hint); return pem; });
const verifier = new Verifier(toTrustMaterial(root, keyFinder),
  { ctlogThreshold: 0, tlogThreshold: 0, tsaThreshold: 0 });
try {
  const bundle = bundleFromJSON(JSON.parse(fs.readFileSync(bundlePath, 'utf8')));
  const data = dataPath === '-' ? undefined : fs.readFileSync(dataPath);
  verifier.verify(toSignedEntity(bundle, data), {});
  console.log('SIGSTORE-JS VERIFIED hint=' + hints.join(','));
} catch (e) {
  console.log('SIGSTORE-JS FAILED ' + (e.code || e.name) + ': ' + e.message);
  process.exit(1);
}
"#;

/// npm `sigstore` installed once into `$KILN_E2E_CACHE/npm-sigstore`.
fn sigstore_js() -> PathBuf {
    let cache = std::env::var_os("KILN_E2E_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-e2e"));
    let dir = cache.join("npm-sigstore");
    if !dir.join("node_modules/sigstore/package.json").is_file() {
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .arg(SIGSTORE_JS)
            .output()
            .expect("npm (Debian's nodejs and npm; see .ci/install-deps)");
        assert!(
            out.status.success(),
            "npm install {SIGSTORE_JS}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

fn node_verify(
    js_dir: &Path,
    work: &Path,
    bundle: &Path,
    data: &str,
    key: &Path,
) -> (bool, String) {
    let script = work.join("verify.js");
    fs::write(&script, VERIFY_JS).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .arg(bundle)
        .arg(data)
        .arg(key)
        .env("SIGSTORE_JS_DIR", js_dir)
        .output()
        .expect("node (Debian's nodejs)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

#[test]
fn kiln_bundles_verify_with_sigstore_js() {
    let js = sigstore_js();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&kiln(
        d,
        &[
            "keys",
            "generate",
            "--output-key-prefix",
            "k",
            "--format",
            "pkcs8",
        ],
    ));
    ok(&kiln(
        d,
        &[
            "keys",
            "generate",
            "--output-key-prefix",
            "other",
            "--format",
            "pkcs8",
        ],
    ));
    fs::write(d.join("blob"), b"an artifact").unwrap();
    ok(&kiln(d, &["sign-blob", "--key", "k.key", "blob"]));
    let bundle = d.join("blob.sigstore.json");

    let (good, out) = node_verify(
        &js,
        d,
        &bundle,
        d.join("blob").to_str().unwrap(),
        &d.join("k.pub"),
    );
    assert!(good, "{out}");
    let public = PublicKey::from_pem(&fs::read_to_string(d.join("k.pub")).unwrap()).unwrap();
    assert!(
        out.contains(public.fingerprint()),
        "the key hint reaches the selector: {out}"
    );
    let (good, out) = node_verify(
        &js,
        d,
        &bundle,
        d.join("blob").to_str().unwrap(),
        &d.join("other.pub"),
    );
    assert!(!good, "another key must fail: {out}");
    fs::write(d.join("changed"), b"another artifact").unwrap();
    let (good, out) = node_verify(
        &js,
        d,
        &bundle,
        d.join("changed").to_str().unwrap(),
        &d.join("k.pub"),
    );
    assert!(!good, "other data must fail: {out}");

    // A DSSE bundle of an in-toto statement.
    let key = kiln_signer::PrivateKey::load(&d.join("k.key"), || unreachable!()).unwrap();
    let signer = kiln_signer::InProcessSigner::new(key);
    let statement = Statement::new(
        vec![Subject::sha256("blob", "sha256:00")],
        "https://kiln.dev/test/v1",
        serde_json::json!({}),
    );
    let dsse = Bundle::sign_dsse(&signer, INTOTO_PAYLOAD_TYPE, &statement.to_json()).unwrap();
    fs::write(d.join("dsse.sigstore.json"), dsse.to_json()).unwrap();
    let (good, out) = node_verify(&js, d, &d.join("dsse.sigstore.json"), "-", &d.join("k.pub"));
    assert!(good, "{out}");
    assert_eq!(signer.public_key(), &public);
}
