//! The web UI in real headless Chromium against the real `kiln serve` and a
//! real registry holding the fixture images: log in, see a typo marked
//! while typing with no request to the server, fix it, build, download the
//! initrd and check its digest, and check what a viewer of another team
//! sees; a publisher publishes the build and sees the release verified,
//! and a viewer of the team sees no publish button; a `uki` build's page
//! shows the PCR table of its measurement manifest, PCR 11 as the manifest
//! has it. The browser side is `e2e/browser/scenario.mjs`; screenshots of
//! every step land in `$CARGO_TARGET_TMPDIR/web_ui/screenshots` (and in
//! `$KILN_SCREENSHOTS_TO` when set, which is how docs/screenshots/ is made).

mod cache_common;

use std::path::Path;
use std::time::Duration;

use cache_common::{fixtures, kiln_bin, reference, registry_with};
use kiln_e2e::fixtures::{boot, FixtureOptions};
use kiln_e2e::service::{hex_of, Service};
use kiln_e2e::web::{node, require_ui};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUILDER: (&str, &str) = ("bea-builder", "builder-password-1");
const VIEWER: (&str, &str) = ("vic-viewer", "viewer-password-1");
const PUBLISHER: (&str, &str) = ("pam-publisher", "publisher-password-1");
const TEAM_VIEWER: (&str, &str) = ("tess-viewer", "viewer-password-2");
/// The line of [`spec`] whose key the scenario misspells.
const KEY_LINE: usize = 9;
const KEY: &str = "readonly";

fn spec(registry: &kiln_e2e::registry::Registry) -> String {
    let set = fixtures();
    let r = |f| reference(registry, f);
    format!(
        "kernel:
  image: {kernel}
  cmdline: \"console=ttyS0\"
init:
  - {init}
services:
  - name: hello
    image: {plain}
    readonly: true
",
        kernel = r(&set.kernel),
        init = r(&set.init),
        plain = r(&set.plain),
    )
}

/// The EFI stub image the server builds UKIs with.
fn boot_fixtures() -> boot::BootFixtures {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_ui-boot-fixtures");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let opts = FixtureOptions::from_env(&dir).unwrap();
    boot::build(&opts).unwrap_or_else(|e| panic!("boot fixtures: {e:#}"))
}

