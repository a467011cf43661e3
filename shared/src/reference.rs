//! Image references: the distribution grammar, and linuxkit's expansion of
//! short names.

use std::fmt;

/// Longest repository name (domain and path) the distribution spec allows.
const MAX_NAME_LEN: usize = 255;

/// A parsed image reference such as `docker.io/linuxkit/init:v1.0@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port; `None` when the name has none.
    pub domain: Option<String>,
    /// Repository path, such as `linuxkit/init`.
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefError {
    Empty,
    Uppercase,
    NameTooLong(usize),
    BadDomain(String),
    BadPathComponent(String),
    BadTag(String),
    BadDigest(String),
    UnsupportedDigest(String),
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefError::Empty => f.write_str("image reference is empty"),
            RefError::Uppercase => f.write_str("repository name must be lowercase"),
            RefError::NameTooLong(n) => write!(
                f,
                "repository name is {n} characters long; at most {MAX_NAME_LEN} are allowed"
            ),
            RefError::BadDomain(d) => write!(f, "invalid registry host `{d}`"),
            RefError::BadPathComponent(c) => write!(
                f,
                "invalid repository path component `{c}`: use lower-case letters and digits, separated by `.`, `_`, `__` or `-`"
            ),
            RefError::BadTag(t) => write!(
                f,
                "invalid tag `{t}`: use at most 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
            ),
            RefError::BadDigest(d) => write!(
                f,
                "invalid digest `{d}`: expected `algorithm:hex`, such as `sha256:` and 64 lower-case hex digits"
            ),
            RefError::UnsupportedDigest(a) => write!(
                f,
                "unsupported digest algorithm `{a}`; use sha256 or sha512"
            ),
        }
    }
}

impl std::error::Error for RefError {}

impl Reference {
    /// Parses a reference by the distribution grammar.
    pub fn parse(text: &str) -> Result<Reference, RefError> {
        if text.is_empty() {
            return Err(RefError::Empty);
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_owned()))
            }
            None => (text, None),
        };
        // A tag is the part after the last `:` that follows the last `/`,
        // so a registry port is never mistaken for one.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                let tag = &rest[split + 1..];
                check_tag(tag)?;
                (&rest[..split], Some(tag.to_owned()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(RefError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(RefError::NameTooLong(name.len()));
        }
        let (domain, path) = split_domain(name);
        if let Some(domain) = domain {
            check_domain(domain)?;
        }
        for component in path.split('/') {
            check_path_component(component)?;
        }
        Ok(Reference {
            domain: domain.map(str::to_owned),
            path: path.to_owned(),
            tag,
            digest,
        })
    }

    /// The repository name, with the domain if there is one.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{domain}/{}", self.path),
            None => self.path.clone(),
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

/// Expands a short name the way linuxkit does before using it as a cache
/// key: `nginx` becomes `docker.io/library/nginx`, `linuxkit/init:v1`
/// becomes `docker.io/linuxkit/init:v1`, and anything naming a registry is
/// kept. No `:latest` is added.
pub fn expand(text: &str) -> String {
    match text.split_once('/') {
        None => format!("docker.io/library/{text}"),
        Some((first, rest)) => {
            if rest.contains('/') || first.contains(['.', ':']) || first == "localhost" {
                text.to_owned()
            } else {
                format!("docker.io/{text}")
            }
        }
    }
}

/// The org an image belongs to, as linuxkit's content trust derived it:
/// `linuxkit/init` gives `linuxkit`, `nginx` gives `library`, and
/// `host/ns/name` gives `host/ns`.
pub fn org_of(reference: &Reference) -> String {
    let expanded = expand(&reference.name());
    let parts: Vec<&str> = expanded.split('/').collect();
    match parts.as_slice() {
        ["docker.io", org, ..] => (*org).to_owned(),
        [host, ns, _, ..] => format!("{host}/{ns}"),
        _ => expanded,
    }
}

fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn check_domain(domain: &str) -> Result<(), RefError> {
    let bad = || RefError::BadDomain(domain.to_owned());
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(bad)?;
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        (None, after.strip_prefix(':').map(Some).unwrap_or(None))
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(component_ok) {
            return Err(bad());
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_path_component(component: &str) -> Result<(), RefError> {
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(RefError::Uppercase);
    }
    let bad = || RefError::BadPathComponent(component.to_owned());
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), RefError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RefError::BadTag(tag.to_owned()))
    }
}

fn check_digest(digest: &str) -> Result<(), RefError> {
    let bad = || RefError::BadDigest(digest.to_owned());
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = !algorithm.is_empty()
        && algorithm.starts_with(|c: char| c.is_ascii_alphabetic())
        && algorithm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '_' | '-'));
    if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        other => return Err(RefError::UnsupportedDigest(other.to_owned())),
    };
    if hex.len() != expected_len || hex.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_linuxkit() {
        assert_eq!(expand("nginx"), "docker.io/library/nginx");
        assert_eq!(expand("linuxkit/init:v1"), "docker.io/linuxkit/init:v1");
        assert_eq!(expand("localhost/a"), "localhost/a");
        assert_eq!(expand("reg.io/a"), "reg.io/a");
        assert_eq!(expand("reg:5000/a"), "reg:5000/a");
        assert_eq!(expand("a/b/c"), "a/b/c");
    }

    #[test]
    fn parses_the_usual_forms() {
        let r = Reference::parse("127.0.0.1:5000/kiln/busybox:1.0").unwrap();
        assert_eq!(r.domain.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(r.path, "kiln/busybox");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("linuxkit/init@{digest}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert!(Reference::parse("a__b/c-d.e_f:latest").is_ok());
    }

    #[test]
    fn rejects_bad_forms() {
        assert_eq!(
            Reference::parse(&expand("Linuxkit/init")),
            Err(RefError::Uppercase)
        );
        assert_eq!(Reference::parse("linuxkit/Init"), Err(RefError::Uppercase));
        assert!(matches!(
            Reference::parse("linuxkit/init:"),
            Err(RefError::BadTag(_))
        ));
        assert!(matches!(
            Reference::parse("linuxkit/init@sha256:abc"),
            Err(RefError::BadDigest(_))
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(RefError::BadPathComponent(_))
        ));
        assert!(matches!(
            Reference::parse("a/-b"),
            Err(RefError::BadPathComponent(_))
        ));
    }

    #[test]
    fn derives_orgs() {
        let org = |s: &str| org_of(&Reference::parse(s).unwrap());
        assert_eq!(org("linuxkit/init:v1"), "linuxkit");
        assert_eq!(org("nginx"), "library");
        assert_eq!(org("ghcr.io/ns/name:1"), "ghcr.io/ns");
        assert_eq!(org("docker.io/linuxkit/init"), "linuxkit");
    }
}
