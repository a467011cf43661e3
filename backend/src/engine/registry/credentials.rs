//! Registry credentials: kiln's own, and those in Docker's
//! `~/.docker/config.json` (`auths` with base64 `auth`, `username`/`password`,
//! `identitytoken` or `registrytoken`; `credHelpers`/`credsStore` programs).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::mirror::canonical_registry;

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (sent as Basic, or exchanged for a bearer token).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged for an access token.
    IdentityToken(String),
    /// A bearer token sent as is (`registrytoken`).
    RegistryToken(String),
    /// A `docker-credential-*` helper program, asked when needed.
    Helper {
        /// The program (`docker-credential-pass`, or a path).
        program: PathBuf,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credential::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
            Credential::Helper { program } => {
                f.debug_struct("Helper").field("program", program).finish()
            }
        }
    }
}

/// Credentials by registry host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    by_host: BTreeMap<String, Credential>,
    default_helper: Option<PathBuf>,
}

/// A Docker config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file exists but cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The contents are not a usable Docker config.
    #[error("Docker config: {0}")]
    Malformed(String),
    /// The file is not valid JSON of the expected shape.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

/// Where Docker keeps its config: `$DOCKER_CONFIG/config.json`, else
/// `<home>/.docker/config.json`.
pub fn docker_config_path(docker_config: Option<OsString>, home: Option<&Path>) -> Option<PathBuf> {
    match docker_config.filter(|d| !d.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => home.map(|h| h.join(".docker").join("config.json")),
    }
}

impl Credentials {
    /// No credentials: every registry is accessed anonymously.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the credential for `host` (`docker.io`, `ghcr.io`,
    /// `127.0.0.1:5000`, or a URL such as `https://index.docker.io/v1/`).
    pub fn insert(&mut self, host: &str, credential: Credential) {
        self.by_host.insert(normalize_host(host), credential);
    }

    /// The credential for `host`, if any.
    pub fn get(&self, host: &str) -> Option<Credential> {
        self.by_host
            .get(&normalize_host(host))
            .cloned()
            .or_else(|| {
                self.default_helper
                    .clone()
                    .map(|program| Credential::Helper { program })
            })
    }

    /// Adds `other`'s entries, which win over existing ones for the same host.
    pub fn merge(&mut self, other: Credentials) {
        self.by_host.extend(other.by_host);
        if other.default_helper.is_some() {
            self.default_helper = other.default_helper;
        }
    }

    /// Reads a Docker config file; a missing file gives no credentials.
    pub fn load_docker_config(path: &Path) -> Result<Self, CredentialsError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::from_docker_config(&bytes).map_err(|e| match e {
                CredentialsError::Malformed(message) => CredentialsError::Invalid {
                    path: path.to_owned(),
                    message,
                },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(CredentialsError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses the contents of a Docker config file.
    pub fn from_docker_config(bytes: &[u8]) -> Result<Self, CredentialsError> {
        let config: DockerConfig = serde_json::from_slice(bytes)
            .map_err(|e| CredentialsError::Malformed(e.to_string()))?;
        let mut creds = Self::default();
        for (host, auth) in config.auths {
            if let Some(credential) = auth
                .into_credential()
                .map_err(|e| CredentialsError::Malformed(format!("auths.{host}: {e}")))?
            {
                creds.insert(&host, credential);
            }
        }
        for (host, helper) in config.cred_helpers {
            creds.insert(
                &host,
                Credential::Helper {
                    program: helper_program(&helper),
                },
            );
        }
        creds.default_helper = config
            .creds_store
            .filter(|s| !s.is_empty())
            .map(|s| helper_program(&s));
        Ok(creds)
    }
}

impl DockerAuth {
    fn into_credential(self) -> Result<Option<Credential>, String> {
        if let Some(token) = self.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token)));
        }
        if let Some(token) = self.registrytoken.filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::RegistryToken(token)));
        }
        if let Some(auth) = self.auth.filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auth is not base64: {e}"))?;
            let decoded = String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_owned())?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| "auth does not decode to user:password".to_owned())?;
            return Ok(Some(Credential::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        match (self.username, self.password) {
            (Some(username), Some(password)) if !username.is_empty() => {
                Ok(Some(Credential::Basic { username, password }))
            }
            _ => Ok(None),
        }
    }
}

