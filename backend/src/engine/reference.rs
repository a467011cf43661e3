//! Image references: linuxkit's expansion (`alpine` → `docker.io/library/alpine`)
//! and the distribution grammar (`registry/repo[:tag][@sha256:…]`).
//!
//! The canonical string ([`Reference`]'s `Display`) is the store key written to
//! `index.json` as `org.opencontainers.image.ref.name`, so it must match what
//! linuxkit writes byte for byte: expansion adds a registry but never a tag.

use std::fmt;
use std::str::FromStr;

use crate::engine::store::{Digest, DigestError};

/// Longest accepted `registry/repository` name, as in the distribution grammar.
const MAX_NAME_LEN: usize = 255;
/// Longest accepted tag.
const MAX_TAG_LEN: usize = 128;
/// The tag added when pulling a reference that has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, expanded image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The empty string.
    #[error("image reference is empty")]
    Empty,
    /// Something like `https://…`.
    #[error("image reference {0:?} must not contain a URL scheme")]
    Scheme(String),
    /// The registry part is not a host name, IP address or `host:port`.
    #[error("image reference {reference:?}: invalid registry {registry:?}")]
    Registry {
        /// The reference as given.
        reference: String,
        /// The offending registry part.
        registry: String,
    },
    /// A path component breaks `[a-z0-9]+([._]|__|-+)[a-z0-9]+…`.
    #[error(
        "image reference {reference:?}: invalid repository component {component:?} \
         (lowercase letters, digits and single separators . _ __ - only)"
    )]
    Repository {
        /// The reference as given.
        reference: String,
        /// The offending path component.
        component: String,
    },
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("image reference {reference:?}: invalid tag {tag:?}")]
    Tag {
        /// The reference as given.
        reference: String,
        /// The offending tag.
        tag: String,
    },
    /// The `@…` part is not a sha256 digest.
    #[error("image reference {reference:?}: {source}")]
    Digest {
        /// The reference as given.
        reference: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
    /// `registry/repository` is longer than 255 characters.
    #[error("image reference {0:?}: name is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
}

/// linuxkit's `util.ReferenceExpand`: a name with no `/` becomes
/// `docker.io/library/<name>`; a name with one `/` whose first part has no `.`
/// or `:` and is not `localhost` becomes `docker.io/<name>`; anything else is
/// unchanged. No tag is added.
pub fn expand(name: &str) -> String {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [_] => format!("docker.io/library/{name}"),
        [first, _] if !first.contains(['.', ':']) && *first != "localhost" => {
            format!("docker.io/{name}")
        }
        _ => name.to_owned(),
    }
}

impl Reference {
    /// Expands (see [`expand`]) and parses `input`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.contains("://") {
            return Err(ReferenceError::Scheme(input.to_owned()));
        }
        let expanded = expand(input);
        let (rest, digest) = match expanded.rsplit_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                    reference: input.to_owned(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (expanded.as_str(), None),
        };
        let last_part_start = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_part_start..].rfind(':') {
            Some(i) => {
                let split = last_part_start + i;
                (&rest[..split], Some(&rest[split + 1..]))
            }
            None => (rest, None),
        };
        let (registry, repository) =
            name.split_once('/')
                .ok_or_else(|| ReferenceError::Registry {
                    reference: input.to_owned(),
                    registry: name.to_owned(),
                })?;
        if !valid_registry(registry) {
            return Err(ReferenceError::Registry {
                reference: input.to_owned(),
                registry: registry.to_owned(),
            });
        }
        if let Some(bad) = repository.split('/').find(|c| !valid_path_component(c)) {
            return Err(ReferenceError::Repository {
                reference: input.to_owned(),
                component: bad.to_owned(),
            });
        }
        if name.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(input.to_owned()));
        }
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference: input.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// The same reference with `:latest` added when it has neither tag nor
    /// digest; what `pull` asks the registry for.
    pub fn with_default_tag(&self) -> Self {
        let mut r = self.clone();
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        r
    }

    /// The same name pinned to `digest` (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Self {
        let mut r = self.clone();
        r.digest = Some(digest);
        r
    }

    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned,
    /// else the tag, else `latest`.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `host[:port]`, where host is a DNS name, IPv4 address or `[IPv6]`.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => {
                let port = match after {
                    "" => None,
                    p => match p.strip_prefix(':') {
                        Some(p) => Some(p),
                        None => return false,
                    },
                };
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, port)
            }
            None => return false,
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(host) => !host.is_empty() && host.split('.').all(valid_domain_component),
    }
}

