//! Fixture builds through the real `kiln serve` against the real registry,
//! with signatures made by openssl: submit over HTTP, follow the SSE log to
//! its end, download every artifact and check its sha256; the verified
//! signatures are in the build's JSON. Builds whose images are not validly
//! signed fail naming every offending image, and disabling content trust
//! works only where both policies allow it and is recorded.

mod cache_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cache_common::{fixtures, kiln_bin};
use kiln_e2e::seeded::{Seeded, BADSIG_REPO, UNSIGNED_REPO};
use kiln_e2e::service::{hex_of, Service};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUILD_LIMIT: Duration = Duration::from_secs(900);

fn key_pem(seeded: &Seeded) -> String {
    seeded
        .trusted_key
        .public_key_pem()
        .unwrap()
        .trim()
        .to_owned()
}

/// The key's fingerprint as openssl computes it: SHA-256 of the
/// SubjectPublicKeyInfo DER.
fn openssl_fingerprint(public_key: &Path) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(public_key)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    format!("sha256:{}", hex_of(&Sha256::digest(&out.stdout)))
}

/// The boot test's spec shape: kernel, init, runc, two onboot containers,
/// a service and a `files` entry, every image from the signed org.
fn fixture_spec(seeded: &Seeded) -> String {
    let r = |repo: &str| seeded.reference(repo).expect("seeded image");
    format!(
        "kernel:\n  image: {kernel}\n  cmdline: \"console=ttyS0\"\ninit:\n  - {init}\n  - {runc}\n\
         onboot:\n  - name: plain\n    image: {plain}\n  - name: label\n    image: {label}\n\
         services:\n  - name: web\n    image: {service}\n\
         files:\n  - path: etc/kiln-file\n    contents: through-the-service\n    mode: \"0644\"\n",
        kernel = r("kiln-test/kernel"),
        init = r("kiln-test/init"),
        runc = r("kiln-test/runc"),
        plain = r("kiln-test/busybox-plain"),
        label = r("kiln-test/busybox-label"),
        service = r("kiln-test/busybox-service"),
    )
}

fn submit(svc: &Service, token: &str, body: Value) -> String {
    let r = svc
        .call("POST", "/api/v1/builds", token, Some(&body))
        .unwrap();
    assert_eq!(r.status, 202, "{r}\n{}", svc.log());
    r.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_fixture_build_is_verified_streamed_and_downloaded() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let policy = home.path().join("server-trust.toml");
    std::fs::write(
        &policy,
        format!(
            "require = [\"{org}\"]\n[[org]]\nname = \"{org}\"\npublic_keys = [\"\"\"{pem}\"\"\"]\n",
            org = seeded.trusted_org(),
            pem = key_pem(&seeded)
        ),
    )
    .unwrap();
    let svc = Service::start(
        &kiln_bin(),
        home.path(),
        &["--workers", "1"],
        &[("KILN_TRUST_POLICY", policy.to_str().unwrap())],
    )
    .unwrap();
    let token = svc.admin_token().unwrap();

    // A team root overlapping the server's is refused.
    let r = svc
        .call(
            "PUT",
            "/api/v1/teams/default/policy",
            &token,
            Some(&json!({"policy": {"org": [{
                "name": format!("{}/busybox-plain", seeded.trusted_org()),
                "public_keys": [key_pem(&seeded)],
            }]}})),
        )
        .unwrap();
    assert_eq!(r.status, 400, "{r}");
    assert!(
        r.json()["message"].as_str().unwrap().contains("overlaps"),
        "{r}"
    );

    let id = submit(
        &svc,
        &token,
        json!({"spec": fixture_spec(&seeded), "formats": ["kernel+initrd", "tar"], "name": "svc"}),
    );
    let events = svc.events(&token, &id).unwrap();
    let end = events.last().expect("events");
    assert_eq!(end.event, "end", "{events:?}");
    assert_eq!(end.data["state"], "succeeded", "{events:?}\n{}", svc.log());
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let logs: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "log")
        .filter_map(|e| e.data["message"].as_str())
        .collect();
    assert!(logs.iter().any(|l| l.starts_with("verified ")), "{logs:#?}");

    let build = svc
        .call("GET", &format!("/api/v1/builds/{id}"), &token, None)
        .unwrap()
        .json();
    assert_eq!(build["state"], "succeeded", "{build}");
    assert_eq!(build["disable_content_trust"], false);
    let trust = &build["content_trust"];
    assert_eq!(trust["disabled"], false, "{build}");
    let fingerprint = openssl_fingerprint(&seeded.trusted_key.public_key_path());
    let verified = trust["verified"].as_array().unwrap();
    let repos = [
        "kiln-test/kernel",
        "kiln-test/init",
        "kiln-test/runc",
        "kiln-test/busybox-plain",
        "kiln-test/busybox-label",
        "kiln-test/busybox-service",
    ];
    assert_eq!(verified.len(), repos.len(), "{trust}");
    for repo in repos {
        let pushed = seeded.image(repo).unwrap();
        let v = verified
            .iter()
            .find(|v| v["image"] == seeded.reference(repo).unwrap().as_str())
            .unwrap_or_else(|| panic!("{repo} not recorded: {trust}"));
        assert_eq!(v["digest"], pushed.digest.as_str(), "{v}");
        assert_eq!(v["key_fingerprint"], fingerprint.as_str(), "{v}");
        assert_eq!(v["trust_root"], seeded.trusted_org().as_str(), "{v}");
    }

    let artifacts = build["artifacts"].as_array().unwrap();
    let mut names: Vec<&str> = artifacts
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["svc-cmdline", "svc-initrd.img", "svc-kernel", "svc.tar"]
    );
    for a in artifacts {
        let r = svc
            .call("GET", a["url"].as_str().unwrap(), &token, None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", a["name"]);
        let sha = hex_of(&Sha256::digest(&r.body));
        assert_eq!(sha, a["sha256"].as_str().unwrap(), "{}", a["name"]);
        assert_eq!(r.body.len() as u64, a["size"].as_u64().unwrap());
        assert_eq!(r.header("x-kiln-sha256"), Some(sha.as_str()));
        let streamed = events
            .iter()
            .find(|e| e.event == "artifact" && e.data["name"] == a["name"])
            .unwrap_or_else(|| panic!("no artifact event for {}", a["name"]));
        assert_eq!(streamed.data["sha256"], a["sha256"]);
        if a["name"] == "svc.tar" {
            let tar = tar_file(&r.body, "etc/kiln-file");
            assert_eq!(tar.as_deref(), Some(&b"through-the-service"[..]));
        }
    }
}

