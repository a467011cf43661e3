//! Signed releases through the real `kiln serve` and the real registry: a
//! fixture build published over HTTP by a publisher verifies with `kiln
//! verify-release` and the team key from `GET /teams/{team}/keys`, and
//! with openssl; viewers and builders may not publish, other teams see
//! nothing; a published tag never moves to another build; the audit log
//! has the publication.

mod cache_common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cache_common::{fixtures, kiln_bin, kiln_in};
use kiln_e2e::seeded::Seeded;
use kiln_e2e::service::{hex_of, Service};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUILD_LIMIT: Duration = Duration::from_secs(900);
const PASSWORD: &str = "correct horse battery";

fn spec(seeded: &Seeded, contents: &str) -> String {
    let r = |repo: &str| seeded.reference(repo).expect("seeded image");
    format!(
        "kernel:\n  image: {kernel}\n  cmdline: \"console=ttyS0\"\ninit:\n  - {init}\n  - {runc}\n\
         services:\n  - name: web\n    image: {service}\n\
         files:\n  - path: etc/release\n    contents: {contents}\n    mode: \"0644\"\n\
         trust:\n  org:\n    - {org}\n",
        kernel = r("kiln-test/kernel"),
        init = r("kiln-test/init"),
        runc = r("kiln-test/runc"),
        service = r("kiln-test/busybox-service"),
        org = seeded.trusted_org(),
    )
}

