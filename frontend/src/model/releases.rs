//! Releases as the API gives them, who may publish, and what the releases
//! page shows for each (status label, the commands to copy).

use serde::{Deserialize, Serialize};

use super::api::{Build, Me, Role};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Referrer {
    pub kind: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Release {
    pub id: String,
    pub team: String,
    pub build_id: String,
    pub name: String,
    pub reference: String,
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub key_fingerprint: String,
    #[serde(default)]
    pub referrers: Vec<Referrer>,
    pub published_by: String,
    pub published_at: String,
    /// `verified`, `failed` or `unverified`.
    pub verification: String,
    pub verified_at: Option<String>,
    #[serde(default)]
    pub verify_commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReleaseList {
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VerifyReport {
    pub release: Release,
    pub ok: bool,
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TeamKey {
    pub fingerprint: String,
    pub pem: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TeamKeyList {
    pub keys: Vec<TeamKey>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublishRequest {
    pub to: String,
}

/// Whether `me` may publish `build`: it succeeded, and `me` is a
/// publisher or admin of its team.
pub fn can_publish(me: Option<&Me>, build: &Build) -> bool {
    build.state == "succeeded"
        && me
            .and_then(|m| m.role_in(&build.team))
            .is_some_and(|r| r >= Role::Publisher)
}

/// A target the API will take: `REGISTRY/REPO:TAG`, with a tag and no
/// digest. `Err` says what is missing.
pub fn check_target(to: &str) -> Result<(), &'static str> {
    let to = to.trim();
    if to.is_empty() {
        return Err("Enter where to publish, as REGISTRY/REPO:TAG.");
    }
    if to.contains('@') {
        return Err("Publish to a tag, not a digest.");
    }
    let last = to.rsplit('/').next().unwrap_or(to);
    if !to.contains('/') || !last.contains(':') {
        return Err("Add a tag: REGISTRY/REPO:TAG.");
    }
    Ok(())
}

/// The words for a verification status.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "verified" => "Verified",
        "failed" => "Verification failed",
        _ => "Not verified yet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::api::Membership;

    fn build(state: &str) -> Build {
        serde_json::from_value(serde_json::json!({
            "id": "b1", "team": "default", "state": state, "name": "os",
            "formats": ["kernel+initrd"], "arch": "amd64", "created_by": "dev",
            "spec_digest": "00", "attempts": 1, "error": null,
            "created_at": "2024-01-01T00:00:00Z", "started_at": null, "finished_at": null
        }))
        .unwrap()
    }

    fn me(role: Role) -> Me {
        Me {
            user: "u".into(),
            server_admin: false,
            teams: vec![Membership {
                team: "default".into(),
                role,
            }],
            csrf_token: None,
        }
    }

    #[test]
    fn only_publishers_and_admins_publish_succeeded_builds() {
        let done = build("succeeded");
        assert!(!can_publish(Some(&me(Role::Viewer)), &done));
        assert!(!can_publish(Some(&me(Role::Builder)), &done));
        assert!(can_publish(Some(&me(Role::Publisher)), &done));
        assert!(can_publish(Some(&me(Role::Admin)), &done));
        assert!(!can_publish(Some(&me(Role::Admin)), &build("failed")));
        assert!(!can_publish(None, &done));
    }

    #[test]
    fn targets_need_a_tag() {
        assert!(check_target("127.0.0.1:5000/releases/os:1.0").is_ok());
        assert!(check_target("127.0.0.1:5000/releases/os").is_err());
        assert!(check_target("os:1.0").is_err());
        assert!(check_target("r.example/os@sha256:00").is_err());
        assert!(check_target("  ").is_err());
    }

    #[test]
    fn releases_parse_from_the_api() {
        let r: ReleaseList = serde_json::from_str(
            r#"{"releases":[{"id":"r1","team":"default","build_id":"b1","name":"os",
            "reference":"h/os:1","repository":"h/os","tag":"1","digest":"sha256:00","size":9,
            "key_fingerprint":"sha256:11","referrers":[{"kind":"SBOM","digest":"sha256:22"}],
            "published_by":"rm","published_at":"2024-01-01T00:00:00Z","verification":"verified",
            "verified_at":null,"verify_commands":["kiln verify-release --key team.pub h/os:1"]}]}"#,
        )
        .unwrap();
        assert_eq!(r.releases[0].referrers[0].kind, "SBOM");
        assert_eq!(status_label(&r.releases[0].verification), "Verified");
        assert_eq!(status_label("unverified"), "Not verified yet");
    }
}
