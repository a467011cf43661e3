//! Image references, typed for the engine: a registry host to contact, a
//! repository, a tag and a [`Digest`].
//!
//! The grammar and linuxkit's expansion of short names
//! (`alpine` → `docker.io/library/alpine`) are `kiln_shared::reference`'s,
//! which the spec validator uses too; this module only maps its result onto
//! the engine's types, so a reference the validator accepts is the same
//! reference the store and the registry client see.
//!
//! The canonical string ([`Reference`]'s `Display`) is the store key written to
//! `index.json` as `org.opencontainers.image.ref.name`, so it must match what
//! linuxkit writes byte for byte: expansion adds a registry but never a tag.

use std::fmt;
use std::str::FromStr;

use kiln_shared::reference::{self as shared, RefError};

use crate::engine::store::{Digest, DigestError};

pub use kiln_shared::reference::expand;

/// The tag added when pulling a reference that has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// The registry of names whose first component is not a host (Docker Hub).
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Longest accepted `registry/repository` name, as in the distribution grammar.
const MAX_NAME_LEN: usize = 255;

/// A parsed, expanded image reference.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
    /// The expanded name has no host part (`a/b/c`, which expansion leaves
    /// alone): the registry is Docker Hub but the name is written as given,
    /// as linuxkit keys it.
    implicit_registry: bool,
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

impl ReferenceError {
    /// Maps kiln-shared's grammar error for `input` (expanded to `expanded`).
    fn from_shared(input: &str, expanded: &str, e: RefError) -> Self {
        let reference = input.to_owned();
        match e {
            RefError::Empty => ReferenceError::Empty,
            RefError::NameTooLong(_) => ReferenceError::TooLong(reference),
            RefError::BadDomain(registry) => ReferenceError::Registry {
                reference,
                registry,
            },
            RefError::BadPathComponent(component) => ReferenceError::Repository {
                reference,
                component,
            },
            RefError::Uppercase => ReferenceError::Repository {
                component: uppercase_component(expanded),
                reference,
            },
            RefError::BadTag(tag) => ReferenceError::Tag { reference, tag },
            RefError::BadDigest(d) | RefError::UnsupportedDigest(d) => ReferenceError::Digest {
                source: digest_error(expanded, &d),
                reference,
            },
        }
    }
}

/// The path component with an upper-case letter, for the message.
fn uppercase_component(expanded: &str) -> String {
    let name = expanded.split('@').next().unwrap_or(expanded);
    name.split('/')
        .skip(1)
        .find(|c| c.chars().any(|ch| ch.is_ascii_uppercase()))
        .map(|c| c.split(':').next().unwrap_or(c).to_owned())
        .unwrap_or_else(|| name.to_owned())
}

/// The store's reason for rejecting a digest kiln-shared rejected (or, for
/// `sha256:`-less algorithm names, the algorithm itself).
fn digest_error(expanded: &str, bad: &str) -> DigestError {
    let digest = expanded.split_once('@').map_or(bad, |(_, d)| d).to_owned();
    match Digest::parse(&digest) {
        Err(e) => e,
        Ok(_) => DigestError::InvalidHex(digest),
    }
}

impl Reference {
    /// Expands (see [`expand`]) and parses `input` with kiln-shared's
    /// grammar; only `sha256` digests are accepted.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.contains("://") {
            return Err(ReferenceError::Scheme(input.to_owned()));
        }
        let expanded = expand(input);
        let parsed = shared::Reference::parse(&expanded)
            .map_err(|e| ReferenceError::from_shared(input, &expanded, e))?;
        let digest = parsed
            .digest
            .as_deref()
            .map(Digest::parse)
            .transpose()
            .map_err(|source| ReferenceError::Digest {
                reference: input.to_owned(),
                source,
            })?;
        let (registry, implicit_registry) = match parsed.domain {
            Some(domain) => (domain, false),
            None => (DEFAULT_REGISTRY.to_owned(), true),
        };
        Ok(Self {
            registry,
            repository: parsed.path,
            tag: parsed.tag,
            digest,
            implicit_registry,
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

    /// The name without tag or digest, as written in the store:
    /// `registry/repository`, or just the repository for a name that
    /// expansion left without a host (`a/b/c`, pulled from Docker Hub).
    pub fn name(&self) -> String {
        if self.implicit_registry {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
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
        f.write_str(&self.name())?;
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

    /// Names expansion leaves without a host keep their spelling as the
    /// store key (linuxkit's) and are pulled from Docker Hub.
    #[test]
    fn hostless_long_names_use_docker_hub() {
        let r = Reference::parse("foo/bar/baz:1").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "foo/bar/baz");
        assert_eq!(r.name(), "foo/bar/baz");
        assert_eq!(r.to_string(), "foo/bar/baz:1");
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
    }

    #[test]
    fn errors_name_the_offending_part() {
        match Reference::parse("library/Alpine:1") {
            Err(ReferenceError::Repository { component, .. }) => assert_eq!(component, "Alpine"),
            other => panic!("{other:?}"),
        }
        let sha512 = format!("alpine@sha512:{}", "a".repeat(128));
        match Reference::parse(&sha512) {
            Err(ReferenceError::Digest { source, .. }) => {
                assert!(matches!(source, DigestError::UnsupportedAlgorithm(_)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Reference::parse("alpine@md5:abc"),
            Err(ReferenceError::Digest { .. })
        ));
    }

    /// Every reference kiln-shared's grammar accepts (after expansion) is
    /// accepted here with the same parts, and the other way round.
    #[test]
    fn agrees_with_the_shared_grammar() {
        for input in [
            "redis",
            "foo/bar:1",
            "localhost/foo",
            "localhost:5000/foo:x",
            "my.reg/foo/bar",
            "a/b/c",
            "Foo/bar",
            "a/b..c",
            "a:1/b",
            "x:-y",
            &format!("docker.io/library/x@sha256:{HEX}"),
        ] {
            let ours = Reference::parse(input);
            let theirs = kiln_shared::reference::Reference::parse(&expand(input));
            assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{input}: {ours:?} / {theirs:?}"
            );
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                assert_eq!(ours.to_string(), theirs.to_string(), "{input}");
            }
        }
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
