//! Bootable formats through the real `kiln serve`: the server's configured
//! EFI stub image (`KILN_EFI_STUB`) is pulled from the real registry and
//! checked against the trust policy like the spec's images (by `kiln
//! build` too); `uki` and `raw-efi` of the fixture spec are built,
//! downloaded over HTTP and checked against their recorded sha256. A stub from a trusted org
//! without a valid signature fails the build, naming it; a bootable format
//! with no stub configured is refused at submission. The build carries
//! the measurement manifests, whose DSSE envelopes verify with the team's
//! key (openssl) and fail after a one-byte change; `kiln build` of the
//! same spec, split into two files, records the same spec digest.

mod cache_common;

use std::sync::OnceLock;
use std::time::Duration;

use cache_common::{fixtures, kiln_bin, kiln_in};
use kiln_e2e::fixtures::boot::{self as boot_fixtures, BootFixtures};
use kiln_e2e::fixtures::FixtureOptions;
use kiln_e2e::seeded::{Seeded, Signer};
use kiln_e2e::service::{hex_of, Service};
use kiln_e2e::sign::openssl_verify;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUILD_LIMIT: Duration = Duration::from_secs(1200);
const STUB_REPO: &str = "kiln-test/efi-stub";
const UNSIGNED_STUB_REPO: &str = "kiln-test/efi-stub-unsigned";

fn boot_fixtures() -> &'static BootFixtures {
    static SET: OnceLock<BootFixtures> = OnceLock::new();
    SET.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("service_boot-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = FixtureOptions::from_env(&dir).unwrap();
        boot_fixtures::build(&opts).unwrap_or_else(|e| panic!("boot fixtures: {e:#}"))
    })
}

/// Every fixture, plus the EFI stub signed by the trusted key and an
/// unsigned copy in the same org.
fn seeded() -> Seeded {
    let mut seeded = Seeded::start(fixtures()).unwrap();
    let stub = &boot_fixtures().efi_stub;
    seeded.push(stub, STUB_REPO, Signer::Trusted).unwrap();
    seeded
        .push(stub, UNSIGNED_STUB_REPO, Signer::Nobody)
        .unwrap();
    seeded
}

/// A server policy requiring the trusted org's signature on everything.
fn policy_file(seeded: &Seeded, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("server-trust.toml");
    std::fs::write(
        &path,
        format!(
            "require = [\"{org}\"]\n[[org]]\nname = \"{org}\"\npublic_keys = [\"\"\"{pem}\"\"\"]\n",
            org = seeded.trusted_org(),
            pem = seeded.trusted_key.public_key_pem().unwrap().trim()
        ),
    )
    .unwrap();
    path
}

fn spec(seeded: &Seeded) -> String {
    let r = |repo: &str| seeded.reference(repo).expect("seeded image");
    format!(
        "kernel:\n  image: {kernel}\n  cmdline: \"console=ttyS0\"\ninit:\n  - {init}\n  - {runc}\n\
         onboot:\n  - name: plain\n    image: {plain}\n",
        kernel = r("kiln-test/kernel"),
        init = r("kiln-test/init"),
        runc = r("kiln-test/runc"),
        plain = r("kiln-test/busybox-plain"),
    )
}

fn submit(svc: &Service, token: &str, body: Value) -> String {
    let r = svc
        .call("POST", "/api/v1/builds", token, Some(&body))
        .unwrap();
    assert_eq!(r.status, 202, "{r}\n{}", svc.log());
    r.json()["id"].as_str().unwrap().to_owned()
}

