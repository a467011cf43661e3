//! Registry mirrors as in `linuxkit --mirror` (spec D.4): `URL` applies to
//! every registry, `registry=URL` to one (for `docker.io` also
//! `index.docker.io` and `registry-1.docker.io`). A request for
//! `<registry>/<repo>` goes to `<mirror-host>[/<mirror-path>]/<repo>`; an
//! `http://` mirror is used over plain HTTP.

use std::collections::BTreeMap;

/// One mirror endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port]`.
    pub host: String,
    /// Path prefix inserted before the repository, without slashes at
    /// either end; may be empty.
    pub path: String,
    /// Whether the mirror was given as `http://`.
    pub plain_http: bool,
}

/// The configured mirrors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirrors {
    all: Option<Mirror>,
    by_registry: BTreeMap<String, Mirror>,
}

/// A mirror specification that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// The URL does not start with `http://` or `https://`.
    #[error("mirror {0:?}: the URL must start with http:// or https://")]
    Scheme(String),
    /// No host after the scheme.
    #[error("mirror {0:?}: no host in the URL")]
    NoHost(String),
    /// `=URL` with nothing before the `=`.
    #[error("mirror {0:?}: empty registry name before '='")]
    NoRegistry(String),
}

impl Mirrors {
    /// Parses `--mirror` values; later ones win for the same registry.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Self, MirrorError> {
        let mut mirrors = Self::default();
        for spec in specs {
            let spec = spec.as_ref().trim();
            if spec.is_empty() {
                continue;
            }
            match spec.split_once('=') {
                Some((registry, url)) if !registry.contains('/') => {
                    if registry.is_empty() {
                        return Err(MirrorError::NoRegistry(spec.to_owned()));
                    }
                    mirrors
                        .by_registry
                        .insert(canonical_registry(registry), Mirror::parse(url)?);
                }
                _ => mirrors.all = Some(Mirror::parse(spec)?),
            }
        }
        Ok(mirrors)
    }

    /// Splits an environment value such as `LINUXKIT_MIRROR` (space- or
    /// comma-separated) into specs for [`Mirrors::parse`].
    pub fn split_list(value: &str) -> Vec<String> {
        value
            .split([' ', ',', '\t', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The mirror for `registry`, if any: its own first, else the global one.
    pub fn for_registry(&self, registry: &str) -> Option<&Mirror> {
        self.by_registry
            .get(&canonical_registry(registry))
            .or(self.all.as_ref())
    }

    /// Whether no mirror is configured.
    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.by_registry.is_empty()
    }
}

impl Mirror {
    /// Parses `http(s)://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, MirrorError> {
        let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (false, rest)
        } else {
            return Err(MirrorError::Scheme(url.to_owned()));
        };
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(MirrorError::NoHost(url.to_owned()));
        }
        Ok(Self {
            host: host.to_owned(),
            path: path.trim_matches('/').to_owned(),
            plain_http,
        })
    }

    /// The repository path on the mirror for `repository`.
    pub fn repository(&self, repository: &str) -> String {
        if self.path.is_empty() {
            repository.to_owned()
        } else {
            format!("{}/{repository}", self.path)
        }
    }
}

/// Docker Hub goes by several host names; they share credentials and mirrors.
pub(crate) fn canonical_registry(registry: &str) -> String {
    let r = registry.to_ascii_lowercase();
    match r.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_global_and_per_registry() {
        let m = Mirrors::parse(&[
            "https://mirror.example.com/hub/",
            "docker.io=http://127.0.0.1:5001",
            "ghcr.io=https://ghcr-mirror.example.com/ghcr",
        ])
        .unwrap();
        let hub = m.for_registry("registry-1.docker.io").unwrap();
        assert_eq!(hub.host, "127.0.0.1:5001");
        assert!(hub.plain_http);
        assert_eq!(hub.repository("library/alpine"), "library/alpine");
        let ghcr = m.for_registry("ghcr.io").unwrap();
        assert_eq!(ghcr.repository("org/img"), "ghcr/org/img");
        let other = m.for_registry("quay.io").unwrap();
        assert_eq!(other.host, "mirror.example.com");
        assert_eq!(other.path, "hub");
        assert!(!other.plain_http);
    }

    #[test]
    fn rejects_bad_mirrors() {
        assert!(matches!(
            Mirrors::parse(&["mirror.example.com"]),
            Err(MirrorError::Scheme(_))
        ));
        assert!(matches!(
            Mirrors::parse(&["docker.io=ftp://x"]),
            Err(MirrorError::Scheme(_))
        ));
        assert!(matches!(
            Mirrors::parse(&["=https://x"]),
            Err(MirrorError::NoRegistry(_))
        ));
        assert!(matches!(
            Mirrors::parse(&["https://"]),
            Err(MirrorError::NoHost(_))
        ));
        assert!(Mirrors::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn splits_env_lists() {
        assert_eq!(
            Mirrors::split_list("https://a, docker.io=http://b  https://c"),
            vec!["https://a", "docker.io=http://b", "https://c"]
        );
    }
}
