//! `$KILN_HOME/credentials.toml`: the API token `kiln login` stored for
//! each server URL, readable by the user only (0600).
//!
//! ```toml
//! [server."https://kiln.example:8443"]
//! token = "kiln_…"
//! team = "default"
//! ca_cert = "/etc/kiln/ca.pem"   # optional: trust this CA for the server
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What is stored for one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub token: String,
    pub team: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub server: BTreeMap<String, Entry>,
}

/// A server URL as stored: scheme and authority, no trailing slash.
pub fn normalize(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{url}`: the server URL must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "`{url}`: give the server's base URL (scheme, host and port only)"
        ));
    }
    Ok(url.to_owned())
}

/// `$KILN_HOME/credentials.toml`.
pub fn default_path() -> Result<PathBuf, String> {
    kiln_backend::engine::store::kiln_home()
        .map(|h| h.join("credentials.toml"))
        .ok_or_else(|| "neither KILN_HOME nor HOME is set".to_owned())
}

impl Credentials {
    /// Reads the file; a missing file is empty.
    pub fn load(path: &Path) -> Result<Credentials, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the file with mode 0600, replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string(self).map_err(|e| format!("credentials: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
    }

    /// The entry for `server`, or the only entry when `server` is `None`.
    pub fn pick(&self, server: Option<&str>) -> Result<(String, Entry), String> {
        match server {
            Some(s) => {
                let url = normalize(s)?;
                self.server
                    .get(&url)
                    .map(|e| (url.clone(), e.clone()))
                    .ok_or_else(|| format!("not logged in to {url}; run `kiln login {url}`"))
            }
            None => match self.server.len() {
                1 => {
                    let (url, e) = self.server.iter().next().unwrap();
                    Ok((url.clone(), e.clone()))
                }
                0 => Err("not logged in to any server; run `kiln login URL`".to_owned()),
                _ => Err(format!(
                    "logged in to several servers ({}); say which with --server",
                    self.server.keys().cloned().collect::<Vec<_>>().join(", ")
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn urls_are_normalized_and_checked() {
        assert_eq!(
            normalize("https://h:8443/").unwrap(),
            "https://h:8443".to_owned()
        );
        assert!(normalize("h:8443").is_err());
        assert!(normalize("http://h/api").is_err());
    }

    #[test]
    fn saved_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/credentials.toml");
        let mut c = Credentials::default();
        c.server.insert(
            "http://127.0.0.1:1".into(),
            Entry {
                token: "secret".into(),
                team: Some("t".into()),
                ca_cert: None,
            },
        );
        c.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = Credentials::load(&path).unwrap();
        assert_eq!(back.pick(None).unwrap().1.token, "secret");
        assert!(back.pick(Some("http://other:1")).is_err());
    }
}