fn download(svc: &Service, token: &str, artifact: &Value) -> Vec<u8> {
    let r = svc
        .call("GET", artifact["url"].as_str().unwrap(), token, None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", artifact["name"]);
    assert_eq!(
        hex_of(&Sha256::digest(&r.body)),
        artifact["sha256"].as_str().unwrap(),
        "{}",
        artifact["name"]
    );
    assert_eq!(r.body.len() as u64, artifact["size"].as_u64().unwrap());
    r.body
}

#[test]
fn uki_and_raw_efi_build_with_the_configured_signed_stub() {
    let seeded = seeded();
    let home = tempfile::tempdir().unwrap();
    let policy = policy_file(&seeded, home.path());
    let stub = seeded.reference(STUB_REPO).unwrap();
    let svc = Service::start(
        &kiln_bin(),
        home.path(),
        &["--workers", "1"],
        &[
            ("KILN_TRUST_POLICY", policy.to_str().unwrap()),
            ("KILN_EFI_STUB", &stub),
        ],
    )
    .unwrap();
    let token = svc.admin_token().unwrap();

    // No BIOS loader is configured: iso-bios is refused, naming the setting.
    let r = svc
        .call(
            "POST",
            "/api/v1/builds",
            &token,
            Some(&json!({"spec": spec(&seeded), "formats": ["iso-bios"]})),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{r}");
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("iso-bios") && message.contains("KILN_BIOS_LOADER"),
        "{message}"
    );

    let id = submit(
        &svc,
        &token,
        json!({"spec": spec(&seeded), "formats": ["uki", "raw-efi"], "name": "boot"}),
    );
    let events = svc.events(&token, &id).unwrap();
    let end = events.last().expect("events");
    assert_eq!(end.data["state"], "succeeded", "{events:?}\n{}", svc.log());

    let build = svc
        .call("GET", &format!("/api/v1/builds/{id}"), &token, None)
        .unwrap()
        .json();
    let pushed = seeded.image(STUB_REPO).unwrap();
    let trust = &build["content_trust"];
    assert_eq!(
        trust["boot_loaders"],
        json!([{"role": "efi-stub", "image": stub, "digest": pushed.digest, "verified": true}]),
        "{build}"
    );
    let stub_signature = trust["verified"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["image"] == stub.as_str())
        .unwrap_or_else(|| panic!("the stub's signature is not recorded: {trust}"));
    assert_eq!(stub_signature["digest"], pushed.digest.as_str());
    assert_eq!(stub_signature["trust_root"], seeded.trusted_org().as_str());

    let artifacts = build["artifacts"].as_array().unwrap();
    let names: Vec<&str> = artifacts
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for expected in ["boot.efi", "boot-efi.img"] {
        assert!(names.contains(&expected), "{expected}: {names:?}");
    }
    let mut downloaded = std::collections::BTreeMap::new();
    for a in artifacts {
        let body = download(&svc, &token, a);
        if a["name"] == "boot.efi" {
            assert_eq!(&body[..2], b"MZ", "a PE image");
        }
        if a["name"] == "boot-efi.img" {
            assert_eq!(&body[512..520], b"EFI PART", "a GPT disk");
        }
        downloaded.insert(a["name"].as_str().unwrap().to_owned(), body);
    }

    // The manifests, in the build and signed with the team's key.
    let keys = svc
        .call("GET", "/api/v1/teams/default/keys", &token, None)
        .unwrap()
        .json();
    let work = tempfile::tempdir().unwrap();
    let team_pub = work.path().join("team.pub");
    std::fs::write(&team_pub, keys["keys"][0]["pem"].as_str().unwrap()).unwrap();
    let measurements = build["measurements"].as_array().unwrap();
    let mut measured: Vec<&str> = measurements
        .iter()
        .map(|m| m["artifact"].as_str().unwrap())
        .collect();
    measured.sort();
    assert_eq!(measured, ["boot-efi.img", "boot.efi"], "{build}");
    for m in measurements {
        let manifest = &downloaded[m["manifest"].as_str().unwrap()];
        let document: Value = serde_json::from_slice(manifest).unwrap();
        assert_eq!(m["document"], document);
        let pcr11 = m["pcr11_sha256"].as_str().unwrap();
        assert_eq!(document["systemdMeasure"]["sha256"][0]["pcr"], 11);
        assert_eq!(document["systemdMeasure"]["sha256"][0]["hash"], pcr11);
        assert_eq!(m["reference_model"], document["referenceModel"]["name"]);
        let envelope_name = m["envelope"].as_str().unwrap();
        assert_eq!(
            envelope_name,
            format!("{}.dsse", m["manifest"].as_str().unwrap())
        );
        assert_eq!(
            m["envelope_url"],
            format!("/api/v1/builds/{id}/artifacts/{envelope_name}").as_str()
        );
        let envelope: Value = serde_json::from_slice(&downloaded[envelope_name]).unwrap();
        let payload_type = envelope["payloadType"].as_str().unwrap();
        let payload = b64(envelope["payload"].as_str().unwrap());
        assert_eq!(
            &payload, manifest,
            "the envelope signs the manifest's bytes"
        );
        let signature = b64(envelope["signatures"][0]["sig"].as_str().unwrap());
        assert!(
            openssl_verify(&team_pub, &pae(payload_type, &payload), &signature).unwrap(),
            "{envelope_name} does not verify with the team key"
        );
        let mut changed = payload.clone();
        let at = changed.len() / 2;
        changed[at] ^= 1;
        assert!(
            !openssl_verify(&team_pub, &pae(payload_type, &changed), &signature).unwrap(),
            "{envelope_name}: a one-byte change still verifies"
        );
        assert_eq!(
            document["specDigest"],
            format!("sha256:{}", build["spec_digest"].as_str().unwrap()).as_str()
        );
    }

    // `kiln build` of the same spec, written differently and split in two
    // files, records the same spec digest.
    let text = spec(&seeded);
    let split = text.find("onboot:").unwrap();
    std::fs::write(
        work.path().join("a.yml"),
        format!("# the CLI's copy\n{}", &text[..split]),
    )
    .unwrap();
    std::fs::write(work.path().join("b.yml"), &text[split..]).unwrap();
    let out = kiln_in(work.path())
        .args(["build", "-f", "uki", "--name", "boot", "--efi-stub", &stub])
        .arg("--trust-policy")
        .arg(&policy)
        .args(["a.yml", "b.yml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("verified {stub} ({})", pushed.digest)),
        "kiln build did not verify the stub: {stderr}"
    );
    let cli: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("boot-measurements.json")).unwrap())
            .unwrap();
    assert_eq!(
        cli["specDigest"],
        format!("sha256:{}", build["spec_digest"].as_str().unwrap()).as_str(),
        "kiln build and kiln serve disagree on the spec digest"
    );
    // The same inputs and name: the same UKI, so the same PCR 11.
    let served = measurements
        .iter()
        .find(|m| m["artifact"] == "boot.efi")
        .unwrap();
    assert_eq!(
        hex_of(&Sha256::digest(
            std::fs::read(work.path().join("boot.efi")).unwrap()
        )),
        hex_of(&Sha256::digest(&downloaded["boot.efi"])),
        "kiln build and kiln serve wrote different UKIs"
    );
    assert_eq!(
        cli["systemdMeasure"]["sha256"][0]["hash"],
        served["pcr11_sha256"]
    );
}