#[test]
fn editor_build_and_roles_in_a_real_browser() {
    let set = fixtures();
    let stub = boot_fixtures().efi_stub;
    let registry = registry_with(&[&set.kernel, &set.init, &set.plain, &stub]);
    let home = tempfile::tempdir().unwrap();
    let server = Service::start(
        &kiln_bin(),
        home.path(),
        &[],
        &[("KILN_EFI_STUB", &reference(&registry, &stub))],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    require_ui(&server).unwrap_or_else(|e| panic!("{e:#}"));
    let call = |method: &str, path: &str, token: &str, body: Value, expect: u16| {
        let body = (!body.is_null()).then_some(body);
        let r = server.call(method, path, token, body.as_ref()).unwrap();
        assert_eq!(r.status, expect, "{method} {path}: {r}");
        r.json()
    };

    // Accounts: a builder in `default`, a viewer in another team only.
    let admin = server.admin_token().unwrap();
    for (user, password) in [BUILDER, VIEWER, PUBLISHER, TEAM_VIEWER] {
        call(
            "POST",
            "/api/v1/users",
            &admin,
            json!({"name": user, "password": password}),
            201,
        );
    }
    call(
        "POST",
        "/api/v1/teams",
        &admin,
        json!({"name": "audit"}),
        201,
    );
    let member = |team: &str, user: &str| format!("/api/v1/teams/{team}/members/{user}");
    call(
        "PUT",
        &member("default", BUILDER.0),
        &admin,
        json!({"role": "builder"}),
        200,
    );
    for (user, role) in [(PUBLISHER.0, "publisher"), (TEAM_VIEWER.0, "viewer")] {
        call(
            "PUT",
            &member("default", user),
            &admin,
            json!({ "role": role }),
            200,
        );
    }
    // A token acts in its own team only.
    let password = server.admin_password.clone().unwrap();
    let audit_admin = server.token("admin", &password, "audit").unwrap();
    call(
        "PUT",
        &member("audit", VIEWER.0),
        &audit_admin,
        json!({"role": "viewer"}),
        200,
    );

    let spec = spec(&registry);
    assert!(spec
        .lines()
        .nth(KEY_LINE - 1)
        .unwrap()
        .trim_start()
        .starts_with(KEY));
    let publish_to = format!("{}/releases/web:1.0", registry.host());
    // A `uki` build for the PCR table, submitted now so it runs while the
    // browser works through the earlier steps.
    let builder = server
        .token(BUILDER.0, BUILDER.1, "default")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let uki = call(
        "POST",
        "/api/v1/builds",
        &builder,
        json!({"spec": spec, "formats": ["uki"], "name": "measured"}),
        202,
    );
    let uki = uki["id"].as_str().unwrap().to_owned();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_ui");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let run = node(
        "scenario.mjs",
        &[
            ("KILN_URL", server.base.clone()),
            ("KILN_OUT", out.display().to_string()),
            ("KILN_SPEC", spec),
            ("KILN_KEY_LINE", KEY_LINE.to_string()),
            ("KILN_KEY", KEY.to_owned()),
            ("KILN_BUILDER", BUILDER.0.to_owned()),
            ("KILN_BUILDER_PASSWORD", BUILDER.1.to_owned()),
            ("KILN_VIEWER", VIEWER.0.to_owned()),
            ("KILN_VIEWER_PASSWORD", VIEWER.1.to_owned()),
            ("KILN_PUBLISHER", PUBLISHER.0.to_owned()),
            ("KILN_PUBLISHER_PASSWORD", PUBLISHER.1.to_owned()),
            ("KILN_TEAM_VIEWER", TEAM_VIEWER.0.to_owned()),
            ("KILN_TEAM_VIEWER_PASSWORD", TEAM_VIEWER.1.to_owned()),
            ("KILN_PUBLISH_TO", publish_to.clone()),
            ("KILN_UKI_BUILD", uki.clone()),
        ],
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser scenario failed (screenshots in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    let result: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("step").is_none())
        .expect("the scenario's result line");
    println!("{stdout}");

    assert!(result["marker_ms"].as_u64().unwrap() <= 300, "{result}");
    assert_eq!(result["requests_while_editing"], 0, "{result}");
    assert_eq!(result["other_team_status"], 404, "{result}");

    // The server's own record of the build agrees with what the page showed
    // and what the browser downloaded.
    let id = result["build_id"].as_str().unwrap();
    let build = call(
        "GET",
        &format!("/api/v1/builds/{id}"),
        &admin,
        Value::Null,
        200,
    );
    assert_eq!(build["state"], "succeeded", "{build}");
    assert_eq!(build["created_by"], BUILDER.0);
    let initrd = build["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"].as_str().unwrap().ends_with("-initrd.img"))
        .expect("an initrd artifact");
    let downloaded = std::fs::read(result["initrd_file"].as_str().unwrap()).unwrap();
    let digest = hex_of(&Sha256::digest(&downloaded));
    assert_eq!(initrd["sha256"], digest.as_str());
    assert_eq!(result["initrd_sha256"], digest.as_str());
    assert_eq!(initrd["size"], downloaded.len() as u64);

    // The publisher's release, as the server recorded it.
    assert_eq!(result["release_status"], "Verified", "{result}");
    assert_eq!(result["viewer_publish_buttons"], 0, "{result}");
    let release = call(
        "GET",
        &format!(
            "/api/v1/releases/{}",
            result["release_id"].as_str().unwrap()
        ),
        &admin,
        Value::Null,
        200,
    );
    assert_eq!(release["reference"], publish_to.as_str(), "{release}");
    assert_eq!(release["build_id"], id, "{release}");
    assert_eq!(release["published_by"], PUBLISHER.0, "{release}");
    assert_eq!(release["verification"], "verified", "{release}");

    // PCR 11 on the page is the value of the manifest the server stored.
    let build = server
        .wait_state(&admin, &uki, &["succeeded"], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let manifest = build["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["media_type"] == "application/vnd.kiln.measurements.v1+json")
        .unwrap_or_else(|| panic!("no measurement manifest: {build}"));
    let r = server
        .call("GET", manifest["url"].as_str().unwrap(), &admin, None)
        .unwrap();
    assert_eq!(r.status, 200, "{r}");
    let manifest = r.json();
    let pcr11 = manifest["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pcr"] == 11)
        .expect("PCR 11 in the manifest");
    assert_eq!(
        result["pcr11_sha256"], pcr11["values"]["sha256"],
        "{result}"
    );
    assert_eq!(
        result["pcr11_events"],
        pcr11["events"].as_array().unwrap().len(),
        "{result}"
    );

    if let Some(to) = std::env::var_os("KILN_SCREENSHOTS_TO") {
        let to = Path::new(&to);
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(out.join("screenshots")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}
