//! The API contract: schemathesis (from PyPI, installed by
//! `.ci/install-deps` into /opt/kiln-schemathesis) fuzzes every operation of
//! `/api/v1/openapi.json` on the real `kiln serve`, authenticated with a
//! bearer token, and must find no 5xx and no response that breaks the
//! document (status codes, content types, headers, body schemas).
//!
//! Left out: the stateful phase, which follows links and would revoke the
//! run's own token or demote its user; `positive_data_acceptance`, since a
//! schema cannot say which YAML text is a valid spec or which string a PEM
//! key; and `negative_data_rejection`, whose query-parameter mutations are
//! reported even when the mutated value never reaches the request.

use std::path::PathBuf;
use std::process::Command;

use kiln_e2e::service::Service;
use serde_json::json;

fn schemathesis() -> PathBuf {
    let bin = std::env::var_os("KILN_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kiln-schemathesis/bin/schemathesis"));
    assert!(
        bin.is_file(),
        "schemathesis is not at {} (run .ci/install-deps, or set KILN_SCHEMATHESIS)",
        bin.display()
    );
    bin
}

#[test]
fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let st = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let kiln = kiln_e2e::tools::kiln_bin().unwrap();
    let svc = Service::start(
        &kiln,
        &home,
        &["--workers", "1"],
        &[("KILN_BUILD_TIMEOUT_SECS", "30")],
    )
    .unwrap();
    let token = svc.admin_token().unwrap();
    // One finished build, so listings are not empty.
    let spec = "files:\n  - path: etc/hello\n    contents: hi\n";
    let r = svc
        .call(
            "POST",
            "/api/v1/builds",
            &token,
            Some(&json!({"spec": spec, "formats": ["tar"]})),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{r}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    svc.wait_state(
        &token,
        &id,
        &["succeeded"],
        std::time::Duration::from_secs(120),
    )
    .unwrap();

    let seed = std::env::var("KILN_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".to_owned());
    let out = Command::new(&st)
        .current_dir(dir.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", svc.base))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "30", "--workers", "1", "--seed", &seed])
        .args(["--request-timeout", "30"])
        .output()
        .expect("running schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems (seed {seed}):\n{stdout}\n{stderr}\n--- server\n{}",
        svc.log()
    );
    assert!(
        stdout.contains("Tested:") && stdout.contains(" passed"),
        "{stdout}"
    );
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
    // The server still answers after the run.
    let r = svc.call("GET", "/readyz", "", None).unwrap();
    assert_eq!(r.status, 200, "{r}");
}