fn b64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// DSSE's pre-authentication encoding, which the signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[test]
fn an_unsigned_stub_from_a_trusted_org_fails_the_build() {
    let seeded = seeded();
    let home = tempfile::tempdir().unwrap();
    let policy = policy_file(&seeded, home.path());
    let stub = seeded.reference(UNSIGNED_STUB_REPO).unwrap();
    let svc = Service::start(
        &kiln_bin(),
        home.path(),
        &["--workers", "1"],
        &[
            ("KILN_TRUST_POLICY", policy.to_str().unwrap()),
            ("KILN_EFI_STUB", &stub),
        ],
    )
    .unwrap();
    let token = svc.admin_token().unwrap();
    let id = submit(
        &svc,
        &token,
        json!({"spec": spec(&seeded), "formats": ["uki"], "name": "boot"}),
    );
    let b = svc
        .wait_state(&token, &id, &["failed", "succeeded"], BUILD_LIMIT)
        .unwrap();
    assert_eq!(b["state"], "failed", "{b}");
    let error = b["error"].as_str().unwrap();
    assert!(
        error.contains(UNSIGNED_STUB_REPO) && error.contains("no signature (unsigned)"),
        "{error}"
    );
    assert!(b["artifacts"].as_array().unwrap().is_empty(), "{b}");

    // `kiln build` refuses the same stub under the same policy.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("boot.yml"), spec(&seeded)).unwrap();
    let out = kiln_in(work.path())
        .args(["build", "-f", "uki", "--efi-stub", &stub, "--trust-policy"])
        .arg(&policy)
        .arg("boot.yml")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(UNSIGNED_STUB_REPO) && stderr.contains("no signature (unsigned)"),
        "{stderr}"
    );
    assert!(!work.path().join("boot.efi").exists());
}