fn build(svc: &Service, token: &str, spec: &str, name: &str) -> String {
    let r = svc
        .call(
            "POST",
            "/api/v1/builds",
            token,
            Some(&json!({"spec": spec, "formats": ["kernel+initrd"], "name": name})),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{r}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let b = svc
        .wait_state(
            token,
            &id,
            &["succeeded", "failed", "cancelled"],
            BUILD_LIMIT,
        )
        .unwrap();
    assert_eq!(b["state"], "succeeded", "{b}\n{}", svc.log());
    id
}

/// A user with `role` in `team`, and a bearer token of it.
fn member(svc: &Service, admin: &str, name: &str, team: &str, role: &str) -> String {
    let r = svc
        .call(
            "POST",
            "/api/v1/users",
            admin,
            Some(&json!({"name": name, "password": PASSWORD})),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{r}");
    let r = svc
        .call(
            "PUT",
            &format!("/api/v1/teams/{team}/members/{name}"),
            admin,
            Some(&json!({"role": role})),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    svc.token(name, PASSWORD, team).unwrap()
}

fn publish(svc: &Service, token: &str, build: &str, to: &str) -> kiln_e2e::service::Answer {
    svc.call(
        "POST",
        &format!("/api/v1/builds/{build}/publish"),
        token,
        Some(&json!({ "to": to })),
    )
    .unwrap()
}

fn openssl_fingerprint(public_key: &Path) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(public_key)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{out:?}");
    format!("sha256:{}", hex_of(&Sha256::digest(&out.stdout)))
}

#[test]
fn a_publisher_publishes_a_build_that_verifies_with_the_team_key() {
    let seeded = Seeded::start(fixtures()).unwrap();
    let home = tempfile::tempdir().unwrap();
    let policy = home.path().join("server-trust.toml");
    std::fs::write(
        &policy,
        format!(
            "[[org]]\nname = \"{org}\"\npublic_keys = [\"\"\"{pem}\"\"\"]\n",
            org = seeded.trusted_org(),
            pem = seeded.trusted_key.public_key_pem().unwrap().trim()
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
    let admin = svc.admin_token().unwrap();
    let publisher = member(&svc, &admin, "rm", "default", "publisher");
    let builder = member(&svc, &admin, "dev", "default", "builder");
    let viewer = member(&svc, &admin, "auditor", "default", "viewer");
    let r = svc
        .call(
            "POST",
            "/api/v1/teams",
            &admin,
            Some(&json!({"name": "other"})),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{r}");
    let other_admin = svc
        .token("admin", svc.admin_password.as_deref().unwrap(), "other")
        .unwrap();
    let outsider = member(&svc, &other_admin, "stranger", "other", "admin");

    let first = build(&svc, &builder, &spec(&seeded, "one"), "rel");
    let target = format!("{}/releases/os:1.0", seeded.registry.host());

    // Only publishers and admins of the build's team.
    for (who, token, status) in [
        ("viewer", &viewer, 403),
        ("builder", &builder, 403),
        ("another team's admin", &outsider, 404),
    ] {
        let r = publish(&svc, token, &first, &target);
        assert_eq!(r.status, status, "{who}: {r}");
        assert!(r.json()["code"].is_string(), "{who}: {r}");
    }
    assert!(seeded
        .registry
        .tags("releases/os")
        .unwrap_or_default()
        .is_empty());

    let r = publish(&svc, &publisher, &first, &target);
    assert_eq!(r.status, 201, "{r}\n{}", svc.log());
    let release = r.json();
    let id = release["id"].as_str().unwrap().to_owned();
    assert_eq!(release["reference"], target.as_str(), "{release}");
    assert_eq!(release["tag"], "1.0");
    assert_eq!(release["published_by"], "rm");
    assert_eq!(release["build_id"], first.as_str());
    assert_eq!(release["verification"], "verified", "{release}");
    let digest = release["digest"].as_str().unwrap().to_owned();
    let kinds: Vec<&str> = release["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["SBOM", "SLSA provenance"], "{release}");
    let pushed = seeded
        .registry
        .manifest("releases/os", "1.0")
        .unwrap()
        .unwrap();
    assert_eq!(
        format!("sha256:{}", hex_of(&Sha256::digest(&pushed.body))),
        digest
    );

    // The same build again is the same release.
    let again = publish(&svc, &publisher, &first, &target);
    assert_eq!(again.status, 200, "{again}");
    assert_eq!(again.json()["id"], id.as_str());

    // Another build may not take the tag.
    let second = build(&svc, &builder, &spec(&seeded, "two"), "rel");
    let taken = publish(&svc, &publisher, &second, &target);
    assert_eq!(taken.status, 409, "{taken}");
    assert_eq!(taken.json()["code"], "tag-taken", "{taken}");
    let message = taken.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(&digest) && message.contains("new tag"),
        "{message}"
    );
    let still = seeded
        .registry
        .manifest("releases/os", "1.0")
        .unwrap()
        .unwrap();
    assert_eq!(still.body, pushed.body);

    // The team's public key, and the private one kept private.
    let keys = svc
        .call("GET", "/api/v1/teams/default/keys", &viewer, None)
        .unwrap();
    assert_eq!(keys.status, 200, "{keys}");
    assert!(!String::from_utf8_lossy(&keys.body).contains("PRIVATE"));
    let key = &keys.json()["keys"][0];
    let work = tempfile::tempdir().unwrap();
    let team_pub = work.path().join("team.pub");
    std::fs::write(&team_pub, key["pem"].as_str().unwrap()).unwrap();
    assert_eq!(key["fingerprint"], openssl_fingerprint(&team_pub).as_str());
    assert_eq!(release["key_fingerprint"], key["fingerprint"]);
    let key_file = home.path().join("keys/default.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let outsider_keys = svc
        .call("GET", "/api/v1/teams/default/keys", &outsider, None)
        .unwrap();
    assert_eq!(outsider_keys.status, 404, "{outsider_keys}");

    // `kiln verify-release` with that key, as the release page says.
    let command = release["verify_commands"][0].as_str().unwrap();
    assert_eq!(
        command,
        format!("kiln verify-release --key team.pub {target}")
    );
    let out = kiln_in(work.path())
        .args(["verify-release", "--key", "team.pub", &target])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // With another team's key it fails.
    let other_keys = svc
        .call("GET", "/api/v1/teams/other/keys", &outsider, None)
        .unwrap()
        .json();
    std::fs::write(
        work.path().join("other.pub"),
        other_keys["keys"][0]["pem"].as_str().unwrap(),
    )
    .unwrap();
    let out = kiln_in(work.path())
        .args(["verify-release", "--key", "other.pub", &target])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());

    // The list, the release, and verifying through the API.
    let list = svc
        .call("GET", "/api/v1/releases?team=default", &viewer, None)
        .unwrap()
        .json();
    let listed = list["releases"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["digest"], digest.as_str());
    assert_eq!(listed[0]["verification"], "verified");
    let outsider_list = svc
        .call("GET", "/api/v1/releases", &outsider, None)
        .unwrap()
        .json();
    assert_eq!(outsider_list["releases"], json!([]), "{outsider_list}");
    for path in [
        format!("/api/v1/releases/{id}"),
        format!("/api/v1/releases/{id}/verify"),
    ] {
        let r = svc.call("GET", &path, &outsider, None).unwrap();
        assert_eq!(r.status, 404, "{path}: {r}");
    }
    let report = svc
        .call(
            "GET",
            &format!("/api/v1/releases/{id}/verify"),
            &viewer,
            None,
        )
        .unwrap();
    assert_eq!(report.status, 200, "{report}");
    let report = report.json();
    assert_eq!(report["ok"], true, "{report}");
    let checks = report["checks"].as_array().unwrap();
    for what in ["manifest", "signature", "SBOM", "SLSA provenance", "tag"] {
        assert!(
            checks.iter().any(|c| c["what"] == what && c["ok"] == true),
            "{what}: {report}"
        );
    }
    assert!(
        checks
            .iter()
            .filter(|c| c["what"].as_str().unwrap().starts_with("layer "))
            .count()
            >= 3,
        "{report}"
    );
    assert_eq!(report["release"]["verification"], "verified");

    // Tampering: the tag moved behind kiln's back is named.
    let moved_to = seeded
        .registry
        .manifest("releases/os", &digest)
        .unwrap()
        .unwrap();
    let second_release = publish(
        &svc,
        &publisher,
        &second,
        &format!("{}/releases/os:2.0", seeded.registry.host()),
    );
    assert_eq!(second_release.status, 201, "{second_release}");
    let second_manifest = seeded
        .registry
        .manifest("releases/os", "2.0")
        .unwrap()
        .unwrap();
    seeded
        .registry
        .put_manifest(
            "releases/os",
            "1.0",
            &second_manifest.body,
            &second_manifest.media_type,
        )
        .unwrap();
    let report = svc
        .call(
            "GET",
            &format!("/api/v1/releases/{id}/verify"),
            &viewer,
            None,
        )
        .unwrap()
        .json();
    assert_eq!(report["ok"], false, "{report}");
    let tag = checks_of(&report, "tag");
    assert_eq!(tag["ok"], false, "{report}");
    assert!(tag["detail"].as_str().unwrap().contains(&digest), "{tag}");
    let listed = svc
        .call("GET", &format!("/api/v1/releases/{id}"), &viewer, None)
        .unwrap()
        .json();
    assert_eq!(listed["verification"], "failed", "{listed}");
    seeded
        .registry
        .put_manifest("releases/os", "1.0", &moved_to.body, &moved_to.media_type)
        .unwrap();

    // The audit log has the publication.
    let audit = svc
        .call("GET", "/api/v1/teams/default/audit", &admin, None)
        .unwrap()
        .json();
    let entry = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "release.publish" && e["target"] == id.as_str())
        .unwrap_or_else(|| panic!("no release.publish entry: {audit}"));
    assert_eq!(entry["actor"], "rm");
    assert_eq!(entry["detail"]["digest"], digest.as_str());
    assert_eq!(entry["detail"]["reference"], target.as_str());
}

fn checks_of<'a>(report: &'a Value, what: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["what"] == what)
        .unwrap_or_else(|| panic!("no {what} check: {report}"))
}

#[test]
fn publishing_a_failed_build_is_refused_as_not_publishable() {
    let home = tempfile::tempdir().unwrap();
    let svc = Service::start(&kiln_bin(), home.path(), &["--workers", "1"], &[]).unwrap();
    let admin = svc.admin_token().unwrap();
    // Nothing listens on the discard port: resolving the image fails.
    let spec = "init:\n  - 127.0.0.1:9/kiln-test/missing:1\n";
    let r = svc
        .call(
            "POST",
            "/api/v1/builds",
            &admin,
            Some(&json!({"spec": spec, "formats": ["tar"], "name": "broken"})),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{r}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let b = svc
        .wait_state(
            &admin,
            &id,
            &["succeeded", "failed", "cancelled"],
            BUILD_LIMIT,
        )
        .unwrap();
    assert_eq!(b["state"], "failed", "{b}");

    let r = publish(&svc, &admin, &id, "127.0.0.1:9/releases/os:1.0");
    assert_eq!(r.status, 409, "{r}");
    assert_eq!(r.json()["code"], "not-publishable", "{r}");
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("only a succeeded build") && message.contains("failed"),
        "{message}"
    );
    let releases = svc
        .call("GET", "/api/v1/releases", &admin, None)
        .unwrap()
        .json();
    assert_eq!(releases["releases"], json!([]), "{releases}");
}
