//! Filtering the team's build history. The state and team filters are also
//! sent to the API; the text filter runs here over what came back.

use super::api::Build;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// A team name, or empty for all of the user's teams.
    pub team: String,
    /// A build state, or empty for any.
    pub state: String,
    /// Words that must all appear in the id, name, submitter or formats.
    pub text: String,
}

impl Filter {
    /// The query string for `GET /api/v1/builds`.
    pub fn query(&self) -> String {
        let mut q = vec!["limit=100".to_owned()];
        if !self.team.is_empty() {
            q.push(format!("team={}", encode(&self.team)));
        }
        if !self.state.is_empty() {
            q.push(format!("state={}", encode(&self.state)));
        }
        q.join("&")
    }

    pub fn matches(&self, b: &Build) -> bool {
        let hay = format!(
            "{} {} {} {} {}",
            b.id,
            b.name,
            b.created_by,
            b.formats.join(" "),
            b.arch
        )
        .to_ascii_lowercase();
        (self.team.is_empty() || b.team == self.team)
            && (self.state.is_empty() || b.state == self.state)
            && self
                .text
                .to_ascii_lowercase()
                .split_whitespace()
                .all(|w| hay.contains(w))
    }

    pub fn apply<'a>(&self, builds: &'a [Build]) -> Vec<&'a Build> {
        builds.iter().filter(|b| self.matches(b)).collect()
    }
}

/// Percent-encodes a query value (names are plain, but be safe).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, team: &str, state: &str, by: &str, formats: &[&str]) -> Build {
        serde_json::from_value(serde_json::json!({
            "id": id, "team": team, "state": state, "name": "kiln",
            "formats": formats, "arch": "amd64", "created_by": by,
            "spec_digest": "00", "attempts": 1, "error": null,
            "created_at": "2026-01-01T00:00:00Z", "started_at": null, "finished_at": null,
        }))
        .unwrap()
    }

    #[test]
    fn filters_combine() {
        let builds = [
            b("a1", "ops", "succeeded", "alice", &["tar"]),
            b("b2", "ops", "failed", "bob", &["kernel+initrd"]),
            b("c3", "web", "succeeded", "bob", &["oci", "tar"]),
        ];
        let ids = |f: &Filter| {
            f.apply(&builds)
                .iter()
                .map(|b| b.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&Filter::default()), ["a1", "b2", "c3"]);
        let f = Filter {
            state: "succeeded".into(),
            ..Filter::default()
        };
        assert_eq!(ids(&f), ["a1", "c3"]);
        let f = Filter {
            text: "BOB tar".into(),
            ..Filter::default()
        };
        assert_eq!(ids(&f), ["c3"]);
        let f = Filter {
            team: "ops".into(),
            text: "bob".into(),
            ..Filter::default()
        };
        assert_eq!(ids(&f), ["b2"]);
    }

    #[test]
    fn the_query_carries_team_and_state() {
        let f = Filter {
            team: "a b".into(),
            state: "failed".into(),
            text: "x".into(),
        };
        assert_eq!(f.query(), "limit=100&team=a%20b&state=failed");
        assert_eq!(Filter::default().query(), "limit=100");
    }
}