fn valid_domain_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        let run_start = i;
        if is_alnum(bytes[i]) {
            while i < bytes.len() && is_alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return false;
        }
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[run_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        expect_alnum = true;
    }
    !bytes.is_empty() && !expect_alnum
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        Some(&first) => {
            word(first)
                && bytes.len() <= MAX_TAG_LEN
                && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn expands_like_linuxkit() {
        let cases = [
            ("redis", "docker.io/library/redis"),
            ("redis:alpine", "docker.io/library/redis:alpine"),
            ("foo/bar", "docker.io/foo/bar"),
            ("foo/bar:1", "docker.io/foo/bar:1"),
            ("linuxkit/init:abc", "docker.io/linuxkit/init:abc"),
            ("myregistry.io/foo", "myregistry.io/foo"),
            ("localhost/foo", "localhost/foo"),
            ("localhost:5000/foo", "localhost:5000/foo"),
            ("127.0.0.1:5000/foo", "127.0.0.1:5000/foo"),
            ("foo/bar/baz", "foo/bar/baz"),
            (
                "docker.io/library/alpine:3.20",
                "docker.io/library/alpine:3.20",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input), want, "expand({input})");
        }
    }

    /// The spec validator (kiln-shared) expands names for its own checks;
    /// both must agree or a validated spec could miss the store.
    #[test]
    fn expansion_agrees_with_the_spec_model() {
        for input in [
            "redis",
            "foo/bar:1",
            "localhost/foo",
            "localhost:5000/foo",
            "my.reg/foo",
            "a/b/c",
            "docker.io/library/x@sha256:abc",
        ] {
            assert_eq!(
                expand(input),
                kiln_shared::reference::expand(input),
                "{input}"
            );
        }
    }

    #[test]
    fn parses_parts_and_round_trips() {
        let r = Reference::parse("alpine:3.20").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), Some("3.20"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.to_string(), "docker.io/library/alpine:3.20");

        let r = Reference::parse("localhost:5000/probe/hello").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "probe/hello");
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "localhost:5000/probe/hello");

        let s = format!("linuxkit/init:v1@sha256:{HEX}");
        let r = Reference::parse(&s).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.to_string(), format!("docker.io/{s}"));
        assert_eq!(r.manifest_selector(), format!("sha256:{HEX}"));

        let r = Reference::parse(&format!("[::1]:5000/x@sha256:{HEX}")).unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn latest_only_added_on_request() {
        let r = Reference::parse("alpine").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine");
        assert_eq!(r.manifest_selector(), "latest");
        assert_eq!(
            r.with_default_tag().to_string(),
            "docker.io/library/alpine:latest"
        );
        let pinned = Reference::parse(&format!("alpine@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.with_default_tag(), pinned);
        let port = Reference::parse("localhost:5000/foo").unwrap();
        assert_eq!(
            port.with_default_tag().to_string(),
            "localhost:5000/foo:latest"
        );
    }

    #[test]
    fn rejects_invalid_references() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("https://docker.io/alpine"),
            Err(ReferenceError::Scheme(_))
        ));
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            Reference::parse("foo/bar..baz"),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            Reference::parse("foo/-bar"),
            Err(ReferenceError::Repository { .. })
        ));
        assert!(matches!(
            Reference::parse("alpine:-bad"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("alpine@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("bad_host.io/foo/bar"),
            Err(ReferenceError::Registry { .. })
        ));
        assert!(matches!(
            Reference::parse("host:port/foo/bar"),
            Err(ReferenceError::Registry { .. })
        ));
        let long = format!("foo/{}", "a".repeat(300));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong(_))
        ));
    }

    #[test]
    fn accepts_separators() {
        for ok in ["a/b.c", "a/b_c", "a/b__c", "a/b---c", "a/b-c.d_e"] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a/b___c", "a/b.", "a/.b", "a/b._c", "a/", "a//b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