fn tar_file(tar: &[u8], name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path_bytes().as_ref() == name.as_bytes() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).ok()?;
            return Some(data);
        }
    }
    None
}

#[test]
fn untrusted_images_fail_the_build_naming_each_and_disabling_is_recorded() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let svc = Service::start(&kiln_bin(), home.path(), &["--workers", "1"], &[]).unwrap();
    let token = svc.admin_token().unwrap();
    let r = |repo: &str| seeded.reference(repo).expect("seeded image");
    let spec = format!(
        "init:\n  - {init}\nonboot:\n  - name: bad\n    image: {bad}\nservices:\n  - name: web\n    image: {unsigned}\ntrust:\n  org:\n    - {org}\n",
        init = r("kiln-test/init"),
        bad = r(BADSIG_REPO),
        unsigned = r(UNSIGNED_REPO),
        org = seeded.trusted_org(),
    );

    // No policy at all: the spec's trusted org has no trust root.
    let id = submit(&svc, &token, json!({"spec": spec, "formats": ["tar"]}));
    let b = svc
        .wait_state(&token, &id, &["failed", "succeeded"], BUILD_LIMIT)
        .unwrap();
    assert_eq!(b["state"], "failed", "{b}");
    assert!(
        b["error"].as_str().unwrap().contains(&seeded.trusted_org()),
        "{b}"
    );

    // Disabling needs a policy that allows it.
    let refused = svc
        .call(
            "POST",
            "/api/v1/builds",
            &token,
            Some(&json!({"spec": spec, "formats": ["tar"], "disable_content_trust": true})),
        )
        .unwrap();
    assert_eq!(refused.status, 400, "{refused}");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("allow_disable_content_trust"));

    let put = svc
        .call(
            "PUT",
            "/api/v1/teams/default/policy",
            &token,
            Some(&json!({"policy": {
                "allow_disable_content_trust": true,
                "org": [{"name": seeded.trusted_org(), "public_keys": [key_pem(&seeded)]}],
            }})),
        )
        .unwrap();
    assert_eq!(put.status, 200, "{put}");

    let id = submit(&svc, &token, json!({"spec": spec, "formats": ["tar"]}));
    let events = svc.events(&token, &id).unwrap();
    let end = events.last().unwrap();
    assert_eq!(end.data["state"], "failed", "{events:?}");
    let error = end.data["error"].as_str().unwrap();
    assert!(error.contains("content trust refused the build"), "{error}");
    assert!(
        error.contains(BADSIG_REPO) && error.contains("no signature by a trusted key"),
        "{error}"
    );
    assert!(
        error.contains(UNSIGNED_REPO) && error.contains("no signature (unsigned)"),
        "{error}"
    );
    assert!(!error.contains("kiln-test/init"), "{error}");
    let b = svc
        .call("GET", &format!("/api/v1/builds/{id}"), &token, None)
        .unwrap()
        .json();
    assert_eq!(b["error"].as_str(), Some(error));
    assert!(b["artifacts"].as_array().unwrap().is_empty(), "{b}");
    assert!(b["content_trust"].is_null(), "{b}");

    let id = submit(
        &svc,
        &token,
        json!({"spec": spec, "formats": ["tar"], "disable_content_trust": true}),
    );
    let events = svc.events(&token, &id).unwrap();
    assert_eq!(
        events.last().unwrap().data["state"],
        "succeeded",
        "{events:?}"
    );
    assert!(events.iter().any(|e| e.data["message"]
        .as_str()
        .is_some_and(|m| m.contains("DISABLED"))));
    let b = svc
        .call("GET", &format!("/api/v1/builds/{id}"), &token, None)
        .unwrap()
        .json();
    assert_eq!(b["disable_content_trust"], true, "{b}");
    assert_eq!(b["content_trust"]["disabled"], true, "{b}");
    assert_eq!(b["content_trust"]["verified"], json!([]), "{b}");
    let audit = svc
        .call("GET", "/api/v1/teams/default/audit", &token, None)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&audit.body).contains("\"disable_content_trust\":true"),
        "{audit}"
    );
}
