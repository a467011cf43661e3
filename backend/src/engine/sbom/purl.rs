//! Package URLs (purl-spec): `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`,
//! with each component percent-encoded and qualifiers sorted by key.

/// A package URL under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    kind: &'static str,
    namespace: Option<String>,
    name: String,
    version: Option<String>,
    qualifiers: Vec<(&'static str, String)>,
}

impl Purl {
    pub fn new(kind: &'static str, name: &str) -> Purl {
        Purl {
            kind,
            namespace: None,
            name: name.to_owned(),
            version: None,
            qualifiers: Vec::new(),
        }
    }

    pub fn namespace(mut self, namespace: &str) -> Purl {
        self.namespace = Some(namespace.to_owned()).filter(|n| !n.is_empty());
        self
    }

    pub fn version(mut self, version: &str) -> Purl {
        self.version = Some(version.to_owned()).filter(|v| !v.is_empty());
        self
    }

    /// Adds a qualifier; empty values are left out, as the spec requires.
    pub fn qualifier(mut self, key: &'static str, value: &str) -> Purl {
        if !value.is_empty() {
            self.qualifiers.push((key, value.to_owned()));
        }
        self
    }
}

impl std::fmt::Display for Purl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pkg:{}/", self.kind)?;
        if let Some(ns) = &self.namespace {
            for segment in ns.split('/').filter(|s| !s.is_empty()) {
                write!(f, "{}/", encode(segment))?;
            }
        }
        f.write_str(&encode(&self.name))?;
        if let Some(v) = &self.version {
            write!(f, "@{}", encode(v))?;
        }
        let mut qualifiers = self.qualifiers.clone();
        qualifiers.sort();
        for (i, (k, v)) in qualifiers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            // repository_url keeps its slashes readable; '/' is allowed in
            // qualifier values.
            write!(f, "{sep}{k}={}", encode_keeping(v, b"/"))?;
        }
        Ok(())
    }
}

fn encode(s: &str) -> String {
    encode_keeping(s, b"")
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `keep`.
fn encode_keeping(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(char::from(b));
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
    fn oci_purl_encodes_the_digest_colon() {
        let p = Purl::new("oci", "init")
            .version("sha256:abc")
            .qualifier("repository_url", "docker.io/linuxkit/init")
            .qualifier("arch", "amd64")
            .qualifier("tag", "v1");
        assert_eq!(
            p.to_string(),
            "pkg:oci/init@sha256%3Aabc?arch=amd64&repository_url=docker.io/linuxkit/init&tag=v1"
        );
    }

    #[test]
    fn deb_purl_with_epoch_and_plus() {
        let p = Purl::new("deb", "libstdc++6")
            .namespace("debian")
            .version("1:12.2.0+deb12u1")
            .qualifier("arch", "amd64")
            .qualifier("upstream", "");
        assert_eq!(
            p.to_string(),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0%2Bdeb12u1?arch=amd64"
        );
    }
}
