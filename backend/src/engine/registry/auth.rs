//! Registry authentication handshakes oci-client does not cover: reading
//! the `WWW-Authenticate` challenge, and trading a Docker `identitytoken`
//! (an OAuth2 refresh token) for an access token.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `bearer` or `basic` (lowercased).
    pub scheme: String,
    /// Parameters (`realm`, `service`, …) with lowercased keys.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses the first challenge of a header value such as
    /// `Bearer realm="https://auth.example/token",service="registry"`.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let key: String = chars
                .by_ref()
                .take_while(|c| *c != '=')
                .collect::<String>()
                .trim()
                .to_ascii_lowercase();
            if key.is_empty() {
                break;
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => break,
                        other => value.push(other),
                    }
                }
            } else {
                while let Some(c) = chars.peek() {
                    if *c == ',' {
                        break;
                    }
                    value.push(*c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
            params.insert(key, value);
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    /// The token endpoint of a bearer challenge.
    pub fn realm(&self) -> Option<&str> {
        self.params.get("realm").map(String::as_str)
    }
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// Trades a refresh token for an access token scoped to `actions` on
/// `repository` (the Docker CLI's OAuth2 flow for `identitytoken`).
pub(crate) async fn exchange_identity_token(
    http: &reqwest::Client,
    challenge: &Challenge,
    repository: &str,
    actions: &str,
    refresh_token: &str,
) -> Result<String, String> {
    let realm = challenge.realm().ok_or("bearer challenge without realm")?;
    let scope = format!("repository:{repository}:{actions}");
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("client_id", "kiln"),
        ("scope", scope.as_str()),
        ("refresh_token", refresh_token),
    ];
    if let Some(service) = challenge.params.get("service") {
        form.push(("service", service));
    }
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let resp = http
        .post(realm)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("token request to {realm}: {}", super::session::chain(&e)))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("token reply from {realm}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "token endpoint {realm} refused the identity token (HTTP {status})"
        ));
    }
    let reply: TokenReply = serde_json::from_slice(&bytes)
        .map_err(|e| format!("token reply from {realm} is not valid JSON: {e}"))?;
    reply
        .access_token
        .or(reply.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("token reply from {realm} has no access_token"))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.realm(), Some("https://auth.docker.io/token"));
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        let bare = Challenge::parse("Basic").unwrap();
        assert!(bare.params.is_empty());
        let unquoted = Challenge::parse("Bearer realm=http://x/token, service=svc").unwrap();
        assert_eq!(unquoted.realm(), Some("http://x/token"));
        assert_eq!(unquoted.params["service"], "svc");
    }

    #[test]
    fn form_encoding() {
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        assert_eq!(encode("A-z_0.~"), "A-z_0.~");
    }
}
