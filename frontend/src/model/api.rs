//! The service's JSON shapes, as the UI reads them, and API errors turned
//! into sentences.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Membership {
    pub team: String,
    pub role: Role,
}

/// A role in a team; each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Builder,
    Publisher,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Builder, Role::Publisher, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Builder => "builder",
            Role::Publisher => "publisher",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Me {
    pub user: String,
    pub server_admin: bool,
    pub teams: Vec<Membership>,
    pub csrf_token: Option<String>,
}

impl Me {
    pub fn role_in(&self, team: &str) -> Option<Role> {
        self.teams.iter().find(|m| m.team == team).map(|m| m.role)
    }

    /// The teams where the user may submit builds.
    pub fn build_teams(&self) -> Vec<String> {
        self.teams
            .iter()
            .filter(|m| m.role >= Role::Builder)
            .map(|m| m.team.clone())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub media_type: String,
    pub url: String,
}

/// An image whose signature verified, as the build records it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VerifiedImage {
    pub image: String,
    pub digest: String,
    pub key_fingerprint: String,
    pub trust_root: String,
}

/// What content trust did for a build.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContentTrust {
    pub disabled: bool,
    pub verified: Vec<VerifiedImage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Build {
    pub id: String,
    pub team: String,
    pub state: String,
    pub name: String,
    pub formats: Vec<String>,
    pub arch: String,
    pub created_by: String,
    pub spec_digest: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    #[serde(default)]
    pub content_trust: Option<ContentTrust>,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BuildList {
    pub builds: Vec<Build>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubmitBuild {
    pub spec: String,
    pub formats: Vec<String>,
    pub name: Option<String>,
    pub arch: Option<String>,
    pub team: Option<String>,
    pub pull: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FormatInfo {
    pub name: String,
    /// The files it writes, with `NAME` for the build's name.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FormatList {
    pub formats: Vec<FormatInfo>,
    pub default: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Member {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MemberList {
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Token {
    pub id: String,
    pub team: String,
    pub name: String,
    pub role: Role,
    pub user: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// A new token: the API sends the token's fields and its secret side by
/// side (read without `serde(flatten)`, whose buffering code is large).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreatedToken {
    pub name: String,
    pub secret: String,
}

/// A team's trust policy; the document stays JSON text (the UI shows and
/// edits it as such).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub policy: String,
    pub updated_at: Option<String>,
}

/// The body of `PUT .../policy` for a document typed by the user, or why
/// it is not a JSON object.
pub fn policy_body(text: &str) -> Result<String, String> {
    match super::json::parse(text) {
        Ok(super::json::Json::Obj(_)) => Ok(format!("{{\"policy\":{}}}", text.trim())),
        Ok(_) => Err("The policy must be a JSON object.".into()),
        Err(e) => Err(format!("The policy is not valid JSON: {e}.")),
    }
}

struct ErrorBody {
    code: String,
    message: String,
    diagnostics: Vec<Problem>,
}

/// What an error shows of each diagnostic of an `invalid-spec` answer.
pub(super) struct Problem {
    line: u64,
    severity: String,
    message: String,
}

impl super::json::FromJson for Problem {
    fn from_json(j: &super::json::Json) -> Result<Self, super::json::Error> {
        Ok(Problem {
            line: j.u64("line")?,
            severity: j.str("severity")?,
            message: j.str("message")?,
        })
    }
}

impl super::json::FromJson for ErrorBody {
    fn from_json(j: &super::json::Json) -> Result<Self, super::json::Error> {
        let diagnostics = match j.get("details") {
            Some(d) => d.opt_list("diagnostics")?,
            None => Vec::new(),
        };
        Ok(ErrorBody {
            code: j.str("code")?,
            message: j.str("message")?,
            diagnostics,
        })
    }
}

/// A failed API call, ready to show.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    pub status: u16,
    /// The API's stable code (`not-found`, `csrf`, ...), or `network`.
    pub code: String,
    /// One or more sentences for people.
    pub text: String,
}

impl ApiFailure {
    /// From a response's status and body. Bodies that are not the API's
    /// error shape (a proxy's page, say) fall back to the status.
    pub fn from_response(status: u16, body: &str) -> ApiFailure {
        let Ok(e) = super::json::from_str::<ErrorBody>(body) else {
            return ApiFailure {
                status,
                code: "http".into(),
                text: format!("the server answered {status} {}", reason(status)),
            };
        };
        let mut text = capitalized(&e.message);
        if !text.ends_with('.') {
            text.push('.');
        }
        for d in e
            .diagnostics
            .iter()
            .filter(|d| d.severity == "error")
            .take(5)
        {
            text.push_str(&format!(" Line {}: {}.", d.line, d.message));
        }
        match e.code.as_str() {
            "unauthorized" if status == 401 => text.push_str(" Log in to continue."),
            "csrf" => text.push_str(" Reload the page or log in again."),
            _ => {}
        }
        ApiFailure {
            status,
            code: e.code,
            text,
        }
    }

    /// The request never got an answer.
    pub fn network(detail: &str) -> ApiFailure {
        ApiFailure {
            status: 0,
            code: "network".into(),
            text: format!("The server could not be reached ({detail})."),
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_sentences() {
        let f = ApiFailure::from_response(
            404,
            r#"{"code":"not-found","message":"no such build","details":{}}"#,
        );
        assert_eq!(f.text, "No such build.");
        assert_eq!(f.code, "not-found");
        let f = ApiFailure::from_response(
            403,
            r#"{"code":"csrf","message":"missing or wrong X-CSRF-Token header","details":{}}"#,
        );
        assert_eq!(
            f.text,
            "Missing or wrong X-CSRF-Token header. Reload the page or log in again."
        );
    }

    #[test]
    fn invalid_specs_list_their_errors() {
        let v = kiln_shared::validate("servics: []\n");
        let body = serde_json::json!({
            "code": "invalid-spec",
            "message": "the spec has 1 error",
            "details": {"diagnostics": v.diagnostics},
        });
        let f = ApiFailure::from_response(422, &body.to_string());
        assert!(
            f.text.starts_with("The spec has 1 error. Line 1: "),
            "{}",
            f.text
        );
        assert!(f.text.contains("servics"), "{}", f.text);
    }

    #[test]
    fn other_bodies_fall_back_to_the_status() {
        let f = ApiFailure::from_response(502, "<html>bad gateway</html>");
        assert_eq!(f.text, "the server answered 502 Bad Gateway");
    }

    #[test]
    fn policy_bodies_wrap_a_json_object() {
        assert_eq!(
            policy_body(" {\"require\": []} "),
            Ok("{\"policy\":{\"require\": []}}".into())
        );
        assert!(policy_body("[1]").unwrap_err().contains("object"));
        assert!(policy_body("{").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn build_teams_need_the_builder_role() {
        let me = Me {
            user: "u".into(),
            server_admin: false,
            teams: vec![
                Membership {
                    team: "a".into(),
                    role: Role::Viewer,
                },
                Membership {
                    team: "b".into(),
                    role: Role::Builder,
                },
                Membership {
                    team: "c".into(),
                    role: Role::Admin,
                },
            ],
            csrf_token: None,
        };
        assert_eq!(me.build_teams(), ["b", "c"]);
        assert_eq!(me.role_in("a"), Some(Role::Viewer));
        assert_eq!(me.role_in("z"), None);
    }
}