fn helper_program(name: &str) -> PathBuf {
    PathBuf::from(format!("docker-credential-{name}"))
}

/// `https://index.docker.io/v1/` → `docker.io`; `HTTP://Host:5000/x` → `host:5000`.
fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = h
        .strip_prefix("https://")
        .or_else(|| h.strip_prefix("http://"))
        .unwrap_or(h);
    let h = h.split('/').next().unwrap_or(h);
    canonical_registry(h)
}

/// Asks a credential helper for `host`'s credential (blocking; run it off the
/// async threads). The server URL for Docker Hub is Docker's legacy one.
pub(crate) fn run_helper(program: &Path, host: &str) -> Result<Option<Credential>, String> {
    let server = if canonical_registry(host) == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        host.to_owned()
    };
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running credential helper {}: {e}", program.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| format!("writing to credential helper {}: {e}", program.display()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {}: {e}", program.display()))?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Helpers report an unknown server on stdout and exit non-zero.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!(
            "credential helper {} failed ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "credential helper {} replied with bad JSON: {e}",
            program.display()
        )
    })?;
    Ok(Some(if reply.username == "<token>" {
        Credential::IdentityToken(reply.secret)
    } else {
        Credential::Basic {
            username: reply.username,
            password: reply.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_forms() {
        let json = br#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "ghcr.io": {"username": "bob", "password": "pw"},
                "registry.example.com": {"identitytoken": "refresh"},
                "tok.example.com": {"registrytoken": "bearer"},
                "empty.example.com": {}
            },
            "credHelpers": {"gcr.io": "gcloud"},
            "credsStore": "pass"
        }"#;
        let c = Credentials::from_docker_config(json).unwrap();
        assert_eq!(
            c.get("registry-1.docker.io"),
            Some(Credential::Basic {
                username: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            c.get("ghcr.io"),
            Some(Credential::Basic {
                username: "bob".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            c.get("registry.example.com"),
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert_eq!(
            c.get("tok.example.com"),
            Some(Credential::RegistryToken("bearer".into()))
        );
        assert_eq!(
            c.get("gcr.io"),
            Some(Credential::Helper {
                program: "docker-credential-gcloud".into()
            })
        );
        assert_eq!(
            c.get("elsewhere.io"),
            Some(Credential::Helper {
                program: "docker-credential-pass".into()
            })
        );
        assert!(!format!("{:?}", c).contains("pa:ss"));
    }

    #[test]
    fn bad_auth_is_an_error_naming_the_host() {
        let err =
            Credentials::from_docker_config(br#"{"auths":{"h.io":{"auth":"!!"}}}"#).unwrap_err();
        assert!(err.to_string().contains("auths.h.io"), "{err}");
    }

    #[test]
    fn kiln_credentials_win_on_merge() {
        let mut docker = Credentials::new();
        docker.insert("ghcr.io", Credential::RegistryToken("a".into()));
        let mut kiln = Credentials::new();
        kiln.insert("https://ghcr.io", Credential::RegistryToken("b".into()));
        docker.merge(kiln);
        assert_eq!(
            docker.get("ghcr.io"),
            Some(Credential::RegistryToken("b".into()))
        );
    }

    #[test]
    fn config_path() {
        assert_eq!(
            docker_config_path(Some("/d".into()), Some(Path::new("/h"))),
            Some(PathBuf::from("/d/config.json"))
        );
        assert_eq!(
            docker_config_path(None, Some(Path::new("/h"))),
            Some(PathBuf::from("/h/.docker/config.json"))
        );
    }

    #[test]
    fn missing_docker_config_is_empty() {
        let c =
            Credentials::load_docker_config(Path::new("/nonexistent/kiln/config.json")).unwrap();
        assert_eq!(c, Credentials::new());
    }
}
